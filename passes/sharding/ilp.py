"""Alpa's strategy-selection integer program over plain inputs (no MLIR here).

Input: nodes v, each with costs c_v[i] per strategy i (compute + communication, seconds),
resharding edges (u, v) with matrices R_uv[i][j], pair constraints, and optionally a
per-device memory budget over liveness sets. Output: one strategy index per node.

Before the solver sees it, the graph shrinks (all exact):
  1. follow-merge: a node with `follow = k` takes node k's index; its costs are added to
     its root's (follow chains resolve transitively), an edge inside one root adds its
     diagonal R[k][k], and parallel edges between two roots are summed;
  2. edge folding: an all-zero matrix is dropped; one whose rows are all equal adds its
     row to the dst costs, one whose columns are all equal its column to the src costs;
     a node with one strategy gets no variable and its edges fold into the neighbours;
  3. elimination (`SolverOptions.eliminate`, not in Alpa): a node outside pair constraints
     and budgeted live sets with at most two neighbours u (, w) leaves the problem, its
     best index tabulated per neighbour choice: c_u[i] += min_j (R_uv[i][j] + c_v[j]), or
     a new edge R_uw[i][k] = min_j (R_uv[i][j] + c_v[j] + R_vw[j][k]) (PBQP's reductions
     R0/RI/RII). Chains and trees never reach the solver; residual blocks shrink to a few
     nodes.

Formulation (Alpa's), over what is left:
    min  sum_v sum_i c_v[i] s_v[i]  +  sum_(u,v) sum_ij R_uv[i][j] e_uv[i][j]
    s.t. sum_i s_v[i] = 1                       s_v[i] in {0, 1}
         sum_j e_uv[i][j] = s_u[i]  for all i    0 <= e_uv[i][j] <= 1
         sum_i e_uv[i][j] = s_v[j]  for all j
         s_a[i] <= sum_{j: (i,j) allowed} s_b[j]   (and symmetrically), per pair (a, b)
         sum_{v live at t} sum_i m_v[i] s_v[i] <= budget   for every program point t
A cost of +inf forbids that strategy (or strategy pair: e_uv[i][j] <= 0). The solver
(HiGHS excepted) starts from a greedy plan: each node in order picks its best index given
those before. Under a time limit the better of the solver's incumbent and that plan is
returned, so a time limit yields a plan whenever the greedy one is feasible.

Numerics: costs are divided by the largest finite |cost| and memory by the largest memory
before the solver sees them; the objective is reported in the original units, evaluated
exactly on the chosen strategies. The memory budget holds up to the solver's feasibility
tolerance (about 1e-6 of the largest memory value).

Determinism: fixed solver settings, one thread by default, and a tie-break: strategy i of
a node costs an extra eps*i with eps = 1e-9 * (largest |cost|) / sum_v (k_v - 1), seen
alike by elimination and the ILP, so among equal-cost plans the one with the smallest sum
of indices wins (ties among those: deterministic, unspecified). The bias moves the
objective by at most 1e-9 of the largest cost: far below real differences such as the
replication penalty of a small argument, which a larger bias once outweighed.
"""

from __future__ import annotations

import enum
import heapq
import math
import time
from dataclasses import dataclass, replace

import numpy as np
from ortools.linear_solver import pywraplp

Costs = tuple[float, ...]
Matrix = tuple[Costs, ...]
Term = tuple[int, int, float]  # (root node, strategy index, coefficient)
NodeCosts = dict[int, np.ndarray]  # root -> cost per strategy
EdgeCosts = dict[tuple[int, int], np.ndarray]  # (a, b) with a < b -> matrix, rows = a
Indicators = dict[int, list[pywraplp.Variable]]  # root -> s[root][i]
_TIE_BREAK_TOTAL = 1e-9


class Solver(enum.Enum):
    """Which OR-tools backend solves the ILP; AUTO = first available of SCIP, HiGHS, CBC."""

    AUTO = "auto"
    SCIP = "scip"
    HIGHS = "highs"
    CBC = "cbc"
    CP_SAT = "cp-sat"

    @property
    def ortools_id(self) -> str:
        """The name `pywraplp.Solver.CreateSolver` takes ("" for AUTO, which is no backend)."""
        return {"scip": "SCIP", "highs": "HIGHS", "cbc": "CBC", "cp-sat": "CP_SAT"}.get(
            self.value, ""
        )


# Measured on GPT 125M on a 2x4 mesh (195k variables): HiGHS 12 s, SCIP 34 s, CBC 292 s,
# all to the same optimum; on small problems the three are within a few 10 ms.
_AUTO_ORDER = (Solver.HIGHS, Solver.SCIP, Solver.CBC)
_SOLVED = (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE, pywraplp.Solver.INFEASIBLE)


class SolveStatus(enum.Enum):
    OPTIMAL = "optimal"  # proven optimal (up to the tie-break bias)
    FEASIBLE_TIME_LIMITED = "feasible-time-limited"  # best incumbent when time ran out


class SolverError(RuntimeError):
    """The solver is unavailable, failed, or found no solution within the time limit."""


class InfeasibleError(RuntimeError):
    """No plan meets the constraints; `min_peak_memory` = the smallest reachable peak of live
    memory (bytes per device) when a budget was given and some plan exists without it."""

    def __init__(self, message: str, min_peak_memory: float | None) -> None:
        super().__init__(message)
        self.min_peak_memory = min_peak_memory


def _check_values(values: Costs, what: str, allow_inf: bool) -> None:
    bad = [
        x for x in values if math.isnan(x) or x == -math.inf or (x == math.inf and not allow_inf)
    ]
    if bad:
        allowed = "finite or +inf (forbidden)" if allow_inf else "finite"
        raise ValueError(f"{what}: got {bad[0]!r}, expected {allowed} values")


@dataclass(frozen=True)
class IlpNode:
    """One decision: `costs[i]` for strategy i; `follow=k` takes node k's index (merged);
    `memory[i]` = bytes per device of the output under strategy i (None: not counted)."""

    costs: Costs
    follow: int | None = None
    memory: Costs | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.costs:
            raise ValueError(f"node {self.name!r}: got no strategies, expected at least one cost")
        _check_values(self.costs, f"node {self.name!r} costs", allow_inf=True)
        if self.memory is not None:
            if len(self.memory) != len(self.costs):
                raise ValueError(
                    f"node {self.name!r}: got {len(self.memory)} memory values, expected "
                    f"{len(self.costs)} (one per strategy)"
                )
            _check_values(self.memory, f"node {self.name!r} memory", allow_inf=False)
            if min(self.memory) < 0:
                raise ValueError(f"node {self.name!r}: got memory {self.memory}, expected >= 0")


@dataclass(frozen=True)
class IlpEdge:
    """Resharding cost between two nodes: rows = src strategies, columns = dst strategies."""

    src: int
    dst: int
    costs: Matrix

    def __post_init__(self) -> None:
        widths = {len(row) for row in self.costs}
        if not self.costs or len(widths) != 1 or 0 in widths:
            raise ValueError(
                f"edge {self.src}->{self.dst}: got row lengths {sorted(widths)}, "
                "expected a non-empty rectangular matrix"
            )
        for row in self.costs:
            _check_values(row, f"edge {self.src}->{self.dst}", allow_inf=True)


@dataclass(frozen=True)
class IlpPairConstraint:
    """Nodes a and b must take a pair (i, j) from `allowed` (donated argument/result)."""

    a: int
    b: int
    allowed: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class IlpProblem:
    """The strategy graph; `live_sets[t]` = nodes whose outputs are alive at point t."""

    nodes: tuple[IlpNode, ...]
    edges: tuple[IlpEdge, ...]
    pairs: tuple[IlpPairConstraint, ...] = ()
    live_sets: tuple[tuple[int, ...], ...] = ()
    memory_budget: float | None = None

    def __post_init__(self) -> None:
        n = len(self.nodes)
        k = [len(node.costs) for node in self.nodes]
        for v, node in enumerate(self.nodes):
            f = node.follow
            if f is not None and not 0 <= f < v:
                raise ValueError(
                    f"node {v} ({node.name!r}): got follow={f}, expected an index in [0, {v})"
                )
            if f is not None and k[f] != k[v]:
                raise ValueError(
                    f"node {v} ({node.name!r}) follows node {f}: got {k[v]} strategies, "
                    f"expected {k[f]} (index-aligned with node {f})"
                )
        for e in self.edges:
            if not (0 <= e.src < n and 0 <= e.dst < n):
                raise ValueError(f"edge {e.src}->{e.dst}: expected node indices in [0, {n})")
            shape = (len(e.costs), len(e.costs[0]))
            if shape != (k[e.src], k[e.dst]):
                raise ValueError(
                    f"edge {e.src}->{e.dst}: got a {shape[0]}x{shape[1]} matrix, expected "
                    f"{k[e.src]}x{k[e.dst]} (src strategies x dst strategies)"
                )
        for p in self.pairs:
            if not (0 <= p.a < n and 0 <= p.b < n):
                raise ValueError(f"pair ({p.a}, {p.b}): expected node indices in [0, {n})")
            for i, j in p.allowed:
                if not (0 <= i < k[p.a] and 0 <= j < k[p.b]):
                    raise ValueError(
                        f"pair ({p.a}, {p.b}): got allowed ({i}, {j}), expected indices "
                        f"below ({k[p.a]}, {k[p.b]})"
                    )
        for t, live in enumerate(self.live_sets):
            if any(not 0 <= v < n for v in live):
                raise ValueError(f"live set {t}: got {live}, expected node indices in [0, {n})")
        if self.memory_budget is not None and not self.memory_budget >= 0:
            raise ValueError(f"memory_budget: got {self.memory_budget}, expected >= 0 or None")


CP_SAT_WORKERS = 8
"""CP-SAT's default worker count (its portfolio search needs several workers)."""


@dataclass(frozen=True)
class SolverOptions:
    solver: Solver = Solver.AUTO  # backend; AUTO = HiGHS, else SCIP, else CBC
    time_limit: float | None = None  # seconds; the best incumbent is returned at the limit
    threads: int | None = None
    """Solver threads (CBC ignores it). None: 1 (reproducible runs), except CP-SAT, which
    searches with `CP_SAT_WORKERS` portfolio workers (with one it stalls on larger ILPs)."""
    eliminate: bool = True  # exact elimination of nodes with <= 2 neighbours before the ILP

    def __post_init__(self) -> None:
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit: got {self.time_limit}, expected > 0 seconds or None")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads: got {self.threads}, expected >= 1")

    def solver_threads(self, kind: Solver) -> int:
        if self.threads is not None:
            return self.threads
        return CP_SAT_WORKERS if kind is Solver.CP_SAT else 1


@dataclass(frozen=True)
class IlpStats:
    nodes: int  # nodes in the problem
    edges: int  # edges in the problem
    merged_nodes: int  # after follow-merging (roots)
    merged_edges: int  # distinct root pairs after merging
    eliminated: int  # roots removed by degree-0/1/2 elimination
    ilp_nodes: int  # nodes with variables (more than one strategy)
    ilp_edges: int  # edges left after folding
    variables: int
    constraints: int


@dataclass(frozen=True)
class IlpSolution:
    choices: tuple[int, ...]  # one strategy index per original node, follows included
    objective: float  # in the problem's units, evaluated on `choices`
    status: SolveStatus
    solver: str  # the backend used (a `Solver` value)
    solve_seconds: float  # wall time of `solve` (reduction, model building, solving)
    stats: IlpStats
    bound: float | None = None
    """The solver's lower bound on the objective (problem units); None where it gave none."""

    @property
    def gap(self) -> float | None:
        """(objective - bound) / objective: how far from optimal the plan can be."""
        if self.bound is None or not math.isfinite(self.bound) or self.objective <= 0:
            return None
        return max(0.0, (self.objective - self.bound) / self.objective)


@dataclass(frozen=True)
class _Step:
    node: int  # an eliminated root
    neighbours: tuple[int, ...]  # the (0, 1 or 2) roots its best index depends on
    table: np.ndarray  # its best index per choice of the neighbours


@dataclass(frozen=True)
class _Reduced:
    root: tuple[int, ...]  # per original node, the node whose index it takes
    costs: NodeCosts  # per root left: merged, folded, eliminated costs
    edges: EdgeCosts  # the edges left
    merged_edges: int  # distinct root pairs after merging
    steps: tuple[_Step, ...]  # eliminations, in order


def evaluate(problem: IlpProblem, choices: tuple[int, ...]) -> float:
    """Node plus edge costs of a plan, in the problem's units."""
    total = sum(node.costs[c] for node, c in zip(problem.nodes, choices, strict=True))
    return total + sum(e.costs[choices[e.src]][choices[e.dst]] for e in problem.edges)


def peak_memory(problem: IlpProblem, choices: tuple[int, ...]) -> float:
    """Max over program points of the live outputs' bytes per device under a plan."""
    mem = [
        node.memory[c] if node.memory else 0.0
        for node, c in zip(problem.nodes, choices, strict=True)
    ]
    return max((sum(mem[v] for v in live) for live in problem.live_sets), default=0.0)


def _reduce(problem: IlpProblem, eliminate: bool) -> _Reduced:
    """Follow-merge (edges keyed (a, b) with a < b, rows = a), fold edges whose cost
    depends on one end only into that end's node costs, then eliminate."""
    root: list[int] = []
    for v, node in enumerate(problem.nodes):
        root.append(v if node.follow is None else root[node.follow])
    costs = {r: np.zeros(len(problem.nodes[r].costs)) for r in sorted(set(root))}
    for v, node in enumerate(problem.nodes):
        costs[root[v]] += node.costs
    merged: EdgeCosts = {}
    for e in problem.edges:
        a, b, m = root[e.src], root[e.dst], np.array(e.costs, dtype=float)
        if a == b:
            costs[a] += np.diag(m)
            continue
        if a > b:
            a, b, m = b, a, m.T
        merged[a, b] = merged[a, b] + m if (a, b) in merged else m
    kept: EdgeCosts = {}
    for (a, b), m in sorted(merged.items()):
        if len(costs[a]) == 1 or (m == m[0]).all():
            costs[b] += m[0]
        elif len(costs[b]) == 1 or (m == m[:, :1]).all():
            costs[a] += m[:, 0]
        elif m.any():
            kept[a, b] = m
    pinned = {root[v] for p in problem.pairs for v in (p.a, p.b)}
    if problem.memory_budget is not None:
        pinned |= {root[v] for live in problem.live_sets for v in live if problem.nodes[v].memory}
    largest = _largest([*costs.values(), *kept.values()])
    eps = _TIE_BREAK_TOTAL * largest / max(1, sum(len(c) - 1 for c in costs.values()))
    for c in costs.values():
        c += eps * np.arange(len(c))  # the tie-break, seen alike by elimination and ILP
    steps = _eliminate(costs, kept, pinned) if eliminate else ()
    return _Reduced(tuple(root), costs, kept, len(merged), steps)


def _largest(arrays: list[np.ndarray]) -> float:
    """The largest finite |value| (1 if there is none): the solver's unit of cost."""
    finite = [float(np.abs(a[np.isfinite(a)]).max(initial=0.0)) for a in arrays]
    return max(finite, default=0.0) or 1.0


def _eliminate(costs: NodeCosts, edges: EdgeCosts, pinned: set[int]) -> tuple[_Step, ...]:
    """Exact min-sum elimination (PBQP's reductions R0, RI, RII), in place: a node outside
    pairs and budgeted live sets with at most two neighbours leaves the ILP; its best
    index per choice of the neighbours is tabulated and its cost moves onto them (one
    neighbour: its costs; two: an edge between them). Chains and trees vanish entirely."""
    adj: dict[int, set[int]] = {r: set() for r in costs}
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)

    def pop_edge(u: int, v: int) -> np.ndarray:  # rows = u
        return edges.pop((u, v)) if u < v else edges.pop((v, u)).T

    steps, heap = [], [r for r in costs if len(adj[r]) <= 2]
    while heap:
        v = heapq.heappop(heap)
        if v not in adj or len(adj[v]) > 2 or v in pinned or len(costs[v]) == 1:
            continue
        nbrs = sorted(adj[v])
        if not nbrs and costs[v].min() == math.inf:
            continue  # leave it to the ILP, which finds it infeasible
        cv = costs.pop(v)
        if not nbrs:
            table = np.asarray(np.argmin(cv))
        elif len(nbrs) == 1:
            total = pop_edge(nbrs[0], v) + cv
            table = total.argmin(axis=1)
            costs[nbrs[0]] += total.min(axis=1)
        else:
            u, w = nbrs
            total = pop_edge(u, v)[:, :, None] + cv[None, :, None] + pop_edge(v, w)[None]
            table = total.argmin(axis=1)
            edges[u, w] = edges[u, w] + total.min(axis=1) if (u, w) in edges else total.min(axis=1)
            adj[u].add(w)
            adj[w].add(u)
        steps.append(_Step(v, tuple(nbrs), table))
        for u in adj.pop(v):
            adj[u].discard(v)
            if len(adj[u]) <= 2:
                heapq.heappush(heap, u)
    return tuple(steps)


def _new_solver(options: SolverOptions) -> tuple[pywraplp.Solver, Solver]:
    for kind in _AUTO_ORDER if options.solver is Solver.AUTO else (options.solver,):
        solver = pywraplp.Solver.CreateSolver(kind.ortools_id)
        if solver is None:
            continue
        solver.SuppressOutput()
        if kind is Solver.HIGHS:  # its banner ignores SuppressOutput
            solver.SetSolverSpecificParametersAsString("output_flag=false")
        if kind is not Solver.CBC:  # CBC's threads option prints an error and does nothing
            solver.SetNumThreads(options.solver_threads(kind))
        if options.time_limit is not None:
            solver.SetTimeLimit(max(1, round(options.time_limit * 1000)))
        return solver, kind
    raise SolverError(f"solver {options.solver.value!r}: not available in this OR-tools build")


def _row(
    solver: pywraplp.Solver, s: Indicators, lb: float, ub: float, terms: list[Term]
) -> pywraplp.Constraint:
    """lb <= sum coef * s[r][i] <= ub; a single-strategy root is the constant s[r][0] = 1."""
    const, coef = 0.0, dict[tuple[int, int], float]()
    for r, i, c in terms:
        if r in s:
            coef[r, i] = coef.get((r, i), 0.0) + c
        else:
            const += c
    row = solver.Constraint(lb - const, ub - const)
    for (r, i), c in coef.items():
        row.SetCoefficient(s[r][i], c)
    return row


def _model(
    problem: IlpProblem, red: _Reduced, options: SolverOptions, min_peak: bool
) -> tuple[pywraplp.Solver, Solver, Indicators]:
    """The ILP above; with `min_peak`, minimize the peak live memory instead of the cost."""
    solver, kind = _new_solver(options)
    obj, scale = solver.Objective(), _largest([*red.costs.values(), *red.edges.values()])
    s = {r: [solver.BoolVar("") for _ in c] for r, c in red.costs.items() if len(c) > 1}
    for r, xs in s.items():
        _row(solver, s, 1, 1, [(r, i, 1.0) for i in range(len(xs))])
        for x, c in zip(xs, red.costs[r], strict=True):
            if c == math.inf:
                x.SetUb(0)
            elif not min_peak:
                obj.SetCoefficient(x, c / scale)
    # For the peak, only the edges that forbid pairs matter.
    edges = {ab: m for ab, m in red.edges.items() if not min_peak or np.isinf(m).any()}
    e = _add_edges(solver, s, edges, kind is Solver.CP_SAT, 0.0 if min_peak else 1 / scale)
    for p in problem.pairs:
        ra, rb = red.root[p.a], red.root[p.b]
        for i in range(len(red.costs[ra])):
            terms = [(ra, i, 1.0)] + [(rb, j, -1.0) for ii, j in p.allowed if ii == i]
            _row(solver, s, -solver.infinity(), 0, terms)
        for j in range(len(red.costs[rb])):
            terms = [(rb, j, 1.0)] + [(ra, i, -1.0) for i, jj in p.allowed if jj == j]
            _row(solver, s, -solver.infinity(), 0, terms)
    if problem.memory_budget is not None or min_peak:
        _add_memory(solver, s, problem, red.root, min_peak)
    if not min_peak and kind is not Solver.HIGHS:  # hints crash HiGHS in OR-tools 9.15
        pick = _greedy(red)
        hint = [(x, i == pick[r]) for r, xs in s.items() for i, x in enumerate(xs)]
        for (a, b), (rows, row_of, col_of) in e.items():
            hint += [
                (x, (g, h) == (row_of[pick[a]], col_of[pick[b]]))
                for g, xs in enumerate(rows)
                for h, x in enumerate(xs)
            ]
        solver.SetHint([x for x, _ in hint], [float(on) for _, on in hint])
    obj.SetMinimization()
    return solver, kind, s


def _groups(vectors: np.ndarray) -> tuple[list[list[int]], list[int]]:
    """Indices of identical rows of `vectors`, grouped (first occurrence order), and the
    group of each row."""
    index: dict[bytes, int] = {}
    groups: list[list[int]] = []
    of: list[int] = []
    for i, row in enumerate(vectors):
        key = row.tobytes()
        if key not in index:
            index[key] = len(groups)
            groups.append([])
        groups[index[key]].append(i)
        of.append(index[key])
    return groups, of


EdgeVars = dict[tuple[int, int], tuple[list[list[pywraplp.Variable]], list[int], list[int]]]


def _add_edges(
    solver: pywraplp.Solver, s: Indicators, edges: EdgeCosts, integral: bool, unit: float
) -> EdgeVars:
    """e[a,b][g][h] over groups of identical rows g (strategies of a with the same costs
    to every strategy of b) and identical columns h: rows sum to the s[a][i] of their
    group, columns to the s[b][j] of theirs; cost m[g][h] * unit. Once s is integral the
    group sums are one-hot and these rows force e = their outer product, so a continuous
    e is exact (CP-SAT would scale continuous variables, so it gets binaries:
    `integral`). Grouping is what keeps a 16x16 matrix of 4 distinct layouts at 4x4."""
    obj, out = solver.Objective(), {}
    for (a, b), m in edges.items():
        row_groups, row_of = _groups(m)
        col_groups, col_of = _groups(np.ascontiguousarray(m.T))
        rep = m[np.ix_([g[0] for g in row_groups], [h[0] for h in col_groups])]
        e = [[solver.Var(0, float(x < math.inf), integral, "") for x in r] for r in rep]
        out[a, b] = (e, row_of, col_of)
        for g, xs in zip(row_groups, e, strict=True):
            row = _row(solver, s, 0, 0, [(a, i, -1.0) for i in g])
            for x in xs:
                row.SetCoefficient(x, 1)
        for h, members in enumerate(col_groups):
            row = _row(solver, s, 0, 0, [(b, j, -1.0) for j in members])
            for xs in e:
                row.SetCoefficient(xs[h], 1)
        for (g, h), c in np.ndenumerate(rep):
            if unit and 0 != c < math.inf:
                obj.SetCoefficient(e[g][h], c * unit)
    return out


def _add_memory(
    solver: pywraplp.Solver,
    s: Indicators,
    problem: IlpProblem,
    root: tuple[int, ...],
    min_peak: bool,
) -> None:
    """Per live set that no other one dominates (`_live_rows`): live bytes <= budget, or
    (`min_peak`) <= P with P minimized."""
    unit = max((max(n.memory) for n in problem.nodes if n.memory), default=0.0)
    if unit == 0:
        return
    peak = solver.NumVar(0, solver.infinity(), "peak") if min_peak else None
    budget = 0.0 if min_peak else (problem.memory_budget or 0.0) / unit  # (peak on the left)
    for fixed, varying in _live_rows(problem):
        terms = [(root[v], i, x / unit) for v in varying for i, x in enumerate(problem.nodes[v].memory or ())]
        row = _row(solver, s, -solver.infinity(), budget - fixed / unit, terms)
        if peak is not None:
            row.SetCoefficient(peak, -1)
    if peak is not None:
        solver.Objective().SetCoefficient(peak, 1)


def _live_rows(problem: IlpProblem) -> list[tuple[float, tuple[int, ...]]]:
    """The live sets as (bytes that no choice changes, nodes whose bytes a choice does),
    without those another set dominates (no more fixed bytes, a subset of its nodes),
    looked for among identical sets and each set's neighbours in the given order (a
    sweep's consecutive sets mostly contain one another): the constraints of the
    dropped ones follow from the kept ones, memory being >= 0."""
    rows: list[tuple[float, frozenset[int]]] = []
    for t in problem.live_sets:
        fixed, varying = 0.0, set()
        for v in set(t):
            memory = problem.nodes[v].memory
            if not memory:
                continue
            if min(memory) == max(memory):
                fixed += memory[0]
            else:
                varying.add(v)
        rows.append((fixed, frozenset(varying)))

    def dominated(a: tuple[float, frozenset[int]], b: tuple[float, frozenset[int]]) -> bool:
        return a != b and a[0] <= b[0] and a[1] <= b[1]

    kept = {
        row for k, row in enumerate(rows)
        if not any(dominated(row, rows[j]) for j in (k - 1, k + 1) if 0 <= j < len(rows))
    }
    return sorted((fixed, tuple(sorted(varying))) for fixed, varying in kept)


def _greedy(red: _Reduced) -> dict[int, int]:
    """A plan to start the solver from (so a time limit still finds one): each root in
    order takes its best index given the roots placed before it."""
    nbrs: dict[int, list[tuple[int, np.ndarray]]] = {r: [] for r in red.costs}
    for (a, b), m in red.edges.items():
        nbrs[a].append((b, m))
        nbrs[b].append((a, m.T))
    pick: dict[int, int] = {}
    for r, c in red.costs.items():
        placed = [m[:, pick[u]] for u, m in nbrs[r] if u in pick]
        pick[r] = int(np.argmin(c + sum(placed, np.zeros_like(c))))
    return pick


def _run(
    problem: IlpProblem, red: _Reduced, options: SolverOptions, min_peak: bool
) -> tuple[int, tuple[int, ...], pywraplp.Solver, Solver, Indicators]:
    """Build and solve; the choices are all zeros unless a solution was found."""
    solver, kind, s = _model(problem, red, options, min_peak)
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(params.RELATIVE_MIP_GAP, 0.0)
    status = solver.Solve(params)
    found = status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE)
    pick = {r: int(np.argmax([x.solution_value() for x in xs])) for r, xs in s.items() if found}
    return status, _complete(red, pick), solver, kind, s


def _best_bound(problem: IlpProblem, red: _Reduced, solver: pywraplp.Solver,
                choices: tuple[int, ...]) -> float | None:
    """The solver's lower bound in problem units. The ILP minimizes the reduced problem's
    cost over 1/scale; what the reduction folded away is a constant, read off the
    solver's own plan (`choices`): its cost minus scale x its ILP objective."""
    scale = _largest([*red.costs.values(), *red.edges.values()])
    best = solver.Objective().BestBound()
    if not math.isfinite(best):
        return None
    offset = evaluate(problem, choices) - scale * solver.Objective().Value()
    return scale * best + offset


def _complete(red: _Reduced, pick: dict[int, int]) -> tuple[int, ...]:
    """Per original node, its root's index: from `pick`, or from the elimination tables."""
    pick = dict(pick)
    for step in reversed(red.steps):
        pick[step.node] = int(step.table[tuple(pick.get(u, 0) for u in step.neighbours)])
    return tuple(pick.get(r, 0) for r in red.root)


def _feasible(problem: IlpProblem, choices: tuple[int, ...]) -> bool:
    budget = problem.memory_budget
    return (
        evaluate(problem, choices) < math.inf
        and all((choices[p.a], choices[p.b]) in p.allowed for p in problem.pairs)
        and (budget is None or peak_memory(problem, choices) <= budget)
    )


def _run_told(problem: IlpProblem, red: _Reduced, options: SolverOptions, min_peak: bool
              ) -> tuple[int, tuple[int, ...], pywraplp.Solver, Solver, Indicators, SolverOptions]:
    """`_run`, where an infeasible problem is told as such: a node whose only strategy is
    forbidden raises InfeasibleError; OR-tools 9.15 reports HiGHS's "infeasible" as an
    unknown status (99), so without a time limit SCIP (or the next backend) is asked
    again. Also returns the options the answer came from."""
    forbidden = [r for r, c in red.costs.items() if len(c) == 1 and c[0] == math.inf]
    if forbidden:
        raise InfeasibleError(f"node {forbidden[0]}: its only strategy is forbidden (+inf)", None)
    status, choices, solver, kind, s = _run(problem, red, options, min_peak)
    if kind is Solver.HIGHS and status not in _SOLVED and options.time_limit is None:
        options = replace(options, solver=next((k for k in _AUTO_ORDER if k is not Solver.HIGHS), Solver.SCIP))
        status, choices, solver, kind, s = _run(problem, red, options, min_peak)
    return status, choices, solver, kind, s, options


def smallest_peak(problem: IlpProblem, options: SolverOptions | None = None) -> float:
    """The smallest peak of live memory (`peak_memory`) that a plan meeting the pair
    constraints and the forbidden (+inf) costs reaches (under a time limit: the best one
    found); `problem` needs its live sets (any `memory_budget`, even +inf). Raises
    InfeasibleError when no plan meets the constraints, SolverError when the solver
    finds nothing."""
    if problem.memory_budget is None:
        raise ValueError("smallest_peak: the problem has no live sets (give it a memory_budget, e.g. +inf)")
    options = options or SolverOptions()
    return _smallest_peak(problem, _reduce(problem, options.eliminate), options)


def _smallest_peak(problem: IlpProblem, red: _Reduced, options: SolverOptions) -> float:
    status, choices, _, kind, _, _ = _run_told(problem, red, options, min_peak=True)
    if status == pywraplp.Solver.INFEASIBLE:
        raise InfeasibleError("no plan meets the pair constraints and forbidden costs", None)
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        raise SolverError(f"solver {kind.value}: no solution (MPSolver status {status})")
    return peak_memory(problem, choices)


def solve(problem: IlpProblem, options: SolverOptions | None = None) -> IlpSolution:
    """Pick one strategy per node minimizing the total cost under the constraints.

    Raises InfeasibleError when no plan meets the memory budget, the pair constraints and
    the forbidden (+inf) costs; SolverError when the solver is missing or finds nothing.
    """
    options = options or SolverOptions()
    start = time.perf_counter()
    red = _reduce(problem, options.eliminate)
    status, choices, solver, kind, s, options = _run_told(problem, red, options, min_peak=False)
    bound = _best_bound(problem, red, solver, choices) if status == pywraplp.Solver.FEASIBLE else None
    if status == pywraplp.Solver.INFEASIBLE:
        budget = problem.memory_budget
        if budget is None:
            raise InfeasibleError("no plan meets the pair constraints and forbidden costs", None)
        try:
            peak = _smallest_peak(problem, red, options)
        except SolverError:
            raise InfeasibleError(f"memory budget {budget:.6g} B cannot be met", None) from None
        raise InfeasibleError(
            f"memory budget {budget:.6g} B per device is below the smallest peak the model "
            f"can reach, {peak:.6g} B",
            peak,
        )
    if status != pywraplp.Solver.OPTIMAL and options.time_limit is not None:
        # Stopped by the limit: keep the greedy plan where the solver has nothing better.
        greedy = _complete(red, _greedy(red))
        found = status == pywraplp.Solver.FEASIBLE
        if _feasible(problem, greedy) and (
            not found or evaluate(problem, greedy) < evaluate(problem, choices)
        ):
            status, choices = pywraplp.Solver.FEASIBLE, greedy
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        raise SolverError(f"solver {kind.value}: no solution (MPSolver status {status})")
    stats = IlpStats(
        nodes=len(problem.nodes),
        edges=len(problem.edges),
        merged_nodes=len(set(red.root)),
        merged_edges=red.merged_edges,
        eliminated=len(red.steps),
        ilp_nodes=len(s),
        ilp_edges=len(red.edges),
        variables=solver.NumVariables(),
        constraints=solver.NumConstraints(),
    )
    optimal = status == pywraplp.Solver.OPTIMAL
    objective = evaluate(problem, choices)
    return IlpSolution(
        choices=choices,
        objective=objective,
        status=SolveStatus.OPTIMAL if optimal else SolveStatus.FEASIBLE_TIME_LIMITED,
        solver=kind.value,
        solve_seconds=time.perf_counter() - start,
        stats=stats,
        bound=objective if optimal else (None if bound is None else min(bound, objective)),
    )
