from __future__ import annotations

import pytest

from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.dialect_utils.flops import function_flops, op_flops
from alpa_mlir.dialect_utils.graph import ConvDims, DotDims, FunctionGraph, functions, main_function
from alpa_mlir.dialect_utils.types import TensorInfo, element_numpy_dtype

MODULE = """
func.func @main(%x: tensor<3x2x4xf32>, %w: tensor<3x4x8xbf16>, %img: tensor<2x3x6x6xf32>, %k: tensor<6x1x3x3xf32>, %i: tensor<5xi32>) -> (tensor<3x8xf32>, tensor<2x6x4x4xf32>, tensor<4x5xi32>) {
  %wf = stablehlo.convert %w : (tensor<3x4x8xbf16>) -> tensor<3x4x8xf32>
  %0 = stablehlo.dot_general %x, %wf, batching_dims = [0] x [0], contracting_dims = [2] x [1] : (tensor<3x2x4xf32>, tensor<3x4x8xf32>) -> tensor<3x2x8xf32>
  %1 = stablehlo.tanh %0 : tensor<3x2x8xf32>
  %cst = stablehlo.constant dense<0.0> : tensor<f32>
  %2 = stablehlo.reduce(%1 init: %cst) applies stablehlo.add across dimensions = [1] : (tensor<3x2x8xf32>, tensor<f32>) -> tensor<3x8xf32>
  %3 = stablehlo.convolution(%img, %k) dim_numbers = [b, f, 0, 1]x[o, i, 0, 1]->[b, f, 0, 1], window = {stride = [1, 1]} {batch_group_count = 1 : i64, feature_group_count = 3 : i64} : (tensor<2x3x6x6xf32>, tensor<6x1x3x3xf32>) -> tensor<2x6x4x4xf32>
  %4 = stablehlo.broadcast_in_dim %i, dims = [1] : (tensor<5xi32>) -> tensor<4x5xi32>
  %5 = stablehlo.transpose %1, dims = [0, 2, 1] : (tensor<3x2x8xf32>) -> tensor<3x8x2xf32>
  return %2, %3, %4 : tensor<3x8xf32>, tensor<2x6x4x4xf32>, tensor<4x5xi32>
}
func.func private @helper(%a: tensor<f32>) -> tensor<f32> {
  return %a : tensor<f32>
}
"""


@pytest.fixture(scope="module")
def graph() -> FunctionGraph:
    module = parse_module(MODULE, make_context())
    graph = FunctionGraph(main_function(module))
    graph.module = module  # type: ignore[attr-defined]  # keep the module alive
    return graph


def test_ops_values_and_users(graph: FunctionGraph) -> None:
    assert graph.name == "main"
    assert [op.name.split(".")[1] for op in graph.ops] == [
        "convert", "dot_general", "tanh", "constant", "reduce", "convolution", "broadcast_in_dim", "transpose",
    ]
    assert graph.args[1].info == TensorInfo((3, 4, 8), "bf16") and graph.args[1].info.nbytes == 192
    assert graph.args[4].info.numpy_dtype() == element_numpy_dtype("i32")
    tanh = graph.ops[2]
    assert graph.producer(tanh.operands[0]) is graph.ops[1]
    assert sorted(op.name for op, _ in graph.users(tanh.results[0])) == ["stablehlo.reduce", "stablehlo.transpose"]
    assert [r.producer for r in graph.returned] == [4, 5, 6]
    assert graph.result_positions(graph.ops[5].results[0]) == [1]
    assert graph.users(graph.ops[7].results[0]) == []
    assert graph.args[0].is_argument and not tanh.results[0].is_argument
    assert set(functions(graph.module)) == {"main", "helper"}  # type: ignore[attr-defined]


def test_decoded_attributes(graph: FunctionGraph) -> None:
    assert graph.ops[1].dot_dims == DotDims((0,), (0,), (2,), (1,))
    assert graph.ops[4].dimensions == (1,)
    assert graph.ops[5].conv_dims == ConvDims(0, 1, (2, 3), 1, 0, (2, 3), 0, 1, (2, 3), 3, 1)
    assert graph.ops[6].broadcast_dims == (1,)
    assert graph.ops[7].dimensions == (0, 2, 1)
    with pytest.raises(ValueError, match="no dot_dimension_numbers"):
        _ = graph.ops[2].dot_dims


def test_flops(graph: FunctionGraph) -> None:
    flops = [op_flops(op) for op in graph.ops]
    # convert: 96 elements; dot: 2*3*2*4*8; tanh: 48; reduce: 48 inputs;
    # grouped conv: 2 * (2*6*4*4) outputs * (1*3*3) = 3456; data movement: 0
    assert flops == [96, 384, 48, 0, 48, 3456, 0, 0]
    assert function_flops(graph.func_op) == sum(flops)


def test_main_function_missing() -> None:
    module = parse_module("func.func @other() { return }", make_context())
    with pytest.raises(ValueError, match=r"no function @main \(found: other\)"):
        main_function(module)


def test_graph_of_an_mpmd_fragment_body() -> None:
    module = parse_module(
        """
!m1_t = !mpmd.mesh_tensor<"m1", tensor<4x8xf32>>
func.func @main(%arg0: !m1_t) -> !m1_t attributes {
    topology = #mpmd.topology<<"m1": <["x"=2]>>>} {
  %0 = mpmd.fragment<mesh="m1", origin=["f1"]> (%arg0) (%a: tensor<4x8xf32>) {
    %1 = stablehlo.add %a, %a : tensor<4x8xf32>
    %2 = stablehlo.tanh %1 : tensor<4x8xf32>
    mpmd.return %2 : tensor<4x8xf32>
  } : (!m1_t) -> !m1_t
  return %0 : !m1_t
}
""",
        make_context(),
    )
    fragment = FunctionGraph(main_function(module)).ops[0].op
    body = FunctionGraph(fragment)
    assert body.name == "mpmd.fragment"
    assert [op.name for op in body.ops] == ["stablehlo.add", "stablehlo.tanh"]
    assert body.args[0].info == TensorInfo((4, 8), "f32")
    assert [r.producer for r in body.returned] == [1]
