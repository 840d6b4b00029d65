"""Operator clustering (`passes/pipeshard/layer_clustering.py`) against brute force, on a
transformer-like chain, its errors, and the placement of backward and apply ops
(`passes/pipeshard/remaining_assignment.py`)."""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alpa_mlir.passes.pipeshard.layer_clustering import (
    FLOPS_RTOL,
    ClusterOp,
    Edge,
    LayerClusteringError,
    LayerPlan,
    auto_num_layers,
    cluster_layers,
)
from alpa_mlir.passes.pipeshard.remaining_assignment import (
    AssignRule,
    OpRole,
    RemainingOp,
    assign_remaining,
    parameter_layers,
)

# ---------------------------------------------------------------- brute force (independent)


@dataclass(frozen=True)
class Brute:
    boundaries: tuple[int, ...]
    objective: int
    total: int
    cross: tuple[int, ...]
    min_heavy_applied: int


def _values(edges: list[Edge]) -> dict[tuple[int, int], tuple[int, set[int]]]:
    values: dict[tuple[int, int], tuple[int, set[int]]] = {}
    for edge in edges:
        result = edge[3] if len(edge) == 4 else 0
        values.setdefault((edge[0], result), (edge[2], set()))[1].add(edge[1])
    return values


def _cross(edges: list[Edge], s: int, e: int) -> int:
    """Bytes of the distinct values produced before s and read by some op in [s, e)."""
    return sum(
        nbytes
        for (src, _), (nbytes, users) in _values(edges).items()
        if src < s and any(s <= u < e for u in users)
    )


def brute_force(
    ops: list[ClusterOp], edges: list[Edge], num_layers: int, eps: float, min_heavy: int
) -> Brute | None:
    n = len(ops)
    total_flops = sum(op.flops for op in ops)
    limit = (1 + eps) * total_flops / num_layers + FLOPS_RTOL * total_flops
    heavy = sum(op.is_heavy for op in ops)
    for k in range(min(min_heavy, heavy // num_layers), -1, -1):
        best: tuple[int, int, tuple[int, ...]] | None = None
        for cuts in itertools.combinations(range(1, n), num_layers - 1):
            bounds = (0, *cuts)
            ranges = list(zip(bounds, (*cuts, n), strict=True))
            if any(sum(op.flops for op in ops[s:e]) > limit for s, e in ranges):
                continue
            if any(sum(op.is_heavy for op in ops[s:e]) < k for s, e in ranges):
                continue
            cross = [_cross(edges, s, e) for s, e in ranges]
            key = (max(cross), sum(cross), bounds)
            if best is None or key < best:
                best = key
        if best is not None:
            ranges = list(zip(best[2], (*best[2][1:], n), strict=True))
            cross_t = tuple(_cross(edges, s, e) for s, e in ranges)
            return Brute(best[2], best[0], best[1], cross_t, k)
    return None


@st.composite
def graphs(draw: st.DrawFn) -> tuple[list[ClusterOp], list[Edge]]:
    n = draw(st.integers(1, 9))
    ops = [ClusterOp(float(draw(st.integers(0, 20))), draw(st.booleans())) for _ in range(n)]
    edges: list[Edge] = []
    for src in range(n - 1):
        for result in range(draw(st.integers(0, 2))):
            nbytes = draw(st.integers(0, 50))
            users = draw(st.lists(st.integers(src + 1, n - 1), min_size=1, max_size=3))
            for dst in users:
                edges.append((src, dst, nbytes, result) if result else (src, dst, nbytes))
    return ops, edges


# ---------------------------------------------------------------- DP == brute force


@settings(max_examples=400, deadline=None)
@given(
    graph=graphs(),
    num_layers=st.integers(1, 4),
    eps=st.sampled_from([0.0, 0.2, 0.5, 1.0, 3.0]),
    min_heavy=st.integers(0, 3),
)
def test_dp_equals_brute_force(
    graph: tuple[list[ClusterOp], list[Edge]], num_layers: int, eps: float, min_heavy: int
) -> None:
    ops, edges = graph
    num_layers = min(num_layers, len(ops))
    want = brute_force(ops, edges, num_layers, eps, min_heavy)
    if want is None:
        with pytest.raises(LayerClusteringError, match="needs eps >="):
            cluster_layers(ops, edges, num_layers, eps=eps, min_heavy=min_heavy)
        return
    plan = cluster_layers(ops, edges, num_layers, eps=eps, min_heavy=min_heavy)
    assert plan.boundaries == want.boundaries
    assert (plan.objective, plan.total_cross_bytes) == (want.objective, want.total)
    assert plan.cross_layer_bytes == want.cross
    assert plan.min_heavy_applied == want.min_heavy_applied
    _check_plan_costs(plan, ops, edges)


def _check_plan_costs(plan: LayerPlan, ops: list[ClusterOp], edges: list[Edge]) -> None:
    ranges = plan.layer_ranges()
    assert plan.layer_flops == tuple(sum(op.flops for op in ops[s:e]) for s, e in ranges)
    assert plan.layer_heavy == tuple(sum(op.is_heavy for op in ops[s:e]) for s, e in ranges)
    assert plan.cut_bytes == tuple(
        sum(nbytes for (src, _), (nbytes, users) in _values(edges).items() if src < b <= max(users))
        for b in plan.boundaries[1:]
    )
    assert len(plan.layer_of_op()) == plan.num_ops


# ---------------------------------------------------------------- transformer-like chain


def transformer_chain(
    blocks: int, act: int = 1000, mask: int = 0, heavy: float = 100.0, light: float = 1.0
) -> tuple[list[ClusterOp], list[Edge]]:
    """Blocks of [heavy, light, light, heavy]; each block's input (the previous block's
    last result) feeds its first op and, as the residual, its last op. With mask > 0 a
    value of op 0 (an attention mask) is read by the second op of every block."""
    ops: list[ClusterOp] = []
    edges: list[Edge] = []
    for b in range(blocks):
        base = 4 * b
        ops += [ClusterOp(heavy, True), ClusterOp(light), ClusterOp(light), ClusterOp(heavy, True)]
        edges += [(base, base + 1, act), (base + 1, base + 2, act), (base + 2, base + 3, act)]
        if b:
            edges += [(base - 1, base, act), (base - 1, base + 3, act)]
            if mask:
                edges.append((0, base + 1, mask, 1))
    return ops, edges


@pytest.mark.parametrize(
    ("num_layers", "min_heavy", "want"),
    [
        (2, 3, (0, 8)),  # lexicographically smallest of the block-aligned halves within eps
        (3, 3, (0, 8, 16)),
        (4, 3, (0, 8, 16, 24)),
        (8, 2, tuple(range(0, 32, 4))),
    ],
)
def test_transformer_chain_splits_at_block_boundaries(
    num_layers: int, min_heavy: int, want: tuple[int, ...]
) -> None:
    ops, edges = transformer_chain(8)
    plan = cluster_layers(ops, edges, num_layers, min_heavy=min_heavy)
    assert plan.boundaries == want
    assert all(b % 4 == 0 for b in plan.boundaries)
    # Only the block input crosses (once, though two ops of the block read it); a cut
    # inside a block would also carry the residual: 2 x act.
    assert plan.cross_layer_bytes == (0,) + (1000,) * (num_layers - 1)
    assert plan.objective == 1000
    assert not plan.relaxed_heavy
    assert max(plan.layer_flops) <= plan.flops_limit


def test_transformer_chain_cut_inside_block_costs_residual() -> None:
    ops, edges = transformer_chain(8)
    plan = cluster_layers(ops, edges, 5, min_heavy=3)  # 5 layers x 3 heavy: no block-aligned plan
    assert plan.objective == 2000
    assert plan.layer_heavy == tuple(max(3, h) for h in plan.layer_heavy)


def test_auto_num_layers_on_transformer_chain() -> None:
    ops, edges = transformer_chain(8)
    # min_heavy 3: at most 16 // 3 = 5 layers; 5 needs a cut inside a block (2000 > 1000).
    assert auto_num_layers(ops, edges) == 4
    # min_heavy 2: 8 layers (a block each) are fine, and so are 5 and 6, but 7 are not
    # (some layer gets 2 blocks > 1.5 x 8/7): the binary search, as Alpa's, stops at 6.
    assert auto_num_layers(ops, edges, min_heavy=2) == 6
    assert auto_num_layers(ops, edges, min_heavy=2, exhaustive=True) == 8
    assert cluster_layers(ops, edges, 7, min_heavy=2).objective == 2000
    assert auto_num_layers(ops, edges, min_heavy=2, max_layers=5) == 5
    # min_heavy 1: L = 13..15 have no plan (a layer holds 1 heavy op at most), 16 does.
    assert auto_num_layers(ops, edges, min_heavy=1) == 9  # 10..12 cost 2000
    assert auto_num_layers(ops, edges, min_heavy=1, layer_eps=1.0) == 12  # 2000 <= 2 x 1000
    assert auto_num_layers(ops, edges, min_heavy=1, layer_eps=1.0, exhaustive=True) == 16
    assert auto_num_layers(ops[:4], edges[:3]) == 1  # 2 heavy ops: no room for 2 layers


def test_auto_num_layers_with_few_ops() -> None:
    assert auto_num_layers([ClusterOp(1.0, True)], []) == 1
    assert auto_num_layers([ClusterOp(1.0, True)] * 2, [(0, 1, 8)], min_heavy=0) == 2


# ---------------------------------------------------------------- tie-breaks, relaxation


def test_exact_where_a_max_sum_pair_recurrence_is_not() -> None:
    """Carrying only the best (max, sum) per (layers, end), as Alpa's DP does, ends at
    (0, 1, 4, 5) with max 19 and sum 31 here: the prefix (0, 1, 2 | ..5) it dropped for
    having a larger max (11 vs 5) has the smaller total once the last layer costs 19."""
    ops = [ClusterOp(1.0)] * 6
    edges: list[Edge] = [(0, 3, 6), (0, 4, 6), (1, 3, 5), (1, 5, 5), (2, 5, 9), (4, 5, 5)]
    plan = cluster_layers(ops, edges, 4, eps=100.0, min_heavy=0)
    assert plan.boundaries == (0, 1, 2, 5)
    assert plan.cross_layer_bytes == (0, 0, 11, 19)
    assert (plan.objective, plan.total_cross_bytes) == (19, 30)


def test_sum_tie_break_before_lexicographic() -> None:
    # Max 6 either way; (0, 1, 2) is lexicographically first but sums 9, (0, 2, 3) sums 6.
    ops = [ClusterOp(1.0)] * 4
    edges: list[Edge] = [(0, 1, 3), (0, 3, 3), (1, 3, 3)]
    plan = cluster_layers(ops, edges, 3, eps=100.0, min_heavy=0)
    assert plan.boundaries == (0, 2, 3)
    assert (plan.objective, plan.total_cross_bytes) == (6, 6)
    # Among equal sums the lexicographically smallest boundaries win: every 2-layer cut of
    # an edgeless graph costs 0.
    assert cluster_layers(ops, [], 2, eps=100.0, min_heavy=0).boundaries == (0, 1)


def test_heavy_floor_relaxed_and_reported() -> None:
    # Six heavy ops up front, then two light but expensive ones: every layer 2 with three
    # heavy ops breaks the FLOPs bound (1.5 x 26 / 2 = 19.5).
    ops = [ClusterOp(1.0, True)] * 6 + [ClusterOp(10.0)] * 2
    plan = cluster_layers(ops, [(i, i + 1, 4) for i in range(7)], 2)
    assert plan.boundaries == (0, 7)
    assert (plan.min_heavy_target, plan.min_heavy_applied, plan.relaxed_heavy) == (3, 0, True)


def test_heavy_floor_follows_alpa_when_heavy_ops_are_few() -> None:
    ops = [ClusterOp(1.0, h) for h in (True, False, True, False, False, True)]
    plan = cluster_layers(ops, [], 3, eps=3.0)
    assert plan.min_heavy_target == 1  # min(3, 3 heavy // 3 layers)
    assert plan.layer_heavy == (1, 1, 1)
    assert not plan.relaxed_heavy


def test_single_layer_and_one_op_per_layer() -> None:
    ops, edges = transformer_chain(2)
    one = cluster_layers(ops, edges, 1)
    assert (one.boundaries, one.objective, one.cut_bytes) == ((0,), 0, ())
    every = cluster_layers(ops, edges, 8, eps=10.0, min_heavy=0)
    assert every.boundaries == tuple(range(8))


# ---------------------------------------------------------------- determinism


def test_deterministic_under_edge_order_and_duplicates() -> None:
    ops, edges = transformer_chain(6, mask=64)
    first = cluster_layers(ops, edges, 3)
    shuffled = list(edges) + list(edges[:5])
    random.Random(0).shuffle(shuffled)
    assert cluster_layers(ops, shuffled, 3) == first
    assert cluster_layers(ops, edges, 3) == first


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("ops", "edges", "num_layers", "match"),
    [
        ([ClusterOp(1.0)] * 2, [], 3, r"cannot form 3 non-empty layers from 2 ops"),
        ([], [], 1, r"no forward ops"),
        ([ClusterOp(1.0)] * 2, [], 0, r"num_layers must be >= 1, got 0"),
        ([ClusterOp(1.0)] * 2, [], True, r"num_layers must be an int, got True"),
        ([ClusterOp(1.0)] * 3, [(2, 1, 8)], 1, r"expected 0 <= src < dst < 3"),
        ([ClusterOp(1.0)] * 3, [(0, 3, 8)], 1, r"expected 0 <= src < dst < 3"),
        ([ClusterOp(1.0)] * 3, [(0, 1, -8)], 1, r"nbytes and result must be >= 0"),
        ([ClusterOp(1.0)] * 3, [(0, 1)], 1, r"must be \(src, dst, nbytes\)"),
        ([ClusterOp(1.0)] * 3, [(0, 1, 8.5)], 1, r"must be an int, got 8.5"),
        ([ClusterOp(1.0)] * 3, [(0, 1, 8), (0, 2, 9)], 1, r"has 8 bytes on an earlier edge"),
        (["op"], [], 1, r"ops\[0\] must be a ClusterOp"),
    ],
)
def test_input_errors(ops: list[ClusterOp], edges: list[Edge], num_layers: int, match: str) -> None:
    with pytest.raises(LayerClusteringError, match=match):
        cluster_layers(ops, edges, num_layers)


def test_option_errors() -> None:
    ops = [ClusterOp(1.0)] * 3
    with pytest.raises(LayerClusteringError, match="eps must be a finite number >= 0"):
        cluster_layers(ops, [], 2, eps=-0.1)
    with pytest.raises(LayerClusteringError, match="min_heavy must be >= 0"):
        cluster_layers(ops, [], 2, min_heavy=-1)
    with pytest.raises(LayerClusteringError, match="max_layers must be >= 1"):
        auto_num_layers(ops, [], max_layers=0)
    with pytest.raises(LayerClusteringError, match="flops must be >= 0"):
        ClusterOp(-1.0)
    with pytest.raises(LayerClusteringError, match="finite number"):
        ClusterOp(float("nan"))
    with pytest.raises(LayerClusteringError, match="exceed 2\\*\\*53"):
        cluster_layers(ops, [(0, 1, 2**52), (1, 2, 2**52)], 2)


def test_flops_bound_infeasible_message() -> None:
    ops = [ClusterOp(100.0), ClusterOp(1.0), ClusterOp(1.0), ClusterOp(1.0)]
    with pytest.raises(LayerClusteringError) as info:
        cluster_layers(ops, [], 2, eps=0.5)
    message = str(info.value)
    assert "into 2 layers" in message and "77.25" in message  # 1.5 x 103 / 2
    assert "needs eps >= 0.94" in message  # 100 x 2 / 103 - 1
    assert "op 0 alone has 100 FLOPs" in message
    assert cluster_layers(ops, [], 2, eps=0.95).boundaries == (0, 1)


def test_plan_validation() -> None:
    with pytest.raises(LayerClusteringError, match="must start at 0"):
        LayerPlan((0, 2, 2), 4, (1.0,) * 3, (0,) * 3, (0,) * 3, (0, 0), 0, 0, 1.0, 0, 0)


# ---------------------------------------------------------------- scaling


def test_scaling_5000_ops_32_layers() -> None:
    ops, edges = transformer_chain(1250, mask=64)  # 5000 ops, ~7500 edges
    start = time.perf_counter()
    plan = cluster_layers(ops, edges, 32)
    elapsed = time.perf_counter() - start
    print(f"\ncluster_layers: n={len(ops)} ops, {len(edges)} edges, L=32: {elapsed:.2f} s")
    assert plan.num_layers == 32
    assert all(b % 4 == 0 for b in plan.boundaries)
    assert plan.objective == 1000 + 64  # the block input and the mask


# ---------------------------------------------------------------- backward and apply ops


def test_parameter_layers_takes_the_earliest_user() -> None:
    layer_of = {0: 0, 1: 0, 2: 1, 3: 1}
    got = parameter_layers({100: [0], 101: [2], 102: [3, 0], 103: []}, layer_of)
    assert got == {100: 0, 101: 1, 102: 0}


def test_assign_remaining_rules() -> None:
    # Forward: 0 -> 1 | -> 2 -> 3 with a residual 1 -> 3; layers {0, 1} and {2, 3}.
    # Op 1's result is present in layers 0 and 1, the others only in their own.
    forward = {0: 0, 1: 0, 2: 1, 3: 1}
    fwd_edges: list[Edge] = [(0, 1, 8), (1, 2, 8), (2, 3, 8), (1, 3, 8)]
    params = parameter_layers({100: [0], 101: [2], 102: [0, 3]}, forward)  # 102: tied
    B, A = OpRole.BACKWARD, OpRole.APPLY
    other = [
        RemainingOp(10, B, ()),  # loss seed: reads nothing -> its consumer's layer
        RemainingOp(11, B, (10, 2, 102)),  # backward of op 3: op 2 only in 1; tied param ignored
        RemainingOp(12, B, (11, 1)),  # dW of op 2 = X^T dY: X from layer 0 but present in 1
        RemainingOp(13, B, (11, 101)),  # dX of op 2 = dY W^T: no forward value -> producers
        RemainingOp(14, B, (13, 0)),  # backward of op 1 reading op 0 (only in 0)
        RemainingOp(15, B, (14, 12)),  # cotangents from layers 0 and 1 -> the earliest
        RemainingOp(20, A, (12, 200)),  # optimizer moment of the dW: producers
        RemainingOp(21, A, (20, 101)),  # update of param 101 -> its layer
        RemainingOp(22, A, (300,)),  # step counter: only graph inputs -> consumers
        RemainingOp(23, A, (22, 100)),  # update of param 100 -> its layer
        RemainingOp(24, A, (22, 102, 15)),  # tied param 102 lives in layer 0
        RemainingOp(25, A, ()),  # reads nothing, read by nothing -> default
    ]
    got = assign_remaining(forward, other, forward_edges=fwd_edges, param_layer_of=params)
    R = AssignRule
    assert dict(got.layer_of) == {
        10: 1, 11: 1, 12: 1, 13: 1, 14: 0, 15: 0, 20: 1, 21: 1, 22: 0, 23: 0, 24: 0, 25: 0,
    }  # fmt: skip
    assert dict(got.rule_of) == {
        10: R.CONSUMERS,
        11: R.FORWARD_VALUES,
        12: R.FORWARD_VALUES,
        13: R.PRODUCERS,
        14: R.FORWARD_VALUES,
        15: R.PRODUCERS,
        20: R.PRODUCERS,
        21: R.PARAMETER,
        22: R.CONSUMERS,
        23: R.PARAMETER,
        24: R.PARAMETER,
        25: R.DEFAULT,
    }
    assert list(got.layer_of) == [op.index for op in other]


def test_assign_remaining_forward_values_choice() -> None:
    # Op 0 (layer 0) is read by layers 1 and 2, so it is present in 0, 1 and 2.
    forward = {0: 0, 1: 1, 2: 2}
    edges: list[Edge] = [(0, 1, 8), (0, 2, 8)]
    B = OpRole.BACKWARD
    ops = [
        RemainingOp(10, B, (7,)),  # cotangent produced "in" layer 1 via its consumer below
        RemainingOp(11, B, (10, 1)),  # reads op 1 (layer 1): placed in 1
        RemainingOp(12, B, (11, 0)),  # op 0 present in {0,1,2}, gradient from 1 -> 1
        RemainingOp(13, B, (0,)),  # no gradient input: the latest layer holding op 0
        RemainingOp(14, B, (1, 2)),  # ops 1 and 2 share no layer: latest home
    ]
    got = assign_remaining(forward, ops, forward_edges=edges)
    assert dict(got.layer_of) == {10: 1, 11: 1, 12: 1, 13: 2, 14: 2}
    # Without the edges, a forward value is present only in its own layer.
    assert assign_remaining(forward, ops).layer_of[12] == 0


def test_assign_remaining_gradient_later_than_forward_values() -> None:
    forward = {0: 0, 1: 1, 2: 2}
    B = OpRole.BACKWARD
    ops = [RemainingOp(10, B, (2,)), RemainingOp(11, B, (10, 0))]  # op 0 only in layer 0
    assert dict(assign_remaining(forward, ops).layer_of) == {10: 2, 11: 0}


def test_assign_remaining_errors() -> None:
    forward = {0: 0, 1: 1}
    B = OpRole.BACKWARD
    with pytest.raises(LayerClusteringError, match="topological order"):
        assign_remaining(forward, [RemainingOp(10, B, (11,)), RemainingOp(11, B, ())])
    with pytest.raises(LayerClusteringError, match="id 1 is not unique"):
        assign_remaining(forward, [RemainingOp(1, B, ())])
    with pytest.raises(LayerClusteringError, match="id 10 is not unique"):
        assign_remaining(forward, [RemainingOp(10, B, ()), RemainingOp(10, B, ())])
    with pytest.raises(LayerClusteringError, match="keys of forward_layer_of"):
        assign_remaining(forward, [], forward_edges=[(0, 5, 8)])


@settings(max_examples=100, deadline=None)
@given(data=st.data(), num_layers=st.integers(1, 4), count=st.integers(0, 12))
def test_assign_remaining_places_every_op_in_range(
    data: st.DataObject, num_layers: int, count: int
) -> None:
    forward = {i: min(i // 2, num_layers - 1) for i in range(2 * num_layers)}
    ops = []
    for k in range(count):
        pool = list(forward) + [100 + j for j in range(k)] + [999]
        reads = data.draw(st.lists(st.sampled_from(pool), max_size=3))
        role = data.draw(st.sampled_from(list(OpRole)))
        ops.append(RemainingOp(100 + k, role, tuple(reads)))
    got = assign_remaining(forward, ops)
    assert set(got.layer_of) == {op.index for op in ops}
    assert all(0 <= layer < num_layers for layer in got.layer_of.values())
