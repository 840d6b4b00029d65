"""The factor-based strategy generator (passes/sharding/factor_strategies.py), batch dims
from the same factors (passes/sharding/batch_dims.py), and liveness around loops in the
strategy graph (passes/sharding/problem.py), on plain values and tiny modules."""

from __future__ import annotations

from typing import Any

from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.dialect_utils.graph import FunctionGraph, main_function
from alpa_mlir.dialect_utils.op_factors import OpFactors, factor_rules
from alpa_mlir.passes.sharding import problem
from alpa_mlir.passes.sharding.batch_dims import batch_axes
from alpa_mlir.passes.sharding.factor_strategies import follow_axes, is_decision
from alpa_mlir.passes.sharding.mesh import LogicalMesh
from alpa_mlir.passes.sharding.strategy import RuleContext

MESH = LogicalMesh((2, 4), ("x", "y"), (1.0, 1.0), (1.0, 0.1))

# reshape [32, 16] -> [4, 8, 16]: the 32-dim spans factors 0 (4) and 1 (8)
RESHAPE_SPLIT = OpFactors((4, 8, 16), (((0, 1), (2,)),), (((0,), (1,), (2,)),))
# reshape [4, 8] -> [32]: the result dim spans factors 0 (4) and 1 (8)
RESHAPE_MERGE = OpFactors((4, 8), (((0,), (1,)),), (((0, 1),),))


def test_follow_axes_spreads_a_dim_over_its_factors_major_first() -> None:
    # [{"x","y"}, {}] on the 32-dim: x (2) on the 4-factor leaves it not whole, so y
    # cannot go to the minor factor; y does not divide what is left of the 4 either
    assert follow_axes(RESHAPE_SPLIT, 0, ((0, 1), ()), MESH) == ((0,), (), ())
    # y (4) fills the 4-factor whole, then x (2) may split the 8-factor
    assert follow_axes(RESHAPE_SPLIT, 0, ((1, 0), ()), MESH) == ((1,), (0,), ())


def test_follow_axes_drops_what_another_tensor_cannot_lay_out() -> None:
    # the 8-dim of the operand split on y, the 4-dim whole: the result's 32-dim would put
    # y on its minor factor behind an unsplit major one, which no layout expresses
    assert follow_axes(RESHAPE_MERGE, 0, ((), (1,)), MESH) == ((), ())
    assert follow_axes(RESHAPE_MERGE, 0, ((1,), (0,)), MESH) == ((1,), (0,))


def test_decision_ops_are_the_ones_one_operand_cannot_lead() -> None:
    dot = OpFactors((8, 16, 32), (((0,), (2,)), ((2,), (1,))), (((0,), (1,)),), reduction=frozenset({2}))
    add = OpFactors.elementwise((8, 16), 2, 1)
    reduce = OpFactors((8, 16), (((0,), (1,)), ()), (((0,),),), reduction=frozenset({1}))
    argmax = OpFactors((8, 16), (((0,), (1,)), ((0,), (1,)), (), ()), (((0,),), ((0,),)),
                       reduction=frozenset({1}))
    assert is_decision(dot) and is_decision(argmax)
    assert not is_decision(add) and not is_decision(reduce)


def graph_of(text: str) -> tuple[Any, FunctionGraph]:
    """The module (keep it: the graph's ops live in it) and the graph of its @main."""
    module = parse_module(text, make_context())
    return module, FunctionGraph(main_function(module))


def test_batch_dims_follow_reshapes_and_stop_at_size_changes() -> None:
    _module, graph = graph_of("""
    func.func @main(%x: tensor<32x16xf32>, %y: tensor<32x16xf32>) -> (tensor<4x8x16xf32>, tensor<64x16xf32>) {
      %0 = stablehlo.reshape %x : (tensor<32x16xf32>) -> tensor<4x8x16xf32>
      %1 = stablehlo.concatenate %x, %y, dim = 0 : (tensor<32x16xf32>, tensor<32x16xf32>) -> tensor<64x16xf32>
      return %0, %1 : tensor<4x8x16xf32>, tensor<64x16xf32>
    }""")
    found = batch_axes(graph, [0])
    reshaped, concatenated = graph.ops[0].results[0], graph.ops[1].results[0]
    assert found.dims[reshaped.value] == 0  # the batch's major part
    assert concatenated.value not in found.dims  # the concatenation changes the batch size
    assert graph.args[1].value in found.dims  # linked to x by the concatenate's equal dims
    assert found.conflicts == ()


def test_values_used_inside_a_loop_stay_live_to_its_end() -> None:
    _module, graph = graph_of("""
    func.func @main(%x: tensor<64x16xf32>, %w: tensor<16x16xf32>) -> tensor<64x16xf32> {
      %t = stablehlo.tanh %w : tensor<16x16xf32>
      %c = stablehlo.constant dense<0> : tensor<i32>
      %r:2 = stablehlo.while(%i = %c, %h = %x) : tensor<i32>, tensor<64x16xf32>
       cond {
        %n = stablehlo.constant dense<3> : tensor<i32>
        %p = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
        stablehlo.return %p : tensor<i1>
      } do {
        %d = stablehlo.dot_general %h, %t, contracting_dims = [1] x [0] : (tensor<64x16xf32>, tensor<16x16xf32>) -> tensor<64x16xf32>
        %e = stablehlo.exponential %d : tensor<64x16xf32>
        %one = stablehlo.constant dense<1> : tensor<i32>
        %i1 = stablehlo.add %i, %one : tensor<i32>
        stablehlo.return %i1, %e : tensor<i32>, tensor<64x16xf32>
      }
      return %r#1 : tensor<64x16xf32>
    }""")
    ctx = RuleContext(MESH, 1e-12, factors=factor_rules(graph.func_op))
    sg = problem.build(graph, ctx)
    assert [trip for _, trip in sg.loops] == [3]
    tanh = sg.producer[graph.ops[0].results[0].value][0]
    body = [n.index for n in sg.nodes if n.index > tanh and n.op is not None and n.op.name == "stablehlo.exponential"]
    assert len(body) == 1
    # the dot (its only reader) comes before the exponential, yet %t is still live there:
    # the next iteration reads it again
    sets = problem.live_sets(sg)
    non_args = [n.index for n in sg.nodes if n.kind is not problem.NodeKind.ARG]
    assert tanh in sets[non_args.index(body[0])]
    # the body's nodes cost three times theirs
    dot = next(n for n in sg.nodes if n.op is not None and n.op.name == "stablehlo.dot_general")
    assert dot.weight == 3.0


def test_fused_elementwise_chains_hold_no_buffer_and_keep_their_inputs_alive() -> None:
    """XLA's fusion in the liveness estimate (problem.fused_nodes): a cheap elementwise
    chain feeding elementwise users writes no buffer, its inputs live until those users
    run; an exponential read twice keeps its buffer; a value another fragment reads is a
    buffer of its own."""
    _, graph = graph_of("""
    func.func @main(%x: tensor<256xf32>) -> (tensor<256xf32>, tensor<256xf32>) {
      %a = stablehlo.convert %x : (tensor<256xf32>) -> tensor<256xf64>
      %b = stablehlo.multiply %a, %a : tensor<256xf64>
      %e = stablehlo.exponential %x : tensor<256xf32>
      %s = stablehlo.add %e, %e : tensor<256xf32>
      %t = stablehlo.subtract %s, %e : tensor<256xf32>
      %c = stablehlo.convert %b : (tensor<256xf64>) -> tensor<256xf32>
      return %c, %t : tensor<256xf32>, tensor<256xf32>
    }""")
    sg = problem.build(graph, RuleContext(LogicalMesh((1,), ("x",), (1.0,), (1.0,)), 1e-12, factors=factor_rules(graph.func_op)))
    a, b, e, s, t, _ = (sg.producer[op.results[0].value][0] for op in graph.ops[:6])
    assert problem.fused_nodes(sg) == {a, b, s}
    choices = tuple(0 for _ in sg.nodes)
    # %x (1 KB) lives throughout, with %e and %t at %t, with %t and %c at %c
    assert problem.peak_bytes(sg, choices) == 3 * 1024
    # with %a and %b in a fragment of their own, %b (2 KB of f64) is its output: a buffer
    # alive until %c reads it
    assert problem.fused_nodes(sg, lambda n: n.index in (a, b)) == {a, s}
    assert problem.peak_bytes(sg, choices, lambda n: n.index in (a, b)) == 5 * 1024
    # the exponential read twice and the returned value keep their buffers
    assert e not in problem.fused_nodes(sg) and t not in problem.fused_nodes(sg)


def test_the_maximal_live_sets_bound_every_live_set() -> None:
    """`live_sets(maximal=True)`, what the ILP's memory constraints read: fewer sets, each
    one of the sweep's, and every set of the sweep inside one of them."""
    _, graph = graph_of("""
    func.func @main(%x: tensor<256xf32>, %w: tensor<256x256xf32>) -> tensor<256xf32> {
      %a = stablehlo.exponential %x : tensor<256xf32>
      %b = stablehlo.dot_general %w, %a, contracting_dims = [1] x [0] : (tensor<256x256xf32>, tensor<256xf32>) -> tensor<256xf32>
      %c = stablehlo.tanh %b : tensor<256xf32>
      %d = stablehlo.dot_general %w, %c, contracting_dims = [1] x [0] : (tensor<256x256xf32>, tensor<256xf32>) -> tensor<256xf32>
      %e = stablehlo.exponential %d : tensor<256xf32>
      %f = stablehlo.dot_general %w, %e, contracting_dims = [1] x [0] : (tensor<256x256xf32>, tensor<256xf32>) -> tensor<256xf32>
      %g = stablehlo.add %f, %a : tensor<256xf32>
      return %g : tensor<256xf32>
    }""")
    sg = problem.build(graph, RuleContext(MESH, 1e-12, factors=factor_rules(graph.func_op)))
    every, maximal = problem.live_sets(sg), problem.live_sets(sg, maximal=True)
    assert 0 < len(maximal) < len(every)
    assert set(maximal) <= set(every)
    assert all(any(set(t) <= set(m) for m in maximal) for t in every)


def test_compute_is_priced_at_the_peak_of_the_operands_dtype() -> None:
    """With per-dtype peaks (p3.16xlarge: fp16 on tensor cores, 8x fp32), a dot of fp16
    operands costs its FLOPs at the fp16 peak even when it accumulates in fp32; an fp32
    dot at the fp32 peak; a dtype the cluster does not name at the device's peak."""
    from alpa_mlir.passes.sharding.cluster import load_cluster
    from alpa_mlir.passes.sharding.factor_strategies import strategies_for

    module, graph = graph_of("""
    func.func @main(%a: tensor<64x128xf16>, %b: tensor<128x256xf16>, %c: tensor<64x128xf32>,
                    %d: tensor<128x256xf32>, %e: tensor<64x128xi32>, %f: tensor<128x256xi32>)
        -> (tensor<64x256xf32>, tensor<64x256xf32>, tensor<64x256xi32>) {
      %0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : (tensor<64x128xf16>, tensor<128x256xf16>) -> tensor<64x256xf32>
      %1 = stablehlo.dot_general %c, %d, contracting_dims = [1] x [0] : (tensor<64x128xf32>, tensor<128x256xf32>) -> tensor<64x256xf32>
      %2 = stablehlo.dot_general %e, %f, contracting_dims = [1] x [0] : (tensor<64x128xi32>, tensor<128x256xi32>) -> tensor<64x256xi32>
      return %0, %1, %2 : tensor<64x256xf32>, tensor<64x256xf32>, tensor<64x256xi32>
    }""")
    cluster = load_cluster("p3.16xlarge")
    ctx = RuleContext.for_cluster(LogicalMesh((1,), ("x",), (0.0,), (0.0,)), cluster, factor_rules(module))
    flops = 2 * 64 * 128 * 256
    computes = []
    for node in graph.ops:
        found, known = strategies_for(node, ctx)
        assert known and isinstance(found, list)
        computes.append(found[0].compute)
    assert computes == [flops / 1.25e14, flops / 1.57e13, flops / cluster.peak_flops]
    assert dict(cluster.peak_flops_by_dtype) == {"bf16": 1.57e13, "f16": 1.25e14, "f32": 1.57e13}
