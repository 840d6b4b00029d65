"""Stage construction: Alpa's inter-operator DP over (layer range, submesh, logical mesh).

Pure and MLIR-free (Alpa, OSDI'22, section 5.2; our plans beside Alpa's: docs/plans.md). The pass extracts the layers
and a cost model from the IR, calls `plan_stages`, and writes the plan back. Holds
`plan_stages`, the plan it returns (`Stage`, `StagePlan`, `pipeline_objective`), its
statistics and `StageDPError`; reads the cost source it is given, writes nothing.

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
order (`SearchOrder`) decides how many of them need a DP.

Where each part lives (all in `pipeshard`):
- `submesh_space`: the cluster, the candidate submeshes and logical meshes, their checks.
- `cost_source`: `StageCost` and its memory rule, the cost function/table types, `CostCache`.
- `ceiling_dp`: the costed tables and one DP run under a ceiling (with the exact
  refinements: one logical mesh per state, the `cap` on stage-count states, lazy costing).
- `ceiling_search`: the ceiling orders (`SearchOrder`), their bounds and counts.
- `manual_plan`: `plan_manual`, a user-given plan checked and evaluated.
- here: `plan_stages`, which runs them in that order, and the plan and result types.

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

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alpa_mlir.dialect_utils.schedules import ScheduleKind, in_flight

from .ceiling_dp import Census, DPAnswer, cost_tables, solve_ceiling
from .ceiling_search import SearchOrder, search_ceilings
from .cost_source import CostCache, CostFn, CostTable, microbatch_phrase, stash_rule
from .submesh_space import (
    Cluster,
    LogicalShape,
    SubmeshShape,
    SubmeshSpace,
    check_submeshes,
    logical_shapes,
    reachable_counts,
    submesh_shapes,
)


class StageDPError(ValueError):
    """No stage plan exists (or a manual plan is infeasible) for the inputs given."""


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
    check_counts(num_layers, num_microbatches)
    candidates = (
        submesh_shapes(cluster, submesh_space) if submeshes is None else tuple(submeshes)
    )
    check_submeshes(candidates, cluster)
    cache = cost if isinstance(cost, CostCache) else CostCache(cost)
    calls0, hits0 = cache.calls, cache.hits

    started = time.perf_counter()
    tables, census = cost_tables(
        num_layers, cluster, candidates, cache, num_microbatches, device_memory_bytes, schedule
    )
    cost_seconds = time.perf_counter() - started

    started = time.perf_counter()
    values = tables.latency[np.isfinite(tables.latency)]
    ceilings = np.unique(values)
    found = solve_ceiling(tables, math.inf)
    if found is None:
        raise StageDPError(
            _no_plan_message(
                num_layers, cluster, candidates, num_microbatches, device_memory_bytes, census,
                schedule,
            )
        )
    best, counts = search_ceilings(tables, ceilings, num_microbatches, found, order)
    dp_seconds = time.perf_counter() - started

    plan = _to_plan(best, candidates, num_microbatches)
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


def check_counts(num_layers: int, num_microbatches: int) -> None:
    """Raise ValueError unless there is at least one layer and one microbatch."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if num_microbatches < 1:
        raise ValueError(f"num_microbatches must be >= 1, got {num_microbatches}")


def _to_plan(
    found: DPAnswer, candidates: Sequence[SubmeshShape], num_microbatches: int
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
    census: Census,
    schedule: ScheduleKind,
) -> str:
    num_devices = cluster.num_devices
    sizes = [s.num_devices for s in candidates]
    received = (
        f"no stage plan for {num_layers} layers on cluster {cluster} ({num_devices} devices) "
        f"with submeshes [{', '.join(str(s) for s in candidates)}], "
        f"{num_microbatches} microbatches, device_memory_bytes={device_memory_bytes}"
    )
    reach = reachable_counts(sizes, num_devices, num_devices)
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
        f"{microbatch_phrase(in_flight(schedule, 1, num_microbatches))} stashed"
        + (
            f"; the other {rest} make no plan that covers all layers and devices "
            f"within the {schedule.value} memory rule ({stash_rule(schedule)})"
            if rest
            else ""
        )
    )
