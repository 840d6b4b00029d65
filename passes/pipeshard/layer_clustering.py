"""Operator clustering: Alpa's layer construction as a pure DP (no MLIR).

Input: the forward ops of a training step in topological order, op i with FLOPs f_i >= 0
and a heavy flag (dot_general / convolution), and the dataflow as edges
`(src, dst, nbytes)` or `(src, dst, nbytes, result)` with src < dst: result `result`
(default 0) of op `src`, `nbytes` bytes, is an operand of op `dst`. A value is identified by
(src, result); every edge of one value must carry the same nbytes.

Output: L consecutive layers, given by their start indices
`0 = b_0 < b_1 < ... < b_{L-1} < n`; layer i is the ops [b_i, b_{i+1}) with b_L = n:

    ops:     0  1  2 | 3  4  5  6 | 7  8
    layers:  [ 0     ] [ 1        ] [ 2 ]      boundaries = (0, 3, 7)

Crossing bytes (the communication a layer receives), for a layer [s, e):

    C(s, e) = sum of nbytes(v) over the distinct values v whose producer is < s and that
              at least one op in [s, e) consumes.

So a value counts once per receiving layer: produced in layer a and read by layers b and
c (> a) it counts in C of b and in C of c; read by five ops of layer b it counts once in b;
read only inside its own layer it never counts. Layer 0 receives nothing. Graph inputs
(parameters, the batch) are not edges here and never count: only activations cross (as in
Alpa, whose `jaxpr_eqns_input_sizes` counts only values produced by earlier equations).

Constraints, for every layer:
- FLOPs: sum of f_i <= (1 + eps) * F_total / L (plus FLOPS_RTOL * F_total slack for float
  rounding); no lower bound. Alpa: eps = 0.5 (`DEFAULT_EPS`); its cost model counts the
  FLOPs of heavy ops only (a caller wanting that passes f_i = 0 for light ops).
- heavy ops: at least k heavy ops, k = min(min_heavy, H // L) for H heavy ops in all. This
  is Alpa's rule (`LAYER_HEAVY_OP_LOWER_BOUND = 3`, lowered to int(H / L) when there are
  too few heavy ops). If no partition meets both constraints, k is lowered one step at a
  time until one does; the plan reports the k it met (`min_heavy_applied` below
  `min_heavy_target`, `relaxed_heavy`). eps is never relaxed: when no partition meets the
  FLOPs bound even with k = 0, LayerClusteringError says which eps would be needed.

Objective, lexicographic: (1) the maximum over layers of C, (2) then the sum over layers
of C, (3) then the lexicographically smallest boundaries (deterministic).

Algorithm. FLOPs and heavy counts have prefix sums, so the valid ends of a layer starting
at s form one interval [lo(s), hi(s)] (the FLOPs bound caps the end, the heavy count
floors it). For C: give each value v with producer p and sorted distinct consumers
c_1 < ... < c_m the incidences (t, c_j) with t = c_{j-1} (t = p for j = 1). Then

    C(s, e) = sum of nbytes over the incidences with s <= c < e and t < s

(of a value produced before s, the first consumer at or after s is the one incidence
with c >= s and t < s; a value produced at or after s has none).
For a fixed s that is a cumulative sum along c, so a whole row C(s, lo(s)..hi(s)) costs
O(width + incidences in the window): no n x n table. An O(L n) reachability check over
the intervals settles feasibility (and the heavy-op relaxation), then three passes:
1. M* = min over partitions of the max C, by M[q][e] = min_s max(M[q-1][s], C(s, e)).
   (Carrying (max, sum) pairs through that recurrence, as Alpa does, is not exact: a
   prefix with a larger max but a smaller sum can win once a later layer raises the max.)
2. A suffix DP S[r][s] = min over e of C(s, e) + S[r-1][e], over valid layers with
   C(s, e) <= M*: the least sum among the plans whose max is M*.
3. Walk from s = 0 taking the smallest e with C(s, e) + S[r-1][e] = S[r][s]: the
   lexicographically smallest boundaries among those.
Time O(L * sum_s width(s)) <= O(L n^2), width about (1 + eps) n / L when FLOPs are spread;
memory O(L n + edges). Byte sums are exact (integers in float64, checked below 2**53).

`auto_num_layers` picks L as Alpa's `search_layer_num` does. The backward and apply ops
are placed afterwards, by `remaining_assignment.assign_remaining`.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ALPA_EPS = 0.5  # Alpa's DEFAULT_EPS: each layer's FLOPs within (1 + eps) x the average
ALPA_MIN_HEAVY = 3  # Alpa's LAYER_HEAVY_OP_LOWER_BOUND: dot/conv ops per layer, where possible
FLOPS_RTOL = 1e-9  # slack on the FLOPs bound, as a fraction of the total FLOPs
_EXACT_LIMIT = 2**53  # float64 holds every integer below this exactly

Edge = tuple[int, int, int] | tuple[int, int, int, int]  # (src, dst, nbytes[, result])
_IntArray = npt.NDArray[np.int64]
_FloatArray = npt.NDArray[np.float64]


class LayerClusteringError(ValueError):
    """Malformed input, or no partition meets the constraints."""


@dataclass(frozen=True)
class LayerCount:
    """The `layers` option: a fixed count, or None for Alpa's automatic choice."""

    count: int | None = None

    @classmethod
    def parse_option(cls, text: str) -> LayerCount:
        if text == "auto":
            return cls(None)
        try:
            count = int(text)
        except ValueError:
            raise ValueError(f"expected 'auto' or a positive integer, got {text!r}") from None
        if count < 1:
            raise ValueError(f"expected 'auto' or a positive integer, got {text!r}")
        return cls(count)

    def __str__(self) -> str:
        return "auto" if self.count is None else str(self.count)


@dataclass(frozen=True)
class ClusterOp:
    """One forward op: its FLOPs and whether it is heavy (dot_general / convolution)."""

    flops: float
    is_heavy: bool = False

    def __post_init__(self) -> None:
        number = isinstance(self.flops, int | float | np.integer | np.floating)
        if isinstance(self.flops, bool) or not (number and math.isfinite(self.flops)):
            raise LayerClusteringError(
                f"ClusterOp.flops must be a finite number, got {self.flops!r}"
            )
        if self.flops < 0:
            raise LayerClusteringError(f"ClusterOp.flops must be >= 0, got {self.flops!r}")
        if not isinstance(self.is_heavy, bool):
            raise LayerClusteringError(f"ClusterOp.is_heavy must be a bool, got {self.is_heavy!r}")


@dataclass(frozen=True)
class LayerPlan:
    """A partition of the forward ops into consecutive layers, with its costs."""

    boundaries: tuple[int, ...]  # start op index of each layer; boundaries[0] == 0
    num_ops: int  # n; the last layer ends at n
    layer_flops: tuple[float, ...]  # per layer
    layer_heavy: tuple[int, ...]  # heavy ops per layer
    cross_layer_bytes: tuple[int, ...]  # per layer: C, the bytes it receives (0 for layer 0)
    cut_bytes: tuple[int, ...]  # per boundary b_1..b_{L-1}: bytes of the distinct values
    #   produced before it and read at or after it (what lives across the cut)
    objective: int  # max(cross_layer_bytes): what the DP minimises
    total_cross_bytes: int  # sum(cross_layer_bytes): the first tie-break
    flops_limit: float  # (1 + eps) * total FLOPs / L
    min_heavy_target: int  # min(min_heavy, H // L): Alpa's per-layer heavy-op floor
    min_heavy_applied: int  # the floor the plan meets; below the target only if relaxed

    def __post_init__(self) -> None:
        b, n = self.boundaries, self.num_ops
        if not b or b[0] != 0 or any(x >= y for x, y in itertools.pairwise(b)) or b[-1] >= n:
            raise LayerClusteringError(
                f"LayerPlan.boundaries must start at 0, increase strictly and stay below "
                f"num_ops={n}; got {b}"
            )
        per_layer = (self.layer_flops, self.layer_heavy, self.cross_layer_bytes)
        if any(len(x) != len(b) for x in per_layer) or len(self.cut_bytes) != len(b) - 1:
            raise LayerClusteringError(
                f"LayerPlan: {len(b)} layers need {len(b)} flops/heavy/cross entries and "
                f"{len(b) - 1} cut entries"
            )

    @property
    def num_layers(self) -> int:
        return len(self.boundaries)

    @property
    def relaxed_heavy(self) -> bool:
        """True when no plan met the heavy-op floor and a lower one was used."""
        return self.min_heavy_applied < self.min_heavy_target

    def layer_ranges(self) -> tuple[tuple[int, int], ...]:
        """(start, end) of each layer, end exclusive."""
        ends = (*self.boundaries[1:], self.num_ops)
        return tuple(zip(self.boundaries, ends, strict=True))

    def layer_of_op(self) -> tuple[int, ...]:
        """The layer of each forward op."""
        return tuple(layer for layer, (s, e) in enumerate(self.layer_ranges()) for _ in range(s, e))


@dataclass(frozen=True, eq=False)
class _Problem:
    """Validated input with its prefix sums and crossing incidences."""

    num_ops: int
    flops_prefix: _FloatArray  # [n + 1]
    heavy_prefix: _IntArray  # [n + 1]
    values: tuple[tuple[int, tuple[int, ...], int], ...]  # (producer, consumers, nbytes)
    inc_consumer: _IntArray  # incidences sorted by consumer
    inc_before: _IntArray  # t: the previous reader of the value (or its producer)
    inc_bytes: _FloatArray
    total_value_bytes: int

    @property
    def total_flops(self) -> float:
        return float(self.flops_prefix[-1])

    @property
    def num_heavy(self) -> int:
        return int(self.heavy_prefix[-1])


def as_int(x: object, what: str) -> int:
    """`x` as an int; LayerClusteringError naming `what` unless it is one (bools are not)."""
    if isinstance(x, bool) or not isinstance(x, int | np.integer):
        raise LayerClusteringError(f"{what} must be an int, got {x!r}")
    return int(x)


def _prepare(ops: Sequence[ClusterOp], edges: Sequence[Edge]) -> _Problem:
    n = len(ops)
    if n == 0:
        raise LayerClusteringError("no forward ops to cluster (got an empty op list)")
    for i, op in enumerate(ops):
        if not isinstance(op, ClusterOp):
            raise LayerClusteringError(f"ops[{i}] must be a ClusterOp, got {op!r}")
    values: dict[tuple[int, int], tuple[int, set[int]]] = {}
    for k, edge in enumerate(edges):
        if len(edge) not in (3, 4):
            raise LayerClusteringError(
                f"edges[{k}] must be (src, dst, nbytes) or (src, dst, nbytes, result), got {edge!r}"
            )
        src, dst, nbytes = (as_int(x, f"edges[{k}] field") for x in edge[:3])
        result = as_int(edge[3], f"edges[{k}] result") if len(edge) == 4 else 0
        if not 0 <= src < dst < n:
            raise LayerClusteringError(
                f"edges[{k}] = {edge!r}: expected 0 <= src < dst < {n} (ops in topological order)"
            )
        if nbytes < 0 or result < 0:
            raise LayerClusteringError(f"edges[{k}] = {edge!r}: nbytes and result must be >= 0")
        known = values.setdefault((src, result), (nbytes, set()))
        if known[0] != nbytes:
            raise LayerClusteringError(
                f"edges[{k}] = {edge!r}: value (op {src}, result {result}) has {known[0]} bytes "
                f"on an earlier edge"
            )
        known[1].add(dst)
    table = tuple(
        (src, tuple(sorted(users)), nbytes) for (src, _), (nbytes, users) in sorted(values.items())
    )
    incidences = [
        (c, t, nbytes)
        for src, users, nbytes in table
        if nbytes > 0
        for t, c in zip((src, *users[:-1]), users, strict=True)
    ]
    incidences.sort()
    inc = np.array(incidences, dtype=np.int64).reshape(-1, 3)
    flops = np.array([op.flops for op in ops], dtype=np.float64)
    heavy = np.array([op.is_heavy for op in ops], dtype=np.int64)
    return _Problem(
        num_ops=n,
        flops_prefix=np.concatenate(([0.0], np.cumsum(flops))),
        heavy_prefix=np.concatenate(([0], np.cumsum(heavy))).astype(np.int64),
        values=table,
        inc_consumer=np.ascontiguousarray(inc[:, 0]),
        inc_before=np.ascontiguousarray(inc[:, 1]),
        inc_bytes=inc[:, 2].astype(np.float64),
        total_value_bytes=sum(nbytes for _, _, nbytes in table),
    )


def _flops_limit(prob: _Problem, num_layers: int, eps: float) -> float:
    return (1.0 + eps) * prob.total_flops / num_layers


def _end_ranges(prob: _Problem, limit: float, k: int) -> tuple[_IntArray, _IntArray]:
    """lo[s], hi[s]: a layer [s, e) is valid iff lo[s] <= e <= hi[s]."""
    n, fp, hp = prob.num_ops, prob.flops_prefix, prob.heavy_prefix
    slack = limit + FLOPS_RTOL * prob.total_flops
    hi = np.searchsorted(fp, fp[:n] + slack, side="right").astype(np.int64) - 1
    first_k = np.searchsorted(hp, hp[:n] + k, side="left").astype(np.int64)
    lo = np.maximum(np.arange(1, n + 1, dtype=np.int64), first_k)
    return lo, hi


def _feasible(lo: _IntArray, hi: _IntArray, num_layers: int) -> bool:
    """Whether some partition into exactly num_layers valid layers exists: O(L n)."""
    n = len(lo)
    reach = np.zeros(n + 1, dtype=bool)
    reach[0] = True
    for _ in range(num_layers):
        starts = np.flatnonzero(reach[:n])
        a, b = lo[starts], hi[starts]
        ok = a <= b
        diff = np.zeros(n + 2, dtype=np.int64)
        np.add.at(diff, a[ok], 1)
        np.add.at(diff, b[ok] + 1, -1)
        reach = np.cumsum(diff[: n + 1]) > 0
        if not reach.any():
            return False
    return bool(reach[n])


def _cross_row(prob: _Problem, s: int, lo: int, hi: int) -> _FloatArray:
    """C(s, e) for e = lo..hi (lo > s)."""
    a = int(np.searchsorted(prob.inc_consumer, s, side="left"))
    z = int(np.searchsorted(prob.inc_consumer, hi, side="left"))
    keep = prob.inc_before[a:z] < s
    gains = np.bincount(
        prob.inc_consumer[a:z][keep] - s, weights=prob.inc_bytes[a:z][keep], minlength=hi - s
    )
    return np.cumsum(gains, dtype=np.float64)[lo - s - 1 :]


def _min_max(prob: _Problem, lo: _IntArray, hi: _IntArray, num_layers: int) -> float:
    """Phase 1: the least achievable max C over partitions into num_layers valid layers."""
    n = prob.num_ops
    best = np.full((num_layers + 1, n + 1), np.inf)
    best[0, 0] = 0.0
    for s in range(n):
        prev = best[:num_layers, s]
        if lo[s] > hi[s] or not np.isfinite(prev).any():
            continue
        row = _cross_row(prob, s, int(lo[s]), int(hi[s]))
        view = best[1:, lo[s] : hi[s] + 1]
        np.minimum(view, np.maximum(prev[:, None], row[None, :]), out=view)
    return float(best[num_layers, n])


def _min_sum_suffix(
    prob: _Problem, lo: _IntArray, hi: _IntArray, num_layers: int, cap: float
) -> _FloatArray:
    """Phase 2: S[r][s], the least sum of C over [s, n) in r valid layers each with C <= cap."""
    n = prob.num_ops
    suffix = np.full((num_layers + 1, n + 1), np.inf)
    suffix[0, n] = 0.0
    for s in range(n - 1, -1, -1):
        if lo[s] > hi[s]:
            continue
        row = _cross_row(prob, s, int(lo[s]), int(hi[s]))
        rest = suffix[:num_layers, lo[s] : hi[s] + 1]
        cand = np.where(row[None, :] <= cap, row[None, :] + rest, np.inf)
        suffix[1:, s] = cand.min(axis=1)
    return suffix


def _walk(
    prob: _Problem, lo: _IntArray, hi: _IntArray, suffix: _FloatArray, cap: float
) -> tuple[int, ...]:
    """Phase 3: the lexicographically smallest boundaries among the min-sum plans."""
    num_layers = suffix.shape[0] - 1
    bounds, s = [0], 0
    for r in range(num_layers, 0, -1):
        row = _cross_row(prob, s, int(lo[s]), int(hi[s]))
        rest = suffix[r - 1, lo[s] : hi[s] + 1]
        ok = (row <= cap) & (row + rest == suffix[r, s])
        s = int(lo[s]) + int(np.argmax(ok))
        bounds.append(s)
    return tuple(bounds[:-1])


def _plan(
    prob: _Problem, boundaries: tuple[int, ...], limit: float, target: int, applied: int
) -> LayerPlan:
    """Costs of a given partition, computed from the values directly (not from the DP)."""
    num_layers = len(boundaries)

    def layer(i: int) -> int:
        return bisect.bisect_right(boundaries, i) - 1

    cross = [0] * num_layers
    cut_diff = [0] * (num_layers + 1)
    for src, users, nbytes in prob.values:
        home = layer(src)
        for receiver in {layer(c) for c in users} - {home}:
            cross[receiver] += nbytes
        cut_diff[home + 1] += nbytes
        cut_diff[layer(users[-1]) + 1] -= nbytes
    cut = [int(x) for x in np.cumsum(cut_diff)[1:num_layers]]
    ends = (*boundaries[1:], prob.num_ops)
    fp, hp = prob.flops_prefix, prob.heavy_prefix
    return LayerPlan(
        boundaries=boundaries,
        num_ops=prob.num_ops,
        layer_flops=tuple(float(fp[e] - fp[s]) for s, e in zip(boundaries, ends, strict=True)),
        layer_heavy=tuple(int(hp[e] - hp[s]) for s, e in zip(boundaries, ends, strict=True)),
        cross_layer_bytes=tuple(cross),
        cut_bytes=tuple(cut),
        objective=max(cross),
        total_cross_bytes=sum(cross),
        flops_limit=limit,
        min_heavy_target=target,
        min_heavy_applied=applied,
    )


def _solve(prob: _Problem, num_layers: int, eps: float, min_heavy: int) -> LayerPlan | None:
    """The optimal plan, or None when no partition meets the FLOPs bound."""
    limit = _flops_limit(prob, num_layers, eps)
    target = min(min_heavy, prob.num_heavy // num_layers)
    for k in range(target, -1, -1):
        lo, hi = _end_ranges(prob, limit, k)
        if not _feasible(lo, hi, num_layers):
            continue
        cap = _min_max(prob, lo, hi, num_layers)
        suffix = _min_sum_suffix(prob, lo, hi, num_layers, cap)
        return _plan(prob, _walk(prob, lo, hi, suffix, cap), limit, target, k)
    return None


def _least_max_flops(prob: _Problem, num_layers: int) -> float:
    """About the least achievable max layer FLOPs over partitions into num_layers layers."""
    fp, n = prob.flops_prefix, prob.num_ops

    def layers_needed(bound: float) -> int:
        count, s = 0, 0
        while s < n:
            s = max(s + 1, int(np.searchsorted(fp, fp[s] + bound, side="right")) - 1)
            count += 1
        return count

    low, high = float(np.max(np.diff(fp))), prob.total_flops
    for _ in range(100):
        mid = (low + high) / 2
        if mid <= low or mid >= high:
            break
        low, high = (low, mid) if layers_needed(mid) <= num_layers else (mid, high)
    return high


def _flops_infeasible_message(prob: _Problem, num_layers: int, eps: float) -> str:
    limit = _flops_limit(prob, num_layers, eps)
    flops = np.diff(prob.flops_prefix)
    worst = int(np.argmax(flops))
    need = _least_max_flops(prob, num_layers)
    needed_eps = need * num_layers / prob.total_flops - 1.0
    message = (
        f"no partition of {prob.num_ops} ops into {num_layers} layers keeps every layer's "
        f"FLOPs <= (1 + eps) * total / L = {limit:.6g} (eps={eps}, total={prob.total_flops:.6g}), "
        f"even with the heavy-op floor relaxed to 0; the best achievable max layer FLOPs is "
        f"about {need:.6g}, which needs eps >= {needed_eps:.4g}"
    )
    if flops[worst] > limit:
        message += f" (op {worst} alone has {flops[worst]:.6g} FLOPs)"
    return message


def _check_options(prob: _Problem, num_layers: int, eps: float, min_heavy: int) -> None:
    as_int(num_layers, "num_layers")
    as_int(min_heavy, "min_heavy")
    if num_layers < 1:
        raise LayerClusteringError(f"num_layers must be >= 1, got {num_layers}")
    if num_layers > prob.num_ops:
        raise LayerClusteringError(
            f"cannot form {num_layers} non-empty layers from {prob.num_ops} ops "
            f"(fewer ops than layers)"
        )
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps >= 0):
        raise LayerClusteringError(f"eps must be a finite number >= 0, got {eps!r}")
    if min_heavy < 0:
        raise LayerClusteringError(f"min_heavy must be >= 0, got {min_heavy}")
    if prob.total_value_bytes * num_layers >= _EXACT_LIMIT:
        raise LayerClusteringError(
            f"byte sums up to {prob.total_value_bytes} x {num_layers} layers exceed 2**53 and "
            f"would not be exact; give sizes in a coarser unit"
        )


def cluster_layers(
    ops: Sequence[ClusterOp],
    edges: Sequence[Edge],
    num_layers: int,
    eps: float = ALPA_EPS,
    min_heavy: int = ALPA_MIN_HEAVY,
) -> LayerPlan:
    """Partition the forward ops into `num_layers` consecutive layers (module docstring).

    Raises LayerClusteringError on malformed input, fewer ops than layers, or when no
    partition keeps every layer within the FLOPs bound (the heavy-op floor is relaxed
    first, and the plan reports it).
    """
    prob = _prepare(ops, edges)
    _check_options(prob, num_layers, eps, min_heavy)
    plan = _solve(prob, num_layers, eps, min_heavy)
    if plan is None:
        raise LayerClusteringError(_flops_infeasible_message(prob, num_layers, eps))
    return plan


def auto_num_layers(
    ops: Sequence[ClusterOp],
    edges: Sequence[Edge],
    *,
    eps: float = ALPA_EPS,
    min_heavy: int = ALPA_MIN_HEAVY,
    layer_eps: float = 0.0,
    max_layers: int | None = None,
    exhaustive: bool = False,
) -> int:
    """Choose L as Alpa's `search_layer_num` does: the largest L whose optimal max crossing
    stays within (1 + layer_eps) of the one at L = 2.

    Candidates are 2..L_max, L_max = H // min_heavy (every layer can get min_heavy heavy
    ops; Alpa searches below int(H / 3) + 1), capped by the op count and `max_layers`;
    min_heavy = 0 allows up to n. L = 1 is only the fallback: nothing crosses with one
    layer, so its objective (0) says nothing. A candidate is acceptable when it has a plan
    that needs no relaxing of the heavy-op floor and whose objective is within the bound.
    Returns 1 when L = 2 is not acceptable.

    Alpa binary-searches (O(log L_max) solves), which assumes that acceptability does not
    come back once lost as L grows. It can: 8 equal blocks fit 5 or 6 layers at block
    boundaries within eps = 0.5, 7 do not (some layer gets 2 blocks > 1.5 x 8/7), 8 do.
    `exhaustive=True` scans L_max down to 2 and returns the first acceptable L (up to
    L_max - 1 solves, each O(L n^2) at worst).
    """
    prob = _prepare(ops, edges)
    _check_options(prob, 1, eps, min_heavy)
    if not (math.isfinite(layer_eps) and layer_eps >= 0):
        raise LayerClusteringError(f"layer_eps must be a finite number >= 0, got {layer_eps!r}")
    if max_layers is not None and as_int(max_layers, "max_layers") < 1:
        raise LayerClusteringError(f"max_layers must be >= 1, got {max_layers}")
    top = prob.num_ops if min_heavy == 0 else prob.num_heavy // min_heavy
    top = min(top, prob.num_ops, prob.num_ops if max_layers is None else max_layers)

    def objective(num_layers: int) -> float | None:
        _check_options(prob, num_layers, eps, min_heavy)
        plan = _solve(prob, num_layers, eps, min_heavy)
        return None if plan is None or plan.relaxed_heavy else float(plan.objective)

    reference = objective(2) if top >= 2 else None
    if reference is None:
        return 1

    def acceptable(num_layers: int) -> bool:
        value = objective(num_layers)
        return value is not None and value <= reference * (1.0 + layer_eps)

    if exhaustive:
        return next(num_layers for num_layers in range(top, 1, -1) if acceptable(num_layers))
    good, bad = 2, top + 1
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if acceptable(mid) else (good, mid)
    return good
