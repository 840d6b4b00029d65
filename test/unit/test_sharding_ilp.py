"""The strategy ILP (`passes/sharding/ilp.py`) against brute force, and its reductions."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ortools.linear_solver import pywraplp

from alpa_mlir.passes.sharding.ilp import (
    CP_SAT_WORKERS,
    IlpEdge,
    IlpNode,
    IlpPairConstraint,
    IlpProblem,
    InfeasibleError,
    Solver,
    SolverOptions,
    SolveStatus,
    _best_bound,
    _reduce,
    _run,
    evaluate,
    smallest_peak,
    solve,
)

INF = math.inf


# ---------------------------------------------------------------- brute force (independent)


@dataclass(frozen=True)
class BruteForce:
    best: float | None  # None: no plan meets every constraint
    best_choices: tuple[int, ...] | None
    min_peak: float | None  # over plans meeting all but the budget


def _root(problem: IlpProblem, v: int) -> int:
    while problem.nodes[v].follow is not None:
        v = problem.nodes[v].follow  # type: ignore[assignment]
    return v


def _cost(problem: IlpProblem, c: tuple[int, ...]) -> float:
    total = sum(n.costs[i] for n, i in zip(problem.nodes, c, strict=True))
    return total + sum(e.costs[c[e.src]][c[e.dst]] for e in problem.edges)


def _peak(problem: IlpProblem, c: tuple[int, ...]) -> float:
    def mem(v: int) -> float:
        m = problem.nodes[v].memory
        return m[c[v]] if m else 0.0

    return max((sum(mem(v) for v in live) for live in problem.live_sets), default=0.0)


def _meets_pairs_and_follows(problem: IlpProblem, c: tuple[int, ...]) -> bool:
    follows = all(n.follow is None or c[v] == c[n.follow] for v, n in enumerate(problem.nodes))
    return follows and all((c[p.a], c[p.b]) in p.allowed for p in problem.pairs)


def _feasible(problem: IlpProblem, c: tuple[int, ...], tol: float = 0.0) -> bool:
    budget = problem.memory_budget
    fits = budget is None or _peak(problem, c) <= budget + tol
    return _meets_pairs_and_follows(problem, c) and _cost(problem, c) < INF and fits


def brute_force(problem: IlpProblem) -> BruteForce:
    roots = sorted({_root(problem, v) for v in range(len(problem.nodes))})
    best, best_choices, min_peak = None, None, None
    for pick in itertools.product(*(range(len(problem.nodes[r].costs)) for r in roots)):
        by_root = dict(zip(roots, pick, strict=True))
        c = tuple(by_root[_root(problem, v)] for v in range(len(problem.nodes)))
        cost = _cost(problem, c)
        if not _meets_pairs_and_follows(problem, c) or cost == INF:
            continue
        peak = _peak(problem, c)
        min_peak = peak if min_peak is None else min(min_peak, peak)
        if problem.memory_budget is not None and peak > problem.memory_budget:
            continue
        if best is None or cost < best:
            best, best_choices = cost, c
    return BruteForce(best, best_choices, min_peak)


# ---------------------------------------------------------------- random problems


@st.composite
def problems(draw: st.DrawFn) -> IlpProblem:
    n = draw(st.integers(2, 6))
    scale = draw(st.sampled_from([1.0, 1e9, 1e-12]))
    forbid = draw(st.booleans())  # whether some costs are +inf

    def cost_values(size: int) -> tuple[float, ...]:
        raw = draw(st.lists(st.integers(-1 if forbid else 0, 20), min_size=size, max_size=size))
        return tuple(INF if x < 0 else x * scale for x in raw)

    nodes: list[IlpNode] = []
    for v in range(n):
        follow = draw(st.none() | st.integers(0, v - 1)) if v else None
        k = len(nodes[follow].costs) if follow is not None else draw(st.integers(1, 4))
        memory = tuple(
            float(x) for x in draw(st.lists(st.integers(0, 100), min_size=k, max_size=k))
        )
        nodes.append(IlpNode(cost_values(k), follow, memory if draw(st.booleans()) else None))
    edges = []
    for _ in range(draw(st.integers(0, 8))):
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        ka, kb = len(nodes[a].costs), len(nodes[b].costs)
        edges.append(IlpEdge(a, b, tuple(cost_values(kb) for _ in range(ka))))
    pairs = []
    for _ in range(draw(st.integers(0, 2))):
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        grid = list(itertools.product(range(len(nodes[a].costs)), range(len(nodes[b].costs))))
        allowed = draw(st.lists(st.sampled_from(grid), max_size=len(grid), unique=True))
        pairs.append(IlpPairConstraint(a, b, tuple(allowed)))
    live = draw(st.lists(st.lists(st.integers(0, n - 1), max_size=n, unique=True), max_size=3))
    budget = draw(st.none() | st.integers(0, 300).map(float))
    return IlpProblem(
        tuple(nodes), tuple(edges), tuple(pairs), tuple(tuple(t) for t in live), budget
    )


def chain(
    n: int, k: int, seed: int, follow_fraction: float = 0.0, skip_edges: int = 0
) -> IlpProblem:
    """A chain of n ops with k strategies each (resharding = 0 on the diagonal), some of
    them following their predecessor, plus random skip edges (making it not a tree)."""
    rng = random.Random(seed)

    def matrix() -> tuple[tuple[float, ...], ...]:
        return tuple(
            tuple(0.0 if i == j else rng.uniform(0, 1) for j in range(k)) for i in range(k)
        )

    nodes = tuple(
        IlpNode(
            tuple(rng.uniform(0, 1) for _ in range(k)),
            v - 1 if v and rng.random() < follow_fraction else None,
        )
        for v in range(n)
    )
    edges = [IlpEdge(v - 1, v, matrix()) for v in range(1, n)]
    for _ in range(skip_edges):
        a = rng.randrange(n - 2)
        edges.append(IlpEdge(a, rng.randrange(a + 2, n), matrix()))
    return IlpProblem(nodes, tuple(edges))


def available(solver: Solver) -> bool:
    if solver is Solver.AUTO:
        return True
    return pywraplp.Solver.CreateSolver(solver.ortools_id) is not None


# ---------------------------------------------------------------- tests


@settings(max_examples=200, deadline=None, database=None)
@given(problems(), st.booleans())
def test_solve_equals_brute_force(problem: IlpProblem, eliminate: bool) -> None:
    expected = brute_force(problem)
    options = SolverOptions(eliminate=eliminate)
    if expected.best is None:
        with pytest.raises(InfeasibleError) as info:
            solve(problem, options)
        got = info.value.min_peak_memory
        if problem.memory_budget is None or expected.min_peak is None:
            assert got is None
        else:
            assert got is not None and math.isclose(got, expected.min_peak, rel_tol=1e-9)
            assert expected.min_peak > problem.memory_budget
        return
    sol = solve(problem, options)
    assert sol.status is SolveStatus.OPTIMAL
    assert len(sol.choices) == len(problem.nodes)
    assert _feasible(problem, sol.choices)
    assert sol.objective == _cost(problem, sol.choices)
    assert math.isclose(sol.objective, expected.best, rel_tol=1e-9, abs_tol=1e-300)


def test_follow_merging_and_folding_shrink_the_problem() -> None:
    plain = chain(60, 4, seed=1)
    merged = chain(60, 4, seed=1, follow_fraction=0.5)
    ilp_only = SolverOptions(eliminate=False)
    a, b = solve(plain, ilp_only), solve(merged, ilp_only)
    assert a.stats.merged_nodes == 60 and a.stats.merged_edges == 59
    n_roots = sum(node.follow is None for node in merged.nodes)
    assert b.stats.nodes == 60 and b.stats.merged_nodes == n_roots < 40
    assert b.stats.merged_edges == n_roots - 1
    assert b.stats.variables < a.stats.variables
    assert b.stats.constraints < a.stats.constraints
    assert b.choices == brute_force_chain(merged)  # follows take their root's index
    assert all(
        node.follow is None or b.choices[v] == b.choices[node.follow]
        for v, node in enumerate(merged.nodes)
    )


def brute_force_chain(problem: IlpProblem) -> tuple[int, ...]:
    """Exact chain optimum by dynamic programming (edges only between neighbours)."""
    n, k = len(problem.nodes), len(problem.nodes[0].costs)
    between = {(e.src, e.dst): e.costs for e in problem.edges}
    best = [list(problem.nodes[0].costs)]
    back: list[list[int]] = [[0] * k]
    for v in range(1, n):
        m, node = between[v - 1, v], problem.nodes[v]
        row, arg = [], []
        for j in range(k):
            prev = range(k) if node.follow is None else [j]
            i = min(prev, key=lambda i: best[-1][i] + m[i][j])
            row.append(best[-1][i] + m[i][j] + node.costs[j])
            arg.append(i)
        best.append(row)
        back.append(arg)
    choice = [min(range(k), key=lambda j: best[-1][j])]
    for v in range(n - 1, 0, -1):
        choice.append(back[v][choice[-1]])
    return tuple(reversed(choice))


def test_elimination_removes_chains_and_keeps_cycles() -> None:
    plain = chain(200, 5, seed=2, follow_fraction=0.3)
    sol = solve(plain)
    assert sol.stats.eliminated == sol.stats.merged_nodes and sol.stats.variables == 0
    assert sol.choices == brute_force_chain(plain)
    assert sol.choices == solve(plain, SolverOptions(eliminate=False)).choices
    skips = chain(60, 4, seed=4, skip_edges=12)
    sol = solve(skips)
    assert sol.stats.eliminated > 0 and 0 < sol.stats.ilp_nodes < 60
    assert sol.objective == pytest.approx(solve(skips, SolverOptions(eliminate=False)).objective)
    # a node in a pair constraint or a budgeted live set stays in the ILP
    nodes = tuple(IlpNode(n.costs, memory=(1.0,) * 5) for n in plain.nodes[:3])
    pinned = IlpProblem(nodes, plain.edges[:2], live_sets=((0, 1),), memory_budget=10.0)
    sol = solve(pinned)
    assert (sol.stats.eliminated, sol.stats.ilp_nodes) == (1, 2)


def test_edge_folding() -> None:
    rows_equal = IlpEdge(0, 1, ((1.0, 2.0, 3.0), (1.0, 2.0, 3.0)))
    cols_equal = IlpEdge(1, 2, ((4.0, 4.0), (0.0, 0.0), (1.0, 1.0)))
    zero = IlpEdge(0, 2, ((0.0, 0.0), (0.0, 0.0)))
    single = IlpEdge(3, 2, ((0.0, 9.0),))
    nodes = (IlpNode((0.0, 0.5)), IlpNode((0.0, 0.0, 0.0)), IlpNode((0.0, 1.0)), IlpNode((1.0,)))
    problem = IlpProblem(nodes, (rows_equal, cols_equal, zero, single))
    sol = solve(problem, SolverOptions(eliminate=False))
    assert (sol.stats.ilp_nodes, sol.stats.ilp_edges) == (3, 0)
    assert sol.stats.variables == 2 + 3 + 2  # one per strategy of the three nodes left
    assert sol.choices == (0, 1, 0, 0)
    assert sol.objective == 3.0 == evaluate(problem, sol.choices)  # node 3, edge 0->1


def test_deterministic_with_ties_going_to_lower_indices() -> None:
    k = 4
    same = tuple(tuple(0.0 if i == j else 1.0 for j in range(k)) for i in range(k))
    nodes = tuple(IlpNode((2.0,) * k) for _ in range(30))
    problem = IlpProblem(nodes, tuple(IlpEdge(v, v + 1, same) for v in range(29)))
    for solver in (Solver.SCIP, Solver.HIGHS, Solver.CBC):
        if available(solver):
            assert solve(problem, SolverOptions(solver)).choices == (0,) * 30
    problem = chain(40, 6, seed=3, skip_edges=9)
    first = solve(problem)
    assert all(solve(problem).choices == first.choices for _ in range(3))


@pytest.mark.parametrize("solver", list(Solver), ids=lambda s: s.value)
def test_each_available_solver(solver: Solver) -> None:
    if solver in (Solver.AUTO, Solver.SCIP, Solver.HIGHS):
        assert available(solver), "OR-tools must ship SCIP and HiGHS"
    elif not available(solver):
        pytest.skip(f"this OR-tools build lacks {solver.value}")
    problem = chain(10, 3, seed=7, follow_fraction=0.3, skip_edges=4)
    memory = tuple(IlpNode(n.costs, n.follow, (3.0, 2.0, 1.0)) for n in problem.nodes)
    live = tuple(tuple(range(v, v + 4)) for v in range(7))
    pair = IlpPairConstraint(0, 9, ((0, 1), (1, 2), (2, 0)))
    for p in (problem, IlpProblem(memory, problem.edges, (pair,), live, memory_budget=9.0)):
        sol = solve(p, SolverOptions(solver, eliminate=False))
        expected = brute_force(p)
        assert sol.solver == (Solver.HIGHS if solver is Solver.AUTO else solver).value
        assert sol.status is SolveStatus.OPTIMAL and _feasible(p, sol.choices, tol=1e-6)
        assert expected.best is not None
        assert math.isclose(sol.objective, expected.best, rel_tol=1e-6)


@pytest.mark.parametrize(("solver", "limit"), [(Solver.AUTO, 1.0), (Solver.HIGHS, 0.05)])
def test_time_limited_solve_returns_a_plan(solver: Solver, limit: float) -> None:
    if not available(solver):
        pytest.skip(f"this OR-tools build lacks {solver.value}")
    problem = chain(300, 8, seed=11, follow_fraction=0.2, skip_edges=150)
    sol = solve(problem, SolverOptions(solver, time_limit=limit))
    assert sol.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE_TIME_LIMITED)
    assert sol.solve_seconds < 15
    assert len(sol.choices) == 300 and sol.objective == evaluate(problem, sol.choices)
    if sol.status is SolveStatus.OPTIMAL:
        assert sol.gap == 0.0
    elif sol.bound is not None:
        assert sol.bound <= sol.objective and 0.0 <= sol.gap <= 1.0


def test_thread_defaults() -> None:
    """One thread (reproducible) by default; CP-SAT's portfolio gets its workers; an
    explicit count wins."""
    assert SolverOptions().solver_threads(Solver.HIGHS) == 1
    assert SolverOptions().solver_threads(Solver.CP_SAT) == CP_SAT_WORKERS > 1
    assert SolverOptions(threads=3).solver_threads(Solver.CP_SAT) == 3


@pytest.mark.parametrize("solver", [Solver.HIGHS, Solver.SCIP, Solver.CP_SAT], ids=lambda s: s.value)
def test_best_bound_is_in_the_problems_units(solver: Solver) -> None:
    """At the optimum the solver's bound, moved back to the problem's units (the ILP's
    cost scale, and the constant the reduction folded away), is the plan's cost."""
    if not available(solver):
        pytest.skip(f"this OR-tools build lacks {solver.value}")
    problem = chain(40, 4, seed=3, follow_fraction=0.2, skip_edges=12)
    red = _reduce(problem, True)
    status, choices, backend, _, _ = _run(problem, red, SolverOptions(solver), min_peak=False)
    assert status == pywraplp.Solver.OPTIMAL
    bound = _best_bound(problem, red, backend, choices)
    assert bound is not None and math.isclose(bound, evaluate(problem, choices), rel_tol=1e-6)


@settings(max_examples=100, deadline=None, database=None)
@given(problems())
def test_smallest_peak_equals_brute_force(problem: IlpProblem) -> None:
    problem = replace(problem, memory_budget=INF)  # live sets, no budget
    expected = brute_force(problem).min_peak
    if expected is None:
        with pytest.raises(InfeasibleError):
            smallest_peak(problem)
        return
    assert smallest_peak(problem) == pytest.approx(expected, rel=1e-9)


def test_smallest_peak_needs_live_sets() -> None:
    with pytest.raises(ValueError, match="no live sets"):
        smallest_peak(IlpProblem((IlpNode((0.0, 1.0), memory=(2.0, 1.0)),), (), live_sets=((0,),)))


def test_memory_budget_below_the_smallest_peak() -> None:
    nodes = (IlpNode((0.0, 1.0), memory=(8.0, 4.0)), IlpNode((0.0, 1.0), memory=(8.0, 2.0)))
    problem = IlpProblem(nodes, (), live_sets=((0, 1),), memory_budget=10.0)
    sol = solve(problem)
    assert sol.choices == (0, 1) and sol.objective == 1.0
    with pytest.raises(InfeasibleError, match=r"budget 5 B .* smallest peak .* 6 B") as info:
        solve(IlpProblem(nodes, (), live_sets=((0, 1),), memory_budget=5.0))
    assert info.value.min_peak_memory == 6.0


def test_unsatisfiable_pairs_and_forbidden_strategies() -> None:
    nodes = (IlpNode((0.0, 1.0)), IlpNode((0.0, 1.0)))
    with pytest.raises(InfeasibleError) as info:
        solve(IlpProblem(nodes, (), (IlpPairConstraint(0, 1, ()),), memory_budget=1.0))
    assert info.value.min_peak_memory is None
    with pytest.raises(InfeasibleError, match="forbidden"):
        solve(IlpProblem((IlpNode((INF,)),), ()))
    forbid = IlpEdge(0, 1, ((INF, 0.0), (0.0, 5.0)))
    nodes = (IlpNode((0.0, 1.0)), IlpNode((0.0, 2.0)))
    for eliminate in (True, False):
        sol = solve(IlpProblem(nodes, (forbid,)), SolverOptions(eliminate=eliminate))
        assert sol.choices == (1, 0) and sol.objective == 1.0


def test_cost_scale_does_not_matter() -> None:
    base = chain(20, 4, seed=5, skip_edges=5)
    for scale in (1e9, 1e-12):
        nodes = tuple(IlpNode(tuple(c * scale for c in n.costs)) for n in base.nodes)
        edges = tuple(
            IlpEdge(e.src, e.dst, tuple(tuple(c * scale for c in r) for r in e.costs))
            for e in base.edges
        )
        sol = solve(IlpProblem(nodes, edges))
        assert sol.choices == solve(base).choices
        assert math.isclose(sol.objective, solve(base).objective * scale, rel_tol=1e-9)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: IlpProblem((IlpNode((1.0,)), IlpNode((1.0,), follow=1)), ()),
            r"follow=1, expected an index in \[0, 1\)",
        ),
        (lambda: IlpProblem((IlpNode((1.0,), follow=-1),), ()), r"follow=-1, expected"),
        (
            lambda: IlpProblem((IlpNode((1.0,)), IlpNode((1.0, 2.0), follow=0)), ()),
            r"got 2 strategies, expected 1",
        ),
        (lambda: IlpNode((1.0, 2.0), memory=(1.0,)), r"got 1 memory values, expected 2"),
        (lambda: IlpNode(()), r"got no strategies"),
        (lambda: IlpNode((math.nan,)), r"got nan, expected finite or \+inf"),
        (
            lambda: IlpEdge(0, 1, ((1.0, 2.0), (1.0,))),
            r"got row lengths \[1, 2\], expected a non-empty rectangular",
        ),
        (
            lambda: IlpProblem(
                (IlpNode((1.0, 2.0)), IlpNode((1.0,))), (IlpEdge(0, 1, ((1.0, 2.0),)),)
            ),
            r"got a 1x2 matrix, expected 2x1",
        ),
        (
            lambda: IlpProblem((IlpNode((1.0,)),), (IlpEdge(0, 3, ((1.0,),)),)),
            r"expected node indices in \[0, 1\)",
        ),
        (
            lambda: IlpProblem((IlpNode((1.0,)),), (), (IlpPairConstraint(0, 0, ((0, 1),)),)),
            r"got allowed \(0, 1\), expected indices below \(1, 1\)",
        ),
        (lambda: IlpProblem((IlpNode((1.0,)),), (), live_sets=((2,),)), r"live set 0: got \(2,\)"),
        (lambda: SolverOptions(time_limit=0.0), r"time_limit: got 0.0, expected > 0"),
        (lambda: SolverOptions(threads=0), r"threads: got 0, expected >= 1"),
    ],
)
def test_validation_errors_say_what_was_received(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
