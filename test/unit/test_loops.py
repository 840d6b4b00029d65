"""dialect_utils.loops (counted whiles, unrolling) and dialect_utils.folding (the clean-ups
of unrolled copies): recognized shapes, refused shapes, and the unrolled function
computing what the loop computed."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from alpa_mlir.dialect_utils import folding
from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.dialect_utils.control_flow import loop_counter
from alpa_mlir.dialect_utils.graph import main_function
from alpa_mlir.dialect_utils.loops import unroll
from alpa_mlir.runtime.reference import compile_reference

LOOP = """
func.func public @main(%w: tensor<3x4xf32>, %x: tensor<2x4xf32>) -> tensor<2x4xf32> {{
  %c0 = stablehlo.constant dense<{start}> : tensor<i32>
  %r:2 = stablehlo.while(%i = %c0, %a = %x) : tensor<i32>, tensor<2x4xf32>
    cond {{
      %n = stablehlo.constant dense<{bound}> : tensor<i32>
      %lt = stablehlo.compare {direction}, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    }} do {{
      %z = stablehlo.constant dense<0> : tensor<i32>
      %two = stablehlo.constant dense<2> : tensor<i32>
      %rev = stablehlo.subtract %two, %i : tensor<i32>
      %wi = stablehlo.dynamic_slice %w, %rev, %z, sizes = [1, 4] : (tensor<3x4xf32>, tensor<i32>, tensor<i32>) -> tensor<1x4xf32>
      %wb = stablehlo.broadcast_in_dim %wi, dims = [0, 1] : (tensor<1x4xf32>) -> tensor<2x4xf32>
      %m = stablehlo.multiply %a, %wb : tensor<2x4xf32>
      %next = stablehlo.add %m, %a : tensor<2x4xf32>
      %step = stablehlo.constant dense<{step}> : tensor<i32>
      %i1 = stablehlo.add %i, %step : tensor<i32>
      stablehlo.return %i1, %next : tensor<i32>, tensor<2x4xf32>
    }}
  return %r#1 : tensor<2x4xf32>
}}
"""


def _module(text: str):
    return parse_module(text, make_context())


def _while(module) -> object:
    block = main_function(module).regions[0].blocks[0]
    return next(o.operation for o in block.operations if o.operation.name == "stablehlo.while")


def _ops(module) -> list[str]:
    return [o.operation.name for o in main_function(module).regions[0].blocks[0].operations]


def _run(module, *inputs: np.ndarray) -> list[np.ndarray]:
    return compile_reference(module, jax.devices()[0]).run(list(inputs))


@pytest.mark.parametrize(("start", "bound", "step", "trips"), [(0, 3, 1, 3), (1, 3, 1, 2), (0, 3, 2, 2), (3, 3, 1, 0)])
def test_counted_loop_trip_count(start: int, bound: int, step: int, trips: int) -> None:
    module = _module(LOOP.format(start=start, bound=bound, step=step, direction="LT"))
    loop = loop_counter(_while(module))
    assert loop is not None and (loop.index, loop.start, loop.step, loop.trips) == (0, start, step, trips)


@pytest.mark.parametrize("direction", ["GT", "EQ"])
def test_loop_without_a_static_trip_count_is_left(direction: str) -> None:
    module = _module(LOOP.format(start=0, bound=3, step=1, direction=direction))
    assert loop_counter(_while(module)) is None
    assert not unroll(_while(module))
    assert "stablehlo.while" in _ops(module)


@pytest.mark.parametrize(("start", "step"), [(0, 1), (1, 1), (0, 2), (3, 1)])
def test_unrolled_loop_computes_what_the_loop_computed(start: int, step: int) -> None:
    text = LOOP.format(start=start, bound=3, step=step, direction="LT")
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((3, 4), dtype=np.float32), rng.standard_normal((2, 4), dtype=np.float32)
    want = _run(_module(text), w, x)
    module = _module(text)
    assert unroll(_while(module))
    block = main_function(module).regions[0].blocks[0]
    folding.fold_scalar_integers(block)
    assert folding.static_slices(block) == loop_counter(_while(_module(text))).trips
    folding.erase_dead(block)
    folding.sink_views(block)
    assert module.operation.verify()
    ops = _ops(module)
    assert "stablehlo.while" not in ops and "stablehlo.dynamic_slice" not in ops
    np.testing.assert_array_equal(_run(module, w, x)[0], want[0])


STACK = """
func.func public @main(%a: tensor<1x4xf32>, %b: tensor<1x4xf32>) -> (tensor<1x4xf32>, tensor<1x4xf32>, tensor<1x4xf32>) {
  %zero = stablehlo.constant dense<0.0> : tensor<3x4xf32>
  %c0 = stablehlo.constant dense<0> : tensor<i32>
  %c1 = stablehlo.constant dense<1> : tensor<i32>
  %c2 = stablehlo.constant dense<2> : tensor<i32>
  %s0 = stablehlo.dynamic_update_slice %zero, %a, %c0, %c0 : (tensor<3x4xf32>, tensor<1x4xf32>, tensor<i32>, tensor<i32>) -> tensor<3x4xf32>
  %s1 = stablehlo.dynamic_update_slice %s0, %b, %c1, %c0 : (tensor<3x4xf32>, tensor<1x4xf32>, tensor<i32>, tensor<i32>) -> tensor<3x4xf32>
  %r0 = stablehlo.dynamic_slice %s1, %c0, %c0, sizes = [1, 4] : (tensor<3x4xf32>, tensor<i32>, tensor<i32>) -> tensor<1x4xf32>
  %r1 = stablehlo.dynamic_slice %s1, %c1, %c0, sizes = [1, 4] : (tensor<3x4xf32>, tensor<i32>, tensor<i32>) -> tensor<1x4xf32>
  %r2 = stablehlo.dynamic_slice %s1, %c2, %c0, sizes = [1, 4] : (tensor<3x4xf32>, tensor<i32>, tensor<i32>) -> tensor<1x4xf32>
  return %r0, %r1, %r2 : tensor<1x4xf32>, tensor<1x4xf32>, tensor<1x4xf32>
}
"""


def test_slices_of_a_stack_read_the_update_that_wrote_them() -> None:
    module = _module(STACK)
    block = main_function(module).regions[0].blocks[0]
    assert folding.forward_slices(block) == 3  # r0 past s1 to a; r1 to b; r2 past both to zero
    folding.erase_dead(block)
    ops = _ops(module)
    assert "stablehlo.dynamic_update_slice" not in ops
    a, b = np.full((1, 4), 1.0, np.float32), np.full((1, 4), 2.0, np.float32)
    r0, r1, r2 = _run(module, a, b)
    np.testing.assert_array_equal(r0, a)
    np.testing.assert_array_equal(r1, b)
    np.testing.assert_array_equal(r2, np.zeros((1, 4), np.float32))


def test_overlapping_window_keeps_the_stack() -> None:
    text = STACK.replace("%r2 = stablehlo.dynamic_slice %s1, %c2, %c0, sizes = [1, 4] : (tensor<3x4xf32>, tensor<i32>, tensor<i32>) -> tensor<1x4xf32>",
                        "%r2w = stablehlo.dynamic_slice %s1, %c0, %c0, sizes = [2, 4] : (tensor<3x4xf32>, tensor<i32>, tensor<i32>) -> tensor<2x4xf32>\n"
                        "  %r2 = stablehlo.slice %r2w [1:2, 0:4] : (tensor<2x4xf32>) -> tensor<1x4xf32>")
    module = _module(text)
    block = main_function(module).regions[0].blocks[0]
    folding.forward_slices(block)
    folding.erase_dead(block)
    assert "stablehlo.dynamic_update_slice" in _ops(module)  # the 2-row window reads both updates
    a, b = np.full((1, 4), 1.0, np.float32), np.full((1, 4), 2.0, np.float32)
    np.testing.assert_array_equal(_run(module, a, b)[2], b)


def test_scalar_folds_and_dead_ops() -> None:
    module = _module("""
func.func public @main(%x: tensor<f32>) -> (tensor<i32>, tensor<f32>) {
  %a = stablehlo.constant dense<7> : tensor<i32>
  %b = stablehlo.constant dense<3> : tensor<i32>
  %d = stablehlo.subtract %a, %b : tensor<i32>
  %lt = stablehlo.compare LT, %d, %b, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
  %s = stablehlo.select %lt, %a, %d : tensor<i1>, tensor<i32>
  %unused = stablehlo.multiply %x, %x : tensor<f32>
  %cc = stablehlo.custom_call @keep(%x) : (tensor<f32>) -> tensor<f32>
  return %s, %x : tensor<i32>, tensor<f32>
}
""")
    block = main_function(module).regions[0].blocks[0]
    assert folding.fold_scalar_integers(block) == 3
    folding.erase_dead(block)
    ops = _ops(module)
    assert "stablehlo.multiply" not in ops and "stablehlo.custom_call" in ops
    assert folding.scalar_constant(list(block.operations)[-1].operation.operands[0]) == 4


def test_invariant_constant_is_recomputed_in_every_copy() -> None:
    module = _module("""
func.func public @main(%x: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %c0 = stablehlo.constant dense<0> : tensor<i32>
  %half = stablehlo.constant dense<0.5> : tensor<f32>
  %m = stablehlo.broadcast_in_dim %half, dims = [] : (tensor<f32>) -> tensor<2x4xf32>
  %r:3 = stablehlo.while(%i = %c0, %a = %x, %k = %m) : tensor<i32>, tensor<2x4xf32>, tensor<2x4xf32>
    cond {
      %n = stablehlo.constant dense<3> : tensor<i32>
      %lt = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    } do {
      %next = stablehlo.multiply %a, %k : tensor<2x4xf32>
      %one = stablehlo.constant dense<1> : tensor<i32>
      %i1 = stablehlo.add %i, %one : tensor<i32>
      stablehlo.return %i1, %next, %k : tensor<i32>, tensor<2x4xf32>, tensor<2x4xf32>
    }
  return %r#1 : tensor<2x4xf32>
}
""")
    assert unroll(_while(module))
    folding.erase_dead(main_function(module).regions[0].blocks[0])
    assert _ops(module).count("stablehlo.broadcast_in_dim") == 3  # one per copy, none shared
    x = np.full((2, 4), 2.0, np.float32)
    np.testing.assert_array_equal(_run(module, x)[0], x * 0.125)
