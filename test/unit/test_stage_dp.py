"""The stage construction DP (`alpa_mlir.passes.pipeshard.stage_dp`, its search orders in
`ceiling_search`, manual plans in `manual_plan`) against brute force."""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from alpa_mlir.dialect_utils.schedules import ScheduleKind
from alpa_mlir.passes.pipeshard.ceiling_search import SearchOrder
from alpa_mlir.passes.pipeshard.cost_source import CostCache, CostKey, StageCost
from alpa_mlir.passes.pipeshard.manual_plan import plan_manual
from alpa_mlir.passes.pipeshard.memory_plan import LayerMemory
from alpa_mlir.passes.pipeshard.stage_dp import (
    StageDPError,
    StagePlan,
    pipeline_objective,
    plan_stages,
)
from alpa_mlir.passes.pipeshard.submesh_space import (
    Cluster,
    LogicalShape,
    SubmeshShape,
    SubmeshSpace,
    logical_shapes,
    submesh_shapes,
)

Table = dict[CostKey, StageCost | None]
PlanKey = tuple[float, int, tuple[tuple[int, int, int], ...]]


# ---------------------------------------------------------------------------------------
# Brute force: every partition x submesh x logical shape that covers the devices.


def _plans(
    num_layers: int, num_devices: int, candidates: tuple[SubmeshShape, ...]
) -> Iterator[list[tuple[int, int, int, int]]]:
    """(first layer, last layer, submesh index, logical index) per stage."""
    shapes = [logical_shapes(s) for s in candidates]

    def extend(layer: int, devices: int) -> Iterator[list[tuple[int, int, int, int]]]:
        if layer == num_layers:
            if devices == 0:
                yield []
            return
        for last in range(layer, num_layers):
            for m, submesh in enumerate(candidates):
                if submesh.num_devices > devices:
                    continue
                for lg in range(len(shapes[m])):
                    for rest in extend(last + 1, devices - submesh.num_devices):
                        yield [(layer, last, m, lg), *rest]

    yield from extend(0, num_devices)


def brute_force(
    num_layers: int,
    cluster: Cluster,
    candidates: tuple[SubmeshShape, ...],
    table: Table,
    num_microbatches: int,
    memory: float | None,
    schedule: ScheduleKind = ScheduleKind.ONE_F_ONE_B,
) -> tuple[PlanKey, list[tuple[int, int, int, int]]] | None:
    """The least (objective, stage count, stage sequence) plan, written independently of
    the module: total latency summed last stage first, the 1F1B stash min(s, B), the
    GPipe stash B."""
    best: tuple[PlanKey, list[tuple[int, int, int, int]]] | None = None
    shapes = [logical_shapes(s) for s in candidates]
    for plan in _plans(num_layers, cluster.num_devices, candidates):
        costs = [table.get((i, j, candidates[m], shapes[m][lg])) for i, j, m, lg in plan]
        if any(c is None for c in costs):
            continue
        latencies: list[float] = []
        for position, c in enumerate(costs):
            assert c is not None
            stash = (num_microbatches if schedule is ScheduleKind.GPIPE
                     else min(len(plan) - position, num_microbatches))
            latency = _fastest_fitting(c, stash, memory)
            if latency is not None:
                latencies.append(latency)
        if len(latencies) < len(costs):
            continue
        total = 0.0
        for t in reversed(latencies):
            total = t + total
        objective = total + (num_microbatches - 1) * max(latencies)
        key = (objective, len(plan), tuple((j, m, lg) for _, j, m, lg in plan))
        if best is None or key < best[0]:
            best = (key, plan)
    return best


def _fastest_fitting(c: StageCost, stash: int, memory: float | None) -> float | None:
    """A stage's latency with `stash` microbatches in flight (the microbatch being worked
    on lives in the temporaries: resident + (stash - 1) x stashed + max(temp, stashed)):
    without per-layer options its own if it fits; with them, the least over every keep / recompute / offload
    combination that fits (all kept without a limit)."""
    resident = c.param_bytes + c.grad_bytes + c.optimizer_bytes
    if not c.layers:
        a = c.activation_bytes
        fits = memory is None or resident + (stash - 1) * a + max(c.temp_bytes, a) <= memory
        return c.latency if fits else None
    ways = [[(m.keep_bytes, 0.0), (m.recompute_bytes, m.recompute_s)]
            + ([] if m.offload_s is None else [(0.0, m.offload_s)]) for m in c.layers]
    best = None
    for combo in itertools.product(*ways):
        stashed = sum(b for b, _ in combo)
        if memory is None and stashed < sum(m.keep_bytes for m in c.layers):
            continue
        if memory is not None and resident + (stash - 1) * stashed + max(c.temp_bytes, stashed) > memory:
            continue
        latency = c.latency + sum(e for _, e in combo)
        best = latency if best is None else min(best, latency)
    return best


def random_table(
    num_layers: int,
    candidates: tuple[SubmeshShape, ...],
    seed: int,
    integer: bool,
    none_rate: float,
    memory_plans: bool = False,
) -> Table:
    """Random stage costs; with `memory_plans`, each with random per-layer keep /
    recompute / offload options (integers, so that sums are exact)."""
    rng = np.random.default_rng(seed)
    table: Table = {}
    for i in range(num_layers):
        for j in range(i, num_layers):
            for submesh in candidates:
                for shape in logical_shapes(submesh):
                    if rng.random() < none_rate:
                        table[(i, j, submesh, shape)] = None
                        continue
                    latency = float(rng.integers(0, 8)) if integer else float(rng.random() * 10)
                    layers = tuple(
                        LayerMemory(float(rng.integers(0, 4)), float(rng.integers(0, 4)), float(rng.integers(0, 3)),
                                    None if rng.random() < 0.3 else float(rng.integers(0, 3)))
                        for _ in range(j - i + 1)) if memory_plans else ()
                    table[(i, j, submesh, shape)] = StageCost(
                        latency,
                        param_bytes=float(rng.integers(0, 10)),
                        activation_bytes=(sum(m.keep_bytes for m in layers) if memory_plans
                                          else float(rng.integers(0, 5))),
                        temp_bytes=float(rng.integers(0, 5)),
                        layers=layers,
                    )
    return table


def plan_key(plan: StagePlan, candidates: tuple[SubmeshShape, ...]) -> PlanKey:
    order = tuple(
        (s.layer_end, candidates.index(s.submesh), logical_shapes(s.submesh).index(s.logical_shape))
        for s in plan.stages
    )
    return (plan.objective, plan.num_stages, order)


CLUSTERS = [(1, 1), (1, 2), (1, 4), (2, 2), (2, 4), (1, 3), (2, 3)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    num_layers=st.integers(1, 5),
    cluster_shape=st.sampled_from(CLUSTERS),
    mode=st.sampled_from(list(SubmeshSpace)),
    num_microbatches=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
    integer=st.booleans(),
    none_rate=st.sampled_from([0.0, 0.2, 0.6]),
    memory=st.one_of(st.none(), st.integers(3, 30).map(float)),
    order=st.sampled_from(list(SearchOrder)),
    schedule=st.sampled_from([ScheduleKind.ONE_F_ONE_B, ScheduleKind.GPIPE]),
    memory_plans=st.booleans(),
)
def test_dp_matches_brute_force(
    num_layers: int,
    cluster_shape: tuple[int, int],
    mode: SubmeshSpace,
    num_microbatches: int,
    seed: int,
    integer: bool,
    none_rate: float,
    memory: float | None,
    order: SearchOrder,
    schedule: ScheduleKind,
    memory_plans: bool,
) -> None:
    """With per-layer memory options too: the DP picks each stage's fastest memory plan
    for the microbatches it stashes, as the brute force over every combination does."""
    cluster = Cluster(*cluster_shape)
    per_host = cluster.devices_per_host
    assume(mode is SubmeshSpace.ALL or per_host & (per_host - 1) == 0)
    candidates = submesh_shapes(cluster, mode)
    table = random_table(num_layers, candidates, seed, integer or memory_plans, none_rate, memory_plans)
    expected = brute_force(num_layers, cluster, candidates, table, num_microbatches, memory, schedule)
    if expected is None:
        with pytest.raises(StageDPError, match="no stage plan"):
            plan_stages(
                num_layers, cluster, table, num_microbatches,
                submesh_space=mode, device_memory_bytes=memory, order=order, schedule=schedule,
            )
        return
    result = plan_stages(
        num_layers, cluster, table, num_microbatches,
        submesh_space=mode, device_memory_bytes=memory, order=order, schedule=schedule,
    )
    note(f"{result.stats}\n{result.plan}\nexpected {expected[0]}")
    plan = result.plan
    # The objective is exact (both sum stage latencies last first).
    assert plan.objective == expected[0][0]
    if integer:  # exact arithmetic: the tie-break rule decides the very plan
        assert plan_key(plan, candidates) == expected[0]
    # The plan is what it claims: re-evaluated through the manual path.
    again = plan_manual(
        [(s.layer_start, s.layer_end) for s in plan.stages],
        [s.submesh for s in plan.stages],
        [s.logical_shape for s in plan.stages],
        table,
        num_microbatches,
        cluster=cluster,
        num_layers=num_layers,
        device_memory_bytes=memory,
        schedule=schedule,
    )
    assert again == plan
    stats = result.stats
    assert (
        stats.t_max_tried + stats.t_max_dominated + stats.t_max_infeasible + stats.t_max_pruned
        == stats.t_max_candidates
    )


# ---------------------------------------------------------------------------------------
# Submeshes and logical shapes.


def test_submesh_shapes() -> None:
    shapes = submesh_shapes(Cluster(3, 8), SubmeshSpace.POWER_OF_TWO)
    assert [(s.hosts, s.devices) for s in shapes] == [
        (1, 1), (1, 2), (1, 4), (1, 8), (2, 8), (3, 8)
    ]
    shapes = submesh_shapes(Cluster(2, 6), SubmeshSpace.ALL)
    assert [(s.hosts, s.devices) for s in shapes] == [(1, 1), (1, 2), (1, 3), (1, 6), (2, 6)]
    with pytest.raises(ValueError, match="power of two, got cluster 2x6"):
        submesh_shapes(Cluster(2, 6), SubmeshSpace.POWER_OF_TWO)


def test_logical_shapes() -> None:
    assert logical_shapes(SubmeshShape(1, 1)) == ((1, 1),)
    assert logical_shapes(SubmeshShape(2, 4)) == ((8, 1), (4, 2), (2, 4), (1, 8))
    assert logical_shapes(SubmeshShape(1, 6)) == ((6, 1), (3, 2), (2, 3), (1, 6))


def test_value_types_validate() -> None:
    with pytest.raises(ValueError, match="hosts=0"):
        Cluster(0, 4)
    with pytest.raises(ValueError, match="latency must be finite and >= 0, got -1"):
        StageCost(-1.0)
    with pytest.raises(ValueError, match="temp_bytes"):
        StageCost(1.0, temp_bytes=math.inf)
    assert StageCost(1.0, 10.0, 2.0, 3.0).memory_bytes(4) == 10.0 + 3 * 2.0 + 3.0  # the 4th lives in temp


# ---------------------------------------------------------------------------------------
# Cost laziness and caching.


def test_cost_called_once_per_tuple_and_only_where_a_plan_can_use_it() -> None:
    calls: Counter[CostKey] = Counter()

    def cost(i: int, j: int, submesh: SubmeshShape, logical: LogicalShape) -> StageCost:
        calls[(i, j, submesh, logical)] += 1
        return StageCost((j - i + 1) / submesh.num_devices + 0.01 * logical[1])

    cluster = Cluster(2, 4)
    result = plan_stages(6, cluster, cost, 4)
    assert max(calls.values()) == 1
    assert result.stats.cost_calls == len(calls) == result.stats.options_costed
    assert result.stats.cache_hits == 0
    # The whole-cluster submesh fits one plan only: one stage over every layer.
    whole = SubmeshShape(2, 4)
    assert {(i, j) for i, j, s, _ in calls if s == whole} == {(0, 5)}

    # A shared cache serves a second search (another microbatch count) for free.
    cache = CostCache(cost)
    first = plan_stages(6, cluster, cache, 4)
    second = plan_stages(6, cluster, cache, 16)
    assert first.stats.cost_calls == len(calls) and first.stats.cache_hits == 0
    assert second.stats.cost_calls == 0
    assert second.stats.cache_hits == len(calls)
    assert max(calls.values()) == 2  # once for the first search, once for `cache`
    # The manual path uses the same cache.
    plan_manual([(0, 5)], [whole], [(8, 1)], cache, 4, cluster=cluster)
    assert cache.calls == len(calls) and cache.hits == len(calls) + 1


def test_table_missing_key_is_infeasible() -> None:
    cluster = Cluster(1, 2)
    one, two = SubmeshShape(1, 1), SubmeshShape(1, 2)
    table: Table = {(0, 0, one, (1, 1)): StageCost(1.0), (1, 1, one, (1, 1)): StageCost(1.0)}
    plan = plan_stages(2, cluster, table, 1).plan
    assert [(s.layer_start, s.layer_end, s.submesh) for s in plan.stages] == [
        (0, 0, one), (1, 1, one)
    ]
    with pytest.raises(StageDPError, match=r"\(1, 2\) as \(2, 1\)\) is infeasible"):
        plan_manual([(0, 1)], [two], [(2, 1)], table, 1, cluster=cluster)


# ---------------------------------------------------------------------------------------
# Search: pruning, ordering, tie-breaks, memory.


def _pruning_table() -> Table:
    """1x2 cluster, 4 layers, B = 4. One stage on (1, 2): 100 (objective 400). Two stages
    on (1, 1): split 1|3 costs 30 + 90 (objective 120 + 3 * 90 = 390, the optimum),
    2|2 costs 80 + 80 (400), 3|1 costs 97 + 20 (117 + 3 * 97 = 408)."""
    one, two = SubmeshShape(1, 1), SubmeshShape(1, 2)
    table: Table = {(0, 3, two, shape): StageCost(100.0) for shape in logical_shapes(two)}
    for (i, j), latency in {
        (0, 0): 30.0, (1, 3): 90.0, (0, 1): 80.0, (2, 3): 80.0, (0, 2): 97.0, (3, 3): 20.0
    }.items():
        table[(i, j, one, (1, 1))] = StageCost(latency)
    return table


def test_pruning_stops_the_search() -> None:
    table = _pruning_table()
    cluster = Cluster(1, 2)
    result = plan_stages(4, cluster, table, 4)
    plan = result.plan
    assert [(s.layer_start, s.layer_end) for s in plan.stages] == [(0, 0), (1, 3)]
    assert (plan.total_latency, plan.t_max, plan.objective) == (120.0, 90.0, 390.0)
    # Ceilings 20 < 30 < 80 < 90 < 97 < 100. Descending: none (400), 97 (408), 90 (390),
    # 80 (400, total 160). Every plan holds layer 1, in a stage of latency >= 80, so
    # below 80 a plan costs >= 160 + 3 * 80 = 400 > 390: 20 and 30 are pruned.
    stats = result.stats
    assert (stats.t_max_candidates, stats.t_max_tried, stats.t_max_pruned) == (6, 4, 2)
    # Alpa's ascending order: 20 and 30 (infeasible), 80, 90; at 97 a plan with max
    # stage latency >= 97 costs >= max(F_inf = 100, 97) + 3 * 97 = 391 > 390: pruned.
    ascending = plan_stages(4, cluster, table, 4, order=SearchOrder.ASCENDING)
    assert ascending.plan == plan
    assert (ascending.stats.t_max_tried, ascending.stats.t_max_pruned) == (5, 1)


def test_single_microbatch_needs_one_dp() -> None:
    result = plan_stages(4, Cluster(1, 2), _pruning_table(), 1)
    assert result.plan.objective == 100.0
    assert result.stats.t_max_tried == 1


def test_tie_break_fewer_stages_then_lexicographic() -> None:
    cluster = Cluster(1, 2)
    one, two = SubmeshShape(1, 1), SubmeshShape(1, 2)
    # Every plan has total 2 and B = 1: one stage (2 logical shapes) or two stages.
    table: Table = {(0, 1, two, shape): StageCost(2.0) for shape in logical_shapes(two)}
    for i, j in [(0, 0), (1, 1)]:
        table[(i, j, one, (1, 1))] = StageCost(1.0)
    plan = plan_stages(2, cluster, table, 1).plan
    # Fewer stages first, then the first logical shape, (dp, mp) = (2, 1).
    assert [(s.layer_end, s.submesh, s.logical_shape) for s in plan.stages] == [(1, two, (2, 1))]

    # Two-stage ties on a 1x2 cluster with 3 layers: split 1|2 and 2|1 both total 2.
    table = {(i, j, one, (1, 1)): StageCost(1.0) for i in range(3) for j in range(i, 3)}
    plans = {plan_stages(3, cluster, table, b).plan for b in (2, 2, 5)}
    assert len(plans) == 2  # deterministic per B
    for b in (2, 5):
        plan = plan_stages(3, cluster, table, b).plan
        assert [(s.layer_start, s.layer_end) for s in plan.stages] == [(0, 0), (1, 2)]


def test_stash_is_bounded_by_microbatches() -> None:
    """The first of 2 stages stashes min(2, B) microbatches of activations."""
    cluster = Cluster(1, 2)
    one, two = SubmeshShape(1, 1), SubmeshShape(1, 2)
    table: Table = {(0, 1, two, shape): StageCost(5.0) for shape in logical_shapes(two)}
    for i in range(2):
        table[(i, i, one, (1, 1))] = StageCost(1.0, param_bytes=4.0, activation_bytes=3.0)
    # 4 + 1 * 3 <= 8: two stages fit with B = 1.
    result = plan_stages(2, cluster, table, 1, device_memory_bytes=8.0)
    assert result.plan.num_stages == 2
    # 4 + 2 * 3 > 8 with B = 2: one stage; legality changes between 1 and 2 stashed.
    result = plan_stages(2, cluster, table, 2, device_memory_bytes=8.0)
    assert (result.plan.num_stages, result.plan.objective, result.stats.cap) == (1, 10.0, 2)
    result = plan_stages(2, cluster, table, 2, device_memory_bytes=10.0)
    assert (result.plan.num_stages, result.plan.objective, result.stats.cap) == (2, 3.0, 1)


# ---------------------------------------------------------------------------------------
# No plan.


def test_no_plan_errors_name_what_was_received() -> None:
    def nothing(i: int, j: int, submesh: SubmeshShape, logical: LogicalShape) -> None:
        return None

    with pytest.raises(StageDPError, match=r"no stage plan for 2 layers on cluster 2x2 .*"
                       r"of 7 .* options .* 7 are infeasible \(cost None\) and 0 exceed"):
        plan_stages(2, Cluster(2, 2), nothing, 4)

    def cost(i: int, j: int, submesh: SubmeshShape, logical: LogicalShape) -> StageCost:
        return StageCost(1.0, param_bytes=100.0)

    with pytest.raises(StageDPError, match=r"exceed device memory even with 1 microbatch stashed$"):
        plan_stages(2, Cluster(1, 2), cost, 4, device_memory_bytes=50.0)
    with pytest.raises(StageDPError, match=r"exceed device memory even with 4 microbatches stashed$"):
        plan_stages(2, Cluster(1, 2), cost, 4, device_memory_bytes=50.0, schedule=ScheduleKind.GPIPE)
    with pytest.raises(StageDPError, match="takes at least 4 stages, but 2 layers"):
        plan_stages(2, Cluster(1, 4), cost, 4, submeshes=[SubmeshShape(1, 1)])
    with pytest.raises(StageDPError, match="5 devices is no sum of the submesh sizes"):
        plan_stages(2, Cluster(1, 5), cost, 4, submeshes=[SubmeshShape(1, 2)])
    with pytest.raises(ValueError, match="num_layers must be >= 1, got 0"):
        plan_stages(0, Cluster(1, 2), cost, 4)
    with pytest.raises(ValueError, match="num_microbatches must be >= 1, got 0"):
        plan_stages(1, Cluster(1, 2), cost, 0)
    with pytest.raises(ValueError, match=r"submesh \(1, 8\) does not fit cluster 1x4"):
        plan_stages(1, Cluster(1, 4), cost, 1, submeshes=[SubmeshShape(1, 8)])


# ---------------------------------------------------------------------------------------
# Manual plans.


def _uniform(i: int, j: int, submesh: SubmeshShape, logical: LogicalShape) -> StageCost:
    return StageCost(float(j - i + 1), param_bytes=1.0, activation_bytes=1.0)


def test_manual_plan_evaluates_the_objective() -> None:
    cluster = Cluster(1, 4)
    plan = plan_manual(
        [(0, 1), (2, 2)], [SubmeshShape(1, 2)] * 2, [(2, 1), (1, 2)], _uniform, 3,
        cluster=cluster, num_layers=3,
    )
    assert [s.latency for s in plan.stages] == [2.0, 1.0]
    assert (plan.total_latency, plan.t_max, plan.objective) == (3.0, 2.0, 7.0)
    assert pipeline_objective([2.0, 1.0], 3).objective == 7.0


@pytest.mark.parametrize(
    ("ranges", "submeshes", "shapes", "message"),
    [
        ([], [], [], "at least one stage"),
        ([(0, 3)], [], [], "got 1 layer ranges, 0 submeshes, 0 logical shapes"),
        ([(0, 1), (3, 3)], [(1, 2), (1, 2)], [(2, 1), (2, 1)],
         r"stage 1: layer range 3..3 should start at layer 2"),
        ([(0, 2), (2, 3)], [(1, 2), (1, 2)], [(2, 1), (2, 1)],
         r"stage 1: layer range 2..3 should start at layer 3"),
        ([(0, 1), (2, 1)], [(1, 2), (1, 2)], [(2, 1), (2, 1)], r"empty layer range 2..1"),
        ([(0, 1), (2, 2)], [(1, 2), (1, 2)], [(2, 1), (2, 1)],
         r"cover layers 0..2, expected 0..3"),
        ([(0, 1), (2, 3)], [(1, 2), (1, 1)], [(2, 1), (1, 1)],
         r"use 3 devices, cluster 1x4 has 4"),
        ([(0, 1), (2, 3)], [(1, 2), (1, 2)], [(2, 1), (1, 1)],
         r"stage 1: logical shape \(1, 1\) does not fit submesh \(1, 2\)"),
        ([(0, 3)], [(2, 2)], [(4, 1)], r"stage 0: submesh \(2, 2\) does not fit cluster 1x4"),
    ],
)
def test_manual_plan_validation(
    ranges: list[tuple[int, int]],
    submeshes: list[tuple[int, int]],
    shapes: list[LogicalShape],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        plan_manual(
            ranges, [SubmeshShape(*s) for s in submeshes], shapes, _uniform, 2,
            cluster=Cluster(1, 4), num_layers=4,
        )


def test_manual_plan_memory() -> None:
    # Stage 0 of 2 stashes 2 microbatches: 1 + 2 * 1 = 3 bytes > 2.5.
    with pytest.raises(StageDPError, match=r"stage 0 .* needs 3 bytes per device with 2 "):
        plan_manual(
            [(0, 1), (2, 3)], [SubmeshShape(1, 2)] * 2, [(2, 1), (2, 1)], _uniform, 4,
            cluster=Cluster(1, 4), device_memory_bytes=2.5,
        )


# ---------------------------------------------------------------------------------------
# Scale.


def _synthetic(num_layers: int, cluster: Cluster, num_microbatches: int) -> CostCache:
    """Compute splits over devices; model parallelism pays an all-reduce per layer (10x
    dearer across hosts); data parallelism pays a gradient all-reduce per step, spread
    over the microbatches; parameters split over mp, activations over the whole mesh."""
    rng = np.random.default_rng(0)
    flops = np.concatenate([[0.0], np.cumsum(1.0 + 0.2 * rng.random(num_layers))])

    def cost(i: int, j: int, submesh: SubmeshShape, logical: LogicalShape) -> StageCost:
        layers = j - i + 1
        dp, mp = logical
        compute = (flops[j + 1] - flops[i]) / submesh.num_devices
        mp_link = 0.002 if mp <= cluster.devices_per_host else 0.02
        dp_link = 0.01 if submesh.hosts == 1 else 0.04
        mp_comm = layers * mp_link * 2 * (mp - 1) / mp
        dp_comm = layers * dp_link * 2 * (dp - 1) / dp / num_microbatches
        return StageCost(
            float(compute + mp_comm + dp_comm),
            param_bytes=layers * 8e9 / mp,
            activation_bytes=layers * 1e9 / submesh.num_devices,
            temp_bytes=2e9,
        )

    return CostCache(cost)


@pytest.mark.parametrize("memory", [None, 40e9])
def test_scaling_32_layers_8x8(memory: float | None) -> None:
    cluster = Cluster(8, 8)
    started = time.perf_counter()
    result = plan_stages(32, cluster, _synthetic(32, cluster, 16), 16, device_memory_bytes=memory)
    elapsed = time.perf_counter() - started
    plan, stats = result.plan, result.stats
    print(
        f"\n32 layers on 8x8, B=16, memory={memory}: {elapsed:.2f} s "
        f"(cost {stats.cost_seconds:.2f} s, DP {stats.dp_seconds:.2f} s); "
        f"{stats.cost_calls} cost calls, cap {stats.cap}, ceilings {stats.t_max_candidates}: "
        f"tried {stats.t_max_tried}, dominated {stats.t_max_dominated}, "
        f"infeasible {stats.t_max_infeasible}, pruned {stats.t_max_pruned}; "
        f"{plan.num_stages} stages "
        + " ".join(f"{s.layer_start}-{s.layer_end}@{s.submesh}{s.logical_shape}" for s in plan.stages)
        + f", objective {plan.objective:.4f}"
    )
    assert sum(s.submesh.num_devices for s in plan.stages) == 64
    assert plan.stages[0].layer_start == 0 and plan.stages[-1].layer_end == 31


def test_gpipe_stashes_every_microbatch_on_every_stage() -> None:
    """The manual plan that fits under 1F1B (the last stage holds one microbatch) does not
    under GPipe (it holds all four), and the message says which rule."""
    cluster = Cluster(1, 2)
    one = SubmeshShape(1, 1)
    table = {(0, 0, one, (1, 1)): StageCost(1.0, 0.0, 1.0, 0.0),
             (1, 1, one, (1, 1)): StageCost(1.0, 0.0, 2.0, 0.0)}
    args = ([(0, 0), (1, 1)], [one, one], [(1, 1), (1, 1)], table, 4)
    plan = plan_manual(*args, cluster=cluster, device_memory_bytes=4.0)  # 2 x 1, 1 x 2
    assert plan.num_stages == 2
    with pytest.raises(StageDPError, match=r"stage 1 .* needs 8 bytes per device with 4 microbatches stashed under gpipe \(every stage"):
        plan_manual(*args, cluster=cluster, device_memory_bytes=4.0, schedule=ScheduleKind.GPIPE)
    with pytest.raises(StageDPError, match=r"within the gpipe memory rule|with 4 microbatches stashed"):
        plan_stages(2, cluster, table, 4, device_memory_bytes=4.0, schedule=ScheduleKind.GPIPE)
