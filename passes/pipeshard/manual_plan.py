"""A stage plan given by the user (`stages=manual`), checked and evaluated.

`plan_manual` reads the layer ranges, submeshes and logical shapes of each stage and a
cost source, checks that the ranges cover the layers once and in order, that the
submeshes fit the cluster and use all of its devices, and that every stage is feasible
and fits in device memory under the schedule's stash rule (`cost_source.StageCost`);
returns the `StagePlan` with its objective (`stage_dp.pipeline_objective`). Writes
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from alpa_mlir.dialect_utils.schedules import ScheduleKind, in_flight

from .cost_source import CostCache, CostFn, CostTable, microbatch_phrase, stash_rule
from .stage_dp import Stage, StageDPError, StagePlan, check_counts, pipeline_objective
from .submesh_space import Cluster, LogicalShape, SubmeshShape, check_submesh


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
    check_counts(num_layers if num_layers is not None else 1, num_microbatches)
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
        check_submesh(submesh, cluster, f"stage {k}")
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
        fastest = found.fastest(stash, device_memory_bytes)
        if fastest is None:
            found = min(found.ways, key=lambda w: w.memory_bytes(stash, w.least_activation_bytes))
            least = found.least_activation_bytes
            leanest = " (its leanest memory plan)" if found.layers else ""
            raise StageDPError(
                f"{what} needs {found.memory_bytes(stash, least):g} bytes per "
                f"device with {microbatch_phrase(stash)} stashed under {schedule.value} "
                f"({stash_rule(schedule)}){leanest}: "
                f"params {found.param_bytes:g} + gradient sums {found.grad_bytes:g} + optimizer "
                f"state {found.optimizer_bytes:g} + {stash - 1} x activations {least:g} + the larger of "
                f"temp {found.temp_bytes:g} and one microbatch's activations, more than "
                f"device_memory_bytes={device_memory_bytes:g}"
            )
        way, chosen = fastest
        stages.append(Stage(first, last, submesh, (shape[0], shape[1]), way.latency + chosen.extra_s))
    totals = pipeline_objective([s.latency for s in stages], num_microbatches)
    return StagePlan(tuple(stages), totals.total_latency, totals.t_max, totals.objective)
