"""Stage construction: Alpa's inter-operator DP over (layer range, submesh, logical mesh).

Pure and MLIR-free (Alpa, OSDI'22, section 5.2; our plans beside Alpa's: docs/plans.md). The pass extracts the layers
and a cost model from the IR, calls `plan_stages`, and writes the plan back.

Formulation
-----------
Layers 0..L-1 (from layer construction) run as a pipeline of S stages on a cluster of
H hosts x P devices (D = H*P). Stage i takes a contiguous layer range, a submesh shape
(h, p) from a candidate list and a logical mesh shape (dp, mp) with dp*mp = h*p::

    layers   | 0 1 2 | 3 4 | 5 6 7 |        submeshes  (1,2) + (1,2) + (1,4) = 8 = 2x4
    submesh  | (1,2) |(1,2)| (1,4) |        latency    t_0     t_1     t_2
    stage s  |   3   |  2  |   1   |  <- stages from here to the end, this one included

    T* = min over plans of  sum_i t_i + (B - 1) * max_i t_i      (B microbatches)

subject to: the ranges cover 0..L-1 once and in order; the submesh device counts sum to
exactly D; every stage is feasible (its cost is not None) and fits in device memory under
the schedule: a stage with s stages from it to the end (itself included) stashes
`in_flight(schedule, s, B)` microbatches of activations (`dialect_utils.schedules`, read
off the same task order the runtime's clock tables run), so it is legal iff
``param + in_flight * activation + temp <= device_memory_bytes``. 1F1B stashes
`min(s, B)` (Alpa's rule is `s`; with B >= s the two agree, and with B < s no more than B
microbatches exist to stash); GPipe stashes all B on every stage.

Tiling assumption: only the device-count sum is enforced (Alpa's condition). For the
power-of-two space -- (1, 1), (1, 2), ..., (1, P) and (k, P) for k = 2..H, P a power of
two -- any multiset whose sizes sum to D tiles the cluster (Alpa, Theorem 1). In the `all`
space with P not a power of two, a plan may need a submesh that straddles hosts; the
placement step must check that.

Algorithm (Alpa): for a ceiling t_max, F(s, k, d) is the least total latency of slicing
layers k..L-1 into s stages on d devices with every stage latency <= t_max:

    F(0, L, 0) = 0
    F(s, k, d) = min over k <= j < L, submesh n, logical m with t(k..j, n, m) <= t_max
                 and (k..j, n, m) legal with s stages from here:
                 t(k..j, n, m) + F(s - 1, j + 1, d - |n|)

and the answer for t_max is the argmin over s of F(s, 0, D), whose objective is
F + (B - 1) * m with m <= t_max its own max stage latency. An optimal plan is the answer at
t_max = its max stage latency, so t_max ranges over the distinct stage latencies; the
order (`SearchOrder`) decides how many of them need a DP:

- DESCENDING (default): from no ceiling down. The answer at t_max (max stage latency m)
  is also the answer at every ceiling in [m, t_max] -- it stays feasible and a lower
  ceiling only removes plans -- so the next ceiling is the largest one below m. Stop at
  the first infeasible ceiling (feasibility is monotone), or when nothing below can win:
  as the ceiling falls totals only grow, so a plan there costs at least
  F(t_max) + (B - 1) * t_low, where t_low = max over layers of the least latency of a
  stage holding that layer (no plan has a smaller max stage latency).
- ASCENDING (Alpa's): every ceiling from the lowest, until a plan whose max stage latency
  is >= t_max must cost more than the best so far: max(F_inf, t_max) + (B - 1) * t_max
  > best (F_inf: the least total latency, from the unconstrained DP, run first). This
  bound is >= B * t_max, Alpa's (which prunes on >=; strict here, for the tie-break).

On the 32-layer 8x8 synthetic case of the tests, descending ran 22 DPs (24 with a memory
limit) where ascending ran 2654 (2900): 0.06 s against 6.5 s of DP (0.4 s against 32 s).
Further refinements, all exact:

- Per (range, submesh, stages-from-here) only the fastest legal logical mesh can be in an
  optimal plan, so the DP and the ceilings use that one only.
- Memory legality depends on s only through the in-flight count (nondecreasing in s,
  constant from s = B on), and usually only up to a small s:
  stage counts at or above `cap` (the first s beyond which no legality changes) share one
  DP state, whose predecessor is the better of states cap-1 and cap. With no memory limit
  cap = 1 and the DP is over (k, d) only.
- B == 1 needs only the unconstrained DP (the objective is the total latency).
- The cost function is called lazily and once per argument tuple (`CostCache`), and only
  for (range, submesh) pairs that occur in some device-covering plan: e.g. the
  whole-cluster submesh is costed for the whole layer range only.

Tie-breaks (deterministic): among plans of equal objective, fewer stages first, then the
lexicographically smallest sequence of (layer_end, submesh index, logical index) over
the stages, first stage first, where the submesh index is the position in the candidate
list (`submesh_shapes` order) and the logical index the position in `logical_shapes`.
The rule is exact whenever latency sums are exact in floating point (e.g. integer or
dyadic latencies); otherwise rounding can decide between plans that tie in real
arithmetic. The objective itself is computed exactly: total latency is summed last stage
first (t_0 + (t_1 + (... + t_{S-1}))), in the DP and in `pipeline_objective` alike.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from alpa_mlir.dialect_utils.schedules import ScheduleKind, in_flight

LogicalShape = tuple[int, int]
"""(data parallel, model parallel) degrees of a logical mesh."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class StageDPError(ValueError):
    """No stage plan exists (or a manual plan is infeasible) for the inputs given."""


class SubmeshSpace(enum.Enum):
    """Which physical submesh shapes the DP may assign to a stage."""

    POWER_OF_TWO = "power-of-two"
    """(1, 1), (1, 2), (1, 4), ..., (1, P) and (k, P) for k = 2..H (Alpa's default)."""
    ALL = "all"
    """(1, p) for every p dividing P, and (k, P) for k = 2..H."""


class SearchOrder(enum.Enum):
    """The order in which `plan_stages` tries max-stage-latency ceilings (same optimum)."""

    DESCENDING = "descending"
    """From no ceiling down, jumping below each answer's own max stage latency."""
    ASCENDING = "ascending"
    """Alpa's: from the lowest ceiling up, each one, until the lower bound prunes."""


@dataclass(frozen=True)
class Cluster:
    """`hosts` hosts of `devices_per_host` devices each."""

    hosts: int
    devices_per_host: int

    def __post_init__(self) -> None:
        if self.hosts < 1 or self.devices_per_host < 1:
            raise ValueError(
                f"Cluster needs hosts >= 1 and devices_per_host >= 1, got "
                f"hosts={self.hosts}, devices_per_host={self.devices_per_host}"
            )

    @property
    def num_devices(self) -> int:
        return self.hosts * self.devices_per_host

    def __str__(self) -> str:
        return f"{self.hosts}x{self.devices_per_host}"


@dataclass(frozen=True, order=True)
class SubmeshShape:
    """A physical submesh: `devices` devices on each of `hosts` hosts."""

    hosts: int
    devices: int

    def __post_init__(self) -> None:
        if self.hosts < 1 or self.devices < 1:
            raise ValueError(
                f"SubmeshShape needs hosts >= 1 and devices >= 1, got "
                f"hosts={self.hosts}, devices={self.devices}"
            )

    @property
    def num_devices(self) -> int:
        return self.hosts * self.devices

    def __str__(self) -> str:
        return f"({self.hosts}, {self.devices})"


@dataclass(frozen=True)
class StageCost:
    """The cost of one stage (per microbatch): latency in seconds, and memory per device:
    parameters (with optimizer state), activations stashed per in-flight microbatch, and
    peak temporaries."""

    latency: float
    param_bytes: float = 0.0
    activation_bytes: float = 0.0
    temp_bytes: float = 0.0

    def __post_init__(self) -> None:
        for name in ("latency", "param_bytes", "activation_bytes", "temp_bytes"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"StageCost.{name} must be finite and >= 0, got {value!r}")

    def memory_bytes(self, stashed_microbatches: int) -> float:
        """Peak bytes per device with `stashed_microbatches` microbatches in flight."""
        return self.param_bytes + stashed_microbatches * self.activation_bytes + self.temp_bytes


CostKey = tuple[int, int, SubmeshShape, LogicalShape]
"""(first layer, last layer (inclusive), submesh, logical mesh)."""
CostFn = Callable[[int, int, SubmeshShape, LogicalShape], StageCost | None]
"""cost(i, j, submesh, logical) for layers i..j inclusive; None = infeasible."""
CostTable = Mapping[CostKey, StageCost | None]
"""A precomputed cost table; a missing key is infeasible (None)."""


class CostCache:
    """Memoizes a stage cost function (or table): each argument tuple is costed once.

    Pass one instance to several `plan_stages`/`plan_manual` calls (e.g. for several
    microbatch counts) to share the costs; `calls` counts evaluations of the source and
    `hits` answers served from the cache. The key is the argument tuple; a cost model
    that recognizes equal layer contents (repeated transformer blocks) under different
    indices should also key its own work by content.
    """

    def __init__(self, source: CostFn | CostTable) -> None:
        self._source = source
        self._costs: dict[CostKey, StageCost | None] = {}
        self.calls = 0
        self.hits = 0

    def __call__(
        self, first: int, last: int, submesh: SubmeshShape, logical: LogicalShape
    ) -> StageCost | None:
        key: CostKey = (first, last, submesh, logical)
        if key in self._costs:
            self.hits += 1
            return self._costs[key]
        self.calls += 1
        source = self._source
        result = source.get(key) if isinstance(source, Mapping) else source(*key)
        if result is not None and not isinstance(result, StageCost):
            raise TypeError(
                f"stage cost for layers {first}..{last} on submesh {submesh} logical "
                f"{logical}: expected StageCost or None, got {type(result).__name__}"
            )
        self._costs[key] = result
        return result

    def __len__(self) -> int:
        return len(self._costs)


@dataclass(frozen=True)
class Stage:
    """Layers `layer_start`..`layer_end` (inclusive) on `submesh` as `logical_shape`."""

    layer_start: int
    layer_end: int
    submesh: SubmeshShape
    logical_shape: LogicalShape
    latency: float


@dataclass(frozen=True)
class StagePlan:
    """Stages in pipeline order; `total_latency` = sum of stage latencies, `t_max` = the
    largest, `objective` = total_latency + (B - 1) * t_max."""

    stages: tuple[Stage, ...]
    total_latency: float
    t_max: float
    objective: float

    @property
    def num_stages(self) -> int:
        return len(self.stages)


@dataclass(frozen=True)
class StageDPStats:
    """What `plan_stages` did."""

    cost_calls: int
    """Evaluations of the cost source during this call."""
    cache_hits: int
    """Costs served by the cache during this call (a shared `CostCache`)."""
    options_costed: int
    """(range, submesh, logical) tuples looked up; the rest cannot occur in a plan."""
    cap: int
    """Stage counts >= cap share one DP state (memory legality no longer changes)."""
    t_max_candidates: int
    """Distinct stage latencies usable as a ceiling."""
    t_max_tried: int
    """Ceilings the DP ran for, the unconstrained one included."""
    t_max_dominated: int
    """Ceilings skipped because a higher one's answer is also theirs."""
    t_max_infeasible: int
    """Ceilings below an infeasible one, skipped (that one counts as tried)."""
    t_max_pruned: int
    """Ceilings skipped by the lower bound."""
    cost_seconds: float
    """Wall time spent looking costs up (the cost function included)."""
    dp_seconds: float
    """Wall time of the DP runs and the search over ceilings."""


@dataclass(frozen=True)
class StageDPResult:
    """The optimal plan and how it was found."""

    plan: StagePlan
    stats: StageDPStats


def submesh_shapes(
    cluster: Cluster, mode: SubmeshSpace = SubmeshSpace.POWER_OF_TWO
) -> tuple[SubmeshShape, ...]:
    """Alpa's candidate submeshes, by device count: single-host slices, then whole hosts."""
    per_host = cluster.devices_per_host
    if mode is SubmeshSpace.POWER_OF_TWO:
        if per_host & (per_host - 1):
            raise ValueError(
                f"submesh space {mode.value!r} needs devices_per_host to be a power of two, "
                f"got cluster {cluster}; use {SubmeshSpace.ALL.value!r}"
            )
        widths = [1 << e for e in range(per_host.bit_length())]
    elif mode is SubmeshSpace.ALL:
        widths = [p for p in range(1, per_host + 1) if per_host % p == 0]
    else:  # pragma: no cover - exhaustive over the enum
        raise ValueError(f"unknown submesh space {mode!r}")
    shapes = [SubmeshShape(1, p) for p in widths]
    shapes += [SubmeshShape(k, per_host) for k in range(2, cluster.hosts + 1)]
    return tuple(shapes)


def logical_shapes(submesh: SubmeshShape) -> tuple[LogicalShape, ...]:
    """Every (dp, mp) with dp * mp = the submesh's devices, model parallelism ascending."""
    n = submesh.num_devices
    return tuple((n // mp, mp) for mp in range(1, n + 1) if n % mp == 0)


@dataclass(frozen=True)
class PipelineTotals:
    """Sum and max of the stage latencies, and the pipeline objective."""

    total_latency: float
    t_max: float
    objective: float


def pipeline_objective(latencies: Sequence[float], num_microbatches: int) -> PipelineTotals:
    """Total latency (summed last stage first), max stage latency and the objective
    total + (B - 1) * t_max of a pipeline with these stage latencies."""
    if not latencies:
        raise ValueError("pipeline_objective needs at least one stage latency")
    total = 0.0
    for t in reversed(latencies):
        total = t + total
    t_max = max(latencies)
    return PipelineTotals(total, t_max, total + (num_microbatches - 1) * t_max)


# ---------------------------------------------------------------------------------------
# Automatic plan.


@dataclass(frozen=True)
class _Tables:
    """The costed search space. `latency[c - 1, i, j, m]` is the least latency of layers
    i..j on submesh m over logical meshes legal in DP state c (inf: none), and
    `logical[...]` that logical mesh's index."""

    latency: FloatArray
    logical: IntArray
    sizes: IntArray
    cap: int
    num_devices: int


@dataclass(frozen=True)
class _Found:
    """A DP answer: (first layer, last layer, submesh index, logical index) and the
    latency of each stage, and their total as the DP summed it."""

    total: float
    stages: tuple[tuple[int, int, int, int], ...]
    latencies: tuple[float, ...]


def plan_stages(
    num_layers: int,
    cluster: Cluster,
    cost: CostFn | CostTable | CostCache,
    num_microbatches: int,
    *,
    submesh_space: SubmeshSpace = SubmeshSpace.POWER_OF_TWO,
    submeshes: Sequence[SubmeshShape] | None = None,
    device_memory_bytes: float | None = None,
    order: SearchOrder = SearchOrder.DESCENDING,
    schedule: ScheduleKind = ScheduleKind.ONE_F_ONE_B,
) -> StageDPResult:
    """The optimal pipeline plan for `num_layers` layers on `cluster` (see the module
    docstring), with the memory rule of `schedule`. `submeshes` overrides the candidates
    of `submesh_space`. Raises
    `StageDPError` when no plan exists, `ValueError` on malformed inputs."""
    _check_counts(num_layers, num_microbatches)
    candidates = (
        submesh_shapes(cluster, submesh_space) if submeshes is None else tuple(submeshes)
    )
    _check_submeshes(candidates, cluster)
    cache = cost if isinstance(cost, CostCache) else CostCache(cost)
    calls0, hits0 = cache.calls, cache.hits

    started = time.perf_counter()
    tables, census = _cost_tables(
        num_layers, cluster, candidates, cache, num_microbatches, device_memory_bytes, schedule
    )
    cost_seconds = time.perf_counter() - started

    started = time.perf_counter()
    values = tables.latency[np.isfinite(tables.latency)]
    ceilings = np.unique(values)
    found = _ceiling_dp(tables, math.inf)
    if found is None:
        raise StageDPError(
            _no_plan_message(
                num_layers, cluster, candidates, num_microbatches, device_memory_bytes, census,
                schedule,
            )
        )
    best, counts = _search_ceilings(tables, ceilings, num_microbatches, found, order)
    dp_seconds = time.perf_counter() - started

    plan = _to_plan(best.found, candidates, num_microbatches)
    stats = StageDPStats(
        cost_calls=cache.calls - calls0,
        cache_hits=cache.hits - hits0,
        options_costed=census.looked_up,
        cap=tables.cap,
        t_max_candidates=len(ceilings),
        t_max_tried=counts.tried,
        t_max_dominated=counts.dominated,
        t_max_infeasible=counts.infeasible,
        t_max_pruned=counts.pruned,
        cost_seconds=cost_seconds,
        dp_seconds=dp_seconds,
    )
    return StageDPResult(plan, stats)


@dataclass(frozen=True)
class _Best:
    """A DP answer with its tie-break key (objective, stage count, stage sequence)."""

    found: _Found
    key: tuple[float, int, tuple[tuple[int, int, int], ...]]

    @staticmethod
    def of(found: _Found, num_microbatches: int) -> _Best:
        objective = found.total + (num_microbatches - 1) * max(found.latencies)
        order = tuple((j, m, lg) for _, j, m, lg in found.stages)
        return _Best(found, (objective, len(found.stages), order))

    def better(self, other: _Best) -> _Best:
        return other if other.key < self.key else self


@dataclass(frozen=True)
class _Census:
    """What the cost lookups returned: tuples looked up, None answers, over memory."""

    looked_up: int
    infeasible: int
    over_memory: int


@dataclass(frozen=True)
class _SearchCounts:
    tried: int
    dominated: int
    infeasible: int
    pruned: int


def _search_ceilings(
    tables: _Tables,
    ceilings: FloatArray,
    num_microbatches: int,
    unconstrained: _Found,
    order: SearchOrder,
) -> tuple[_Best, _SearchCounts]:
    """Run the ceiling DP over `ceilings` (ascending, distinct; the last one is no
    ceiling at all, whose answer is `unconstrained`) and keep the best plan."""
    best = _Best.of(unconstrained, num_microbatches)
    last = len(ceilings) - 1
    if num_microbatches == 1 or last == 0:
        # B == 1: the objective is the total latency, which the unconstrained DP minimizes.
        return best, _SearchCounts(tried=1, dominated=0, infeasible=0, pruned=last)
    if order is SearchOrder.ASCENDING:
        return _search_ascending(tables, ceilings, num_microbatches, unconstrained, best)
    # Every plan has a stage holding layer l, so its max stage latency is >= low.
    least = tables.latency.min(axis=(0, 3))
    low = max(
        float(least[: layer + 1, layer:].min()) for layer in range(least.shape[0])
    )
    tried, dominated = 1, 0
    index, latest = last, unconstrained
    while True:
        # Ceilings in [max latency of the answer at ceiling t, t] share that answer.
        below = int(np.searchsorted(ceilings, max(latest.latencies), side="left")) - 1
        dominated += index - below - 1
        index = below
        if index < 0:
            return best, _SearchCounts(tried, dominated, 0, 0)
        # Below, totals only grow: a plan costs >= latest.total + (B - 1) * low.
        if latest.total + (num_microbatches - 1) * low > best.key[0]:
            return best, _SearchCounts(tried, dominated, 0, index + 1)
        found = _ceiling_dp(tables, float(ceilings[index]))
        tried += 1
        if found is None:  # and so are all lower ceilings
            return best, _SearchCounts(tried, dominated, index, 0)
        best = best.better(_Best.of(found, num_microbatches))
        latest = found


def _search_ascending(
    tables: _Tables,
    ceilings: FloatArray,
    num_microbatches: int,
    unconstrained: _Found,
    best: _Best,
) -> tuple[_Best, _SearchCounts]:
    """Alpa's order: every ceiling from the lowest, until a plan whose max stage
    latency is >= t must cost more than the best: max(F_inf, t) + (B - 1) * t > best."""
    last = len(ceilings) - 1
    tried = 1
    for index in range(last):
        ceiling = float(ceilings[index])
        bound = max(unconstrained.total, ceiling) + (num_microbatches - 1) * ceiling
        if bound > best.key[0]:
            return best, _SearchCounts(tried, 0, 0, last - index)
        found = _ceiling_dp(tables, ceiling)
        tried += 1
        if found is not None:
            best = best.better(_Best.of(found, num_microbatches))
    return best, _SearchCounts(tried, 0, 0, 0)


def _check_counts(num_layers: int, num_microbatches: int) -> None:
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if num_microbatches < 1:
        raise ValueError(f"num_microbatches must be >= 1, got {num_microbatches}")


def _check_submesh(submesh: SubmeshShape, cluster: Cluster, what: str) -> None:
    if submesh.hosts > cluster.hosts or submesh.devices > cluster.devices_per_host:
        raise ValueError(
            f"{what}: submesh {submesh} does not fit cluster {cluster} "
            f"(at most {cluster.hosts} hosts of {cluster.devices_per_host} devices)"
        )


def _check_submeshes(candidates: Sequence[SubmeshShape], cluster: Cluster) -> None:
    if not candidates:
        raise ValueError("plan_stages needs at least one candidate submesh shape")
    if len(set(candidates)) != len(candidates):
        raise ValueError(f"candidate submeshes repeat a shape: {[str(s) for s in candidates]}")
    for submesh in candidates:
        _check_submesh(submesh, cluster, "candidate submeshes")


def _reachable(sizes: Sequence[int], num_devices: int, max_stages: int) -> list[int]:
    """reach[c]: bitmask of the device counts <= num_devices that c stages can use."""
    mask = (1 << (num_devices + 1)) - 1
    reach = [1]
    for _ in range(max_stages):
        previous = reach[-1]
        step = 0
        for n in sizes:
            step |= previous << n
        reach.append(step & mask)
    return reach


def _usable(num_layers: int, num_devices: int, sizes: Sequence[int]) -> BoolArray:
    """usable[i, j, m]: layers i..j on submesh m occur in some device-covering plan."""
    max_stages = min(num_layers, num_devices)
    reach = _reachable(sizes, num_devices, max_stages)
    # union[lo][hi]: counts reachable with lo..hi stages (lo in 0..2: the other stages
    # before and after, each side non-empty iff it has layers).
    union: list[list[int]] = []
    for lo in range(3):
        acc, row = 0, []
        for c in range(max_stages + 1):
            if c >= lo:
                acc |= reach[c]
            row.append(acc)
        union.append(row)
    usable = np.zeros((num_layers, num_layers, len(sizes)), dtype=np.bool_)
    for i in range(num_layers):
        for j in range(i, num_layers):
            after = num_layers - 1 - j
            lo = (i > 0) + (after > 0)
            hi = min(i + after, max_stages)
            if lo > hi:
                continue
            others = union[lo][hi]
            for m, n in enumerate(sizes):
                need = num_devices - n
                usable[i, j, m] = need >= 0 and bool((others >> need) & 1)
    return usable


def _cost_tables(
    num_layers: int,
    cluster: Cluster,
    candidates: Sequence[SubmeshShape],
    cache: CostCache,
    num_microbatches: int,
    device_memory_bytes: float | None,
    schedule: ScheduleKind,
) -> tuple[_Tables, _Census]:
    num_devices = cluster.num_devices
    sizes = [s.num_devices for s in candidates]
    shapes = [logical_shapes(s) for s in candidates]
    usable = _usable(num_layers, num_devices, sizes)
    index: list[tuple[int, int, int, int]] = []
    costs: list[StageCost] = []
    looked_up = infeasible = 0
    for i, j, m in zip(*np.nonzero(usable), strict=True):
        for lg, shape in enumerate(shapes[m]):
            looked_up += 1
            found = cache(int(i), int(j), candidates[m], shape)
            if found is None:
                infeasible += 1
                continue
            index.append((int(i), int(j), int(m), lg))
            costs.append(found)

    max_stash = max(1, min(num_microbatches, num_layers, num_devices))
    stash = np.array([in_flight(schedule, s, num_microbatches) for s in range(1, max_stash + 1)],
                     dtype=np.float64)
    if device_memory_bytes is None:
        legal = np.ones((len(costs), max_stash), dtype=np.bool_)
    else:
        param = np.array([c.param_bytes for c in costs], dtype=np.float64)[:, None]
        act = np.array([c.activation_bytes for c in costs], dtype=np.float64)[:, None]
        temp = np.array([c.temp_bytes for c in costs], dtype=np.float64)[:, None]
        legal = param + stash[None, :] * act + temp <= device_memory_bytes
    # Legality stops changing at `cap`: legal at stash n but not at the largest means n < cap.
    changing = np.nonzero((legal & ~legal[:, -1:]).any(axis=0))[0]
    cap = int(changing[-1]) + 2 if len(changing) else 1
    over_memory = int((~legal[:, 0]).sum()) if len(costs) else 0

    # Per state, the fastest legal logical mesh of each (i, j, m); ties: the first.
    shape = (cap, num_layers, num_layers, len(candidates))
    best_latency = np.full(shape, np.inf, dtype=np.float64)
    best_logical = np.zeros(shape, dtype=np.int64)
    if costs:
        i, j, m, lg = np.array(index, dtype=np.int64).T
        group = (i * num_layers + j) * len(candidates) + m
        latency = np.array([c.latency for c in costs], dtype=np.float64)
        for c in range(cap):
            state_latency = np.where(legal[:, c], latency, np.inf)
            ranked = np.lexsort((lg, state_latency, group))
            _, first = np.unique(group[ranked], return_index=True)
            pick = ranked[first]
            best_latency[c, i[pick], j[pick], m[pick]] = state_latency[pick]
            best_logical[c, i[pick], j[pick], m[pick]] = lg[pick]
    tables = _Tables(
        latency=best_latency,
        logical=best_logical,
        sizes=np.array(sizes, dtype=np.int64),
        cap=cap,
        num_devices=num_devices,
    )
    return tables, _Census(looked_up, infeasible, over_memory)


def _ceiling_dp(tables: _Tables, ceiling: float) -> _Found | None:
    """The least (total latency, stage count, stage sequence) plan with every stage
    latency <= ceiling, or None.

    States c = 1..cap: c stages from here to the end (c = cap: cap or more). F[c, k, d]
    covers layers k.. with d devices; its predecessor table is F[c - 1], or for c = cap
    the better of F[cap - 1] and F[cap]. Layers go last to first so that, at layer k,
    every F[., j + 1, .] it needs is final; g[c - 1, j, m, d] holds that predecessor
    shifted by the size of submesh m, i.e. the value of the rest after layers k..j on m.
    """
    cap, num_devices = tables.cap, tables.num_devices
    num_layers, num_submeshes = tables.latency.shape[1], tables.latency.shape[3]
    width = num_devices + 1
    latency = tables.latency
    if math.isfinite(ceiling):
        latency = np.where(latency <= ceiling, latency, np.inf)
    total = np.full((cap + 1, num_layers + 1, width), np.inf)
    count = np.zeros((cap + 1, num_layers + 1, width), dtype=np.int64)
    choice = np.full((cap + 1, num_layers, width), -1, dtype=np.int64)
    from_cap = np.zeros((num_layers + 1, width), dtype=np.bool_)
    total[0, num_layers, 0] = 0.0
    g_total = np.full((cap, num_layers, num_submeshes, width), np.inf)
    g_count = np.zeros((cap, num_layers, num_submeshes, width), dtype=np.int64)
    big = np.iinfo(np.int64).max

    def publish(row: int) -> None:
        """Shift row `row` of each state's predecessor table into g[:, row - 1]."""
        rest_total = total[0:cap, row].copy()
        rest_count = count[0:cap, row].copy()
        low_t, low_n = total[cap - 1, row], count[cap - 1, row]
        high_t, high_n = total[cap, row], count[cap, row]
        take_high = (high_t < low_t) | ((high_t == low_t) & (high_n < low_n))
        from_cap[row] = take_high
        rest_total[cap - 1] = np.where(take_high, high_t, low_t)
        rest_count[cap - 1] = np.where(take_high, high_n, low_n)
        for m, n in enumerate(tables.sizes):
            g_total[:, row - 1, m, n:] = rest_total[:, : width - n]
            g_count[:, row - 1, m, n:] = rest_count[:, : width - n]

    for k in range(num_layers - 1, -1, -1):
        publish(k + 1)
        states = min(cap, num_layers - k)  # at most one stage per layer
        options = latency[:states, k, k:, :].reshape(states, -1)  # (state, (j - k, m))
        columns = np.nonzero(np.isfinite(options).any(axis=0))[0]
        if not len(columns):
            continue
        rest = g_total[:states, k:].reshape(states, -1, width)[:, columns]
        cand = options[:, columns, None] + rest
        best = cand.min(axis=1)
        reached = np.isfinite(best)
        tie = cand == best[:, None, :]
        rest_count = g_count[:states, k:].reshape(states, -1, width)[:, columns]
        cand_count = np.where(tie, rest_count + 1, big)
        best_count = cand_count.min(axis=1)
        pick = (tie & (cand_count == best_count[:, None, :])).argmax(axis=1)
        total[1 : states + 1, k] = np.where(reached, best, np.inf)
        count[1 : states + 1, k] = np.where(reached, best_count, 0)
        choice[1 : states + 1, k] = np.where(reached, columns[pick] + k * num_submeshes, -1)

    finals = [(float(total[c, 0, num_devices]), int(count[c, 0, num_devices]), c)
              for c in range(1, cap + 1)]
    best_total, _, state = min(finals)
    if not math.isfinite(best_total):
        return None
    stages: list[tuple[int, int, int, int]] = []
    latencies: list[float] = []
    layer, devices = 0, num_devices
    while layer < num_layers:
        j, m = divmod(int(choice[state, layer, devices]), num_submeshes)
        stages.append((layer, j, m, int(tables.logical[state - 1, layer, j, m])))
        latencies.append(float(tables.latency[state - 1, layer, j, m]))
        layer, devices = j + 1, devices - int(tables.sizes[m])
        if state < cap:
            state -= 1
        else:
            state = cap if from_cap[layer, devices] else cap - 1
    if state != 0 or devices != 0:  # pragma: no cover - DP invariant
        raise AssertionError(f"stage DP reconstruction ended in state {state}, {devices} devices")
    return _Found(best_total, tuple(stages), tuple(latencies))


def _to_plan(
    found: _Found, candidates: Sequence[SubmeshShape], num_microbatches: int
) -> StagePlan:
    stages = tuple(
        Stage(i, j, candidates[m], logical_shapes(candidates[m])[lg], lat)
        for (i, j, m, lg), lat in zip(found.stages, found.latencies, strict=True)
    )
    totals = pipeline_objective(found.latencies, num_microbatches)
    return StagePlan(stages, totals.total_latency, totals.t_max, totals.objective)


def _no_plan_message(
    num_layers: int,
    cluster: Cluster,
    candidates: Sequence[SubmeshShape],
    num_microbatches: int,
    device_memory_bytes: float | None,
    census: _Census,
    schedule: ScheduleKind,
) -> str:
    num_devices = cluster.num_devices
    sizes = [s.num_devices for s in candidates]
    received = (
        f"no stage plan for {num_layers} layers on cluster {cluster} ({num_devices} devices) "
        f"with submeshes [{', '.join(str(s) for s in candidates)}], "
        f"{num_microbatches} microbatches, device_memory_bytes={device_memory_bytes}"
    )
    reach = _reachable(sizes, num_devices, num_devices)
    fewest = next((c for c, bits in enumerate(reach) if (bits >> num_devices) & 1), None)
    if fewest is None:
        return f"{received}: {num_devices} devices is no sum of the submesh sizes {sizes}"
    if fewest > num_layers:
        return (
            f"{received}: covering {num_devices} devices takes at least {fewest} stages, "
            f"but {num_layers} layers make at most {num_layers} stages"
        )
    rest = census.looked_up - census.infeasible - census.over_memory
    return (
        f"{received}: of {census.looked_up} (layer range, submesh, logical mesh) options "
        f"that can occur in a device-covering plan, {census.infeasible} are infeasible "
        f"(cost None) and {census.over_memory} exceed device memory even with "
        f"{_microbatches(in_flight(schedule, 1, num_microbatches))} stashed"
        + (
            f"; the other {rest} make no plan that covers all layers and devices "
            f"within the {schedule.value} memory rule ({_rule(schedule)})"
            if rest
            else ""
        )
    )


# ---------------------------------------------------------------------------------------
# Manual plan.


def plan_manual(
    layer_ranges: Sequence[tuple[int, int]],
    submeshes: Sequence[SubmeshShape],
    logical_shapes: Sequence[LogicalShape],
    cost: CostFn | CostTable | CostCache,
    num_microbatches: int,
    *,
    cluster: Cluster,
    num_layers: int | None = None,
    device_memory_bytes: float | None = None,
    schedule: ScheduleKind = ScheduleKind.ONE_F_ONE_B,
) -> StagePlan:
    """Validate a user-given plan (stage k: layers `layer_ranges[k]` inclusive on
    `submeshes[k]` as `logical_shapes[k]`) and evaluate its objective. Raises ValueError
    on a malformed plan and StageDPError (a ValueError) when a stage is infeasible."""
    _check_counts(num_layers if num_layers is not None else 1, num_microbatches)
    stage_count = len(layer_ranges)
    if stage_count == 0:
        raise ValueError("plan_manual needs at least one stage, got no layer ranges")
    if len(submeshes) != stage_count or len(logical_shapes) != stage_count:
        raise ValueError(
            f"plan_manual needs one submesh and one logical shape per stage: got "
            f"{stage_count} layer ranges, {len(submeshes)} submeshes, "
            f"{len(logical_shapes)} logical shapes"
        )
    ranges = [tuple(r) for r in layer_ranges]
    next_layer = 0
    for k, (first, last) in enumerate(ranges):
        if first != next_layer:
            raise ValueError(
                f"stage {k}: layer range {first}..{last} should start at layer {next_layer} "
                f"(ranges must cover the layers once, in order); got ranges {ranges}"
            )
        if last < first:
            raise ValueError(f"stage {k}: empty layer range {first}..{last}; got ranges {ranges}")
        next_layer = last + 1
    if num_layers is not None and next_layer != num_layers:
        raise ValueError(
            f"layer ranges cover layers 0..{next_layer - 1}, expected 0..{num_layers - 1}; "
            f"got ranges {ranges}"
        )
    for k, submesh in enumerate(submeshes):
        _check_submesh(submesh, cluster, f"stage {k}")
    used = sum(s.num_devices for s in submeshes)
    if used != cluster.num_devices:
        raise ValueError(
            f"submeshes [{', '.join(str(s) for s in submeshes)}] use {used} devices, "
            f"cluster {cluster} has {cluster.num_devices}"
        )
    for k, (submesh, shape) in enumerate(zip(submeshes, logical_shapes, strict=True)):
        dp, mp = shape
        if dp < 1 or mp < 1 or dp * mp != submesh.num_devices:
            raise ValueError(
                f"stage {k}: logical shape {tuple(shape)} does not fit submesh {submesh}: "
                f"expected (dp, mp) with dp * mp = {submesh.num_devices}"
            )

    cache = cost if isinstance(cost, CostCache) else CostCache(cost)
    stages: list[Stage] = []
    for k, ((first, last), submesh, shape) in enumerate(
        zip(ranges, submeshes, logical_shapes, strict=True)
    ):
        what = f"stage {k} (layers {first}..{last} on submesh {submesh} as {tuple(shape)})"
        found = cache(first, last, submesh, (shape[0], shape[1]))
        if found is None:
            raise StageDPError(f"{what} is infeasible: the cost model returned None")
        stash = in_flight(schedule, stage_count - k, num_microbatches)
        if device_memory_bytes is not None and found.memory_bytes(stash) > device_memory_bytes:
            raise StageDPError(
                f"{what} needs {found.memory_bytes(stash):g} bytes per device with "
                f"{_microbatches(stash)} stashed under {schedule.value} ({_rule(schedule)}): "
                f"params {found.param_bytes:g} + {stash} x activations "
                f"{found.activation_bytes:g} + temp {found.temp_bytes:g}, more than "
                f"device_memory_bytes={device_memory_bytes:g}"
            )
        stages.append(Stage(first, last, submesh, (shape[0], shape[1]), found.latency))
    totals = pipeline_objective([s.latency for s in stages], num_microbatches)
    return StagePlan(tuple(stages), totals.total_latency, totals.t_max, totals.objective)


def _microbatches(n: int) -> str:
    return f"{n} microbatch" + ("" if n == 1 else "es")


def _rule(schedule: ScheduleKind) -> str:
    """The stash rule of a schedule, as a message states it."""
    if schedule is ScheduleKind.ONE_F_ONE_B:
        return "a stage followed by s - 1 stages stashes min(s, M) microbatches"
    return "every stage stashes all M microbatches"
