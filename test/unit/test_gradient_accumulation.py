"""alpa-gradient-accumulation: the microbatched step equals the original step for every
zoo model and M in {1, 2, 4}; batch statistics are refused unless allowed; the split's
structure (one call per microbatch, batch dims shrunk, sums accumulated) and its errors."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.graph import FunctionGraph, functions
from alpa_mlir.models.export import example_inputs, export_train_step
from alpa_mlir.passes.gradient_accumulation import GradientAccumulationPass
from alpa_mlir.passes.pass_base import PassFailure
from alpa_mlir.passes.pipeshard.microbatch import MicrobatchError, analyze_microbatches
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference

MODELS = ["mlp", "gpt", "bert", "moe"]


@functools.cache
def exported(model: str) -> str:
    return export_train_step(model, "tiny", debug_info=False)


def accumulate(text: str, options: str) -> str:
    module = parse_module(text, make_context())
    GradientAccumulationPass.from_options(options).apply(module)
    assert module.operation.verify()
    return print_module(module)


def run(text: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return compile_reference(parse_module(text, make_context()), jax.devices()[0]).run(inputs)


@functools.cache
def original_outputs(model: str) -> list[np.ndarray]:
    return run(exported(model), example_inputs(model, "tiny", seed=0))


# every model with 2 microbatches, the MLP with 1, 2 and 4; the rest of the grid
# (every model x M in {1, 2, 4}) with `make test-all`
GRID = [pytest.param(model, m, marks=() if m == 2 or model == "mlp" else pytest.mark.exhaustive)
        for model in MODELS for m in (1, 2, 4)]


@pytest.mark.parametrize(("model", "m"), GRID)
def test_accumulated_step_equals_original(model: str, m: int) -> None:
    text = exported(model)
    inputs = example_inputs(model, "tiny", seed=0)
    out = accumulate(text, f"num-microbatches={m}")
    module = parse_module(out, make_context())
    funcs = functions(module)
    assert set(funcs) == {"main", "microbatch"}
    calls = [op for op in funcs["main"].regions[0].blocks[0].operations if op.operation.name == "func.call"]
    assert len(calls) == m
    report = compare_outputs(run(out, inputs), original_outputs(model), Tolerance())
    assert report.passed, report.summary_line()


def test_batch_norm_is_refused_then_accepted_with_the_flag() -> None:
    text = exported("wide-resnet")
    with pytest.raises(PassFailure, match="cross-example statistic such as batch norm"):
        accumulate(text, "num-microbatches=2")
    out = accumulate(text, "num-microbatches=2 allow-per-microbatch-statistics=true")
    inputs = example_inputs("wide-resnet", "tiny", seed=0)
    got, want = run(out, inputs), original_outputs("wide-resnet")
    assert len(got) == len(want)
    # per-microbatch statistics change the numbers a little, not the shapes
    assert all(g.shape == w.shape for g, w in zip(got, want, strict=True))
    assert all(np.all(np.isfinite(g)) for g in got)
    # with one microbatch the statistics are the full batch's: exact again
    one = accumulate(text, "num-microbatches=1 allow-per-microbatch-statistics=true")
    assert compare_outputs(run(one, inputs), want, Tolerance()).passed


STEP = """
func.func @main(%w: tensor<4x2xf32> {tf.aliasing_output = 0 : i32}, %x: tensor<8x4xf32>, %y: tensor<8x2xf32>)
    -> (tensor<4x2xf32>, tensor<f32>) {
  %p = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4x2xf32>) -> tensor<8x2xf32>
  %d = stablehlo.subtract %p, %y : tensor<8x2xf32>
  %sq = stablehlo.multiply %d, %d : tensor<8x2xf32>
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  %s = stablehlo.reduce(%sq init: %z) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x2xf32>, tensor<f32>) -> tensor<f32>
  %n = stablehlo.constant dense<0.125> : tensor<f32>
  %loss = stablehlo.multiply %s, %n : tensor<f32>
  %c = stablehlo.constant dense<0.25> : tensor<8x2xf32>
  %dd = stablehlo.multiply %d, %c : tensor<8x2xf32>
  %g = stablehlo.dot_general %x, %dd, contracting_dims = [0] x [0] : (tensor<8x4xf32>, tensor<8x2xf32>) -> tensor<4x2xf32>
  %lr = stablehlo.constant dense<0.1> : tensor<4x2xf32>
  %u = stablehlo.multiply %g, %lr : tensor<4x2xf32>
  %w2 = stablehlo.subtract %w, %u : tensor<4x2xf32>
  return %w2, %loss : tensor<4x2xf32>, tensor<f32>
}
"""


def test_split_structure_of_a_small_step() -> None:
    module = parse_module(STEP, make_context())
    split = analyze_microbatches(FunctionGraph(functions(module)["main"]), [1, 2], 4)
    assert dict(split.batch_args) == {1: 0, 2: 0}
    # the sums: the loss reduce and the weight gradient
    assert sorted(b.info.shape for b in split.boundary) == [(), (4, 2)]
    out = accumulate(STEP, "num-microbatches=4")
    assert "func.func private @microbatch(%arg0: tensor<4x2xf32>, %arg1: tensor<2x4xf32>, %arg2: tensor<2x2xf32>" in out
    assert out.count("call @microbatch") == 4
    assert "dense<2.500000e-01> : tensor<2x2xf32>" in out  # the splat constant shrank
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in ((4, 2), (8, 4), (8, 2))]
    assert compare_outputs(run(out, inputs), run(STEP, inputs), Tolerance()).passed


FOLDED = """
func.func public @main(%w: tensor<3x3xf32>, %x: tensor<8x3xf32>) -> (tensor<3x3xf32>, tensor<f32>) {
  %b = stablehlo.broadcast_in_dim %x, dims = [1, 2] : (tensor<8x3xf32>) -> tensor<2x8x3xf32>
  %s = stablehlo.constant dense<[[[1.0]], [[-0.5]]]> : tensor<2x1x1xf32>
  %sb = stablehlo.broadcast_in_dim %s, dims = [0, 1, 2] : (tensor<2x1x1xf32>) -> tensor<2x8x3xf32>
  %m = stablehlo.multiply %b, %sb : tensor<2x8x3xf32>
  %r = stablehlo.reshape %m : (tensor<2x8x3xf32>) -> tensor<16x3xf32>
  %h = stablehlo.dot_general %r, %w, contracting_dims = [1] x [0] : (tensor<16x3xf32>, tensor<3x3xf32>) -> tensor<16x3xf32>
  %t = stablehlo.tanh %h : tensor<16x3xf32>
  %g = stablehlo.dot_general %r, %t, contracting_dims = [0] x [0] : (tensor<16x3xf32>, tensor<16x3xf32>) -> tensor<3x3xf32>
  %back = stablehlo.reshape %t : (tensor<16x3xf32>) -> tensor<2x8x3xf32>
  %tr = stablehlo.transpose %back, dims = [1, 0, 2] : (tensor<2x8x3xf32>) -> tensor<8x2x3xf32>
  %zero = stablehlo.constant dense<0.0> : tensor<f32>
  %loss = stablehlo.reduce(%tr init: %zero) applies stablehlo.add across dimensions = [0, 1, 2] : (tensor<8x2x3xf32>, tensor<f32>) -> tensor<f32>
  %w2 = stablehlo.subtract %w, %g : tensor<3x3xf32>
  return %w2, %loss : tensor<3x3xf32>, tensor<f32>
}
"""
"""The batch folded behind another dim ([2, B, 3] -> [2B, 3], as MoE routing lays out its
top-k choices) and unfolded again, with per-example work only."""


@pytest.mark.parametrize("m", [2, 4])
def test_a_batch_folded_behind_another_dim_splits_exactly(m: int) -> None:
    out = accumulate(FOLDED, f"num-microbatches={m}")
    assert f"(tensor<2x{8 // m}x3xf32>) -> tensor<{16 // m}x3xf32>" in out  # the folded reshape shrank
    assert "warning" not in out
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in ((3, 3), (8, 3))]
    report = compare_outputs(run(out, inputs), run(FOLDED, inputs), Tolerance())
    assert report.passed, report.summary_line()


HOISTED_FOLDED = """
func.func public @main(%w: tensor<3x3xf32>, %x: tensor<4x3xf32>) -> (tensor<3x3xf32>, tensor<f32>) {
  %b = stablehlo.broadcast_in_dim %x, dims = [1, 2] : (tensor<4x3xf32>) -> tensor<2x4x3xf32>
  %r = stablehlo.reshape %b : (tensor<2x4x3xf32>) -> tensor<8x3xf32>
  %i = stablehlo.iota dim = IOTA_DIM : IOTA_TYPE
  %ir = stablehlo.reshape %i : (IOTA_TYPE) -> tensor<8x3xf32>
  %m = stablehlo.multiply %r, %ir : tensor<8x3xf32>
  %g = stablehlo.dot_general %m, %r, contracting_dims = [0] x [0] : (tensor<8x3xf32>, tensor<8x3xf32>) -> tensor<3x3xf32>
  %zero = stablehlo.constant dense<0.0> : tensor<f32>
  %loss = stablehlo.reduce(%m init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x3xf32>, tensor<f32>) -> tensor<f32>
  %w2 = stablehlo.subtract %w, %g : tensor<3x3xf32>
  return %w2, %loss : tensor<3x3xf32>, tensor<f32>
}
"""
"""An iota over the batch (example-specific, computed once in @main) that meets the batch
folded behind another dim."""


def test_an_example_specific_value_in_a_folded_layout_is_sliced_before_it_is_folded() -> None:
    # The iota [2, B, 3] is hoisted and sliced along B; its reshape to the folded [2B, 3]
    # runs per microbatch. (Slicing the folded [2B, 3] in blocks would take the wrong rows.)
    text = HOISTED_FOLDED.replace("IOTA_DIM", "1").replace("IOTA_TYPE", "tensor<2x4x3xf32>")
    out = accumulate(text, "num-microbatches=2 batch-args=1")
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in ((3, 3), (4, 3))]
    report = compare_outputs(run(out, inputs), run(text, inputs), Tolerance())
    assert report.passed, report.summary_line()


def test_an_example_specific_value_made_in_a_folded_layout_is_refused() -> None:
    text = HOISTED_FOLDED.replace("IOTA_DIM", "0").replace("IOTA_TYPE", "tensor<8x3xf32>")
    text = text.replace("%ir = stablehlo.reshape %i : (tensor<8x3xf32>) -> tensor<8x3xf32>",
                        "%ir = stablehlo.negate %i : tensor<8x3xf32>")
    with pytest.raises(PassFailure, match=r"'stablehlo.iota' differs from example to example .* lays "
                                          r"the batch out behind another dim"):
        accumulate(text, "num-microbatches=2 batch-args=1")


def test_a_max_over_the_batch_is_refused() -> None:
    text = STEP.replace("applies stablehlo.add across", "applies stablehlo.maximum across")
    with pytest.raises(PassFailure, match="not a sum with a zero init"):
        accumulate(text, "num-microbatches=2")


def test_errors() -> None:
    with pytest.raises(PassFailure, match="batch size 8, which num-microbatches=3 does not divide"):
        accumulate(STEP, "num-microbatches=3")
    with pytest.raises(PassFailure, match="num-microbatches must be >= 1"):
        accumulate(STEP, "num-microbatches=0")
    with pytest.raises(PassFailure, match="batch-args names argument 7"):
        accumulate(STEP, "num-microbatches=2 batch-args=7")
    sliced = STEP.replace(
        "%sq = stablehlo.multiply %d, %d : tensor<8x2xf32>",
        "%sq0 = stablehlo.multiply %d, %d : tensor<8x2xf32>\n"
        "  %sq = stablehlo.slice %sq0 [0:4, 0:2] : (tensor<8x2xf32>) -> tensor<4x2xf32>",
    ).replace("(tensor<8x2xf32>, tensor<f32>) -> tensor<f32>", "(tensor<4x2xf32>, tensor<f32>) -> tensor<f32>")
    with pytest.raises(PassFailure, match=r"'stablehlo.slice' selects examples \(x\[:k\] .* num-microbatches=1"):
        accumulate(sliced, "num-microbatches=2")


def test_microbatch_error_carries_the_op() -> None:
    module = parse_module(STEP.replace("applies stablehlo.add across", "applies stablehlo.maximum across"),
                          make_context())
    graph = FunctionGraph(functions(module)["main"])
    with pytest.raises(MicrobatchError) as info:
        analyze_microbatches(graph, [1, 2], 2)
    assert info.value.op is not None and info.value.op.name == "stablehlo.reduce"


def test_output_is_deterministic() -> None:
    text = exported("gpt")
    assert accumulate(text, "num-microbatches=2") == accumulate(text, "num-microbatches=2")


def test_grad_marker_sets_the_boundary() -> None:
    marked = STEP.replace(
        "%w2 = stablehlo.subtract %w, %u : tensor<4x2xf32>",
        "%um = stablehlo.custom_call @alpa.grad_marker(%u) : (tensor<4x2xf32>) -> tensor<4x2xf32>\n"
        "  %w2 = stablehlo.subtract %w, %um : tensor<4x2xf32>",
    )
    out = accumulate(marked, "num-microbatches=4")
    assert "alpa.grad_marker" not in out and "alpa.grad_marked" not in out
    module = parse_module(out, make_context())
    micro = FunctionGraph(functions(module)["microbatch"])
    # the learning-rate scaling, an apply op without the marker, now runs per microbatch
    assert any(n.name == "stablehlo.multiply" and n.results[0].info.shape == (4, 2) for n in micro.ops)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in ((4, 2), (8, 4), (8, 2))]
    assert compare_outputs(run(out, inputs), run(STEP, inputs), Tolerance()).passed
    unmarked = parse_module(accumulate(STEP, "num-microbatches=4"), make_context())
    plain_micro = FunctionGraph(functions(unmarked)["microbatch"])
    assert not any(n.name == "stablehlo.multiply" and n.results[0].info.shape == (4, 2) for n in plain_micro.ops)


def test_grad_marker_on_a_per_example_value_is_refused() -> None:
    marked = STEP.replace(
        "%dd = stablehlo.multiply %d, %c : tensor<8x2xf32>",
        "%dm = stablehlo.custom_call @alpa.grad_marker(%d) : (tensor<8x2xf32>) -> tensor<8x2xf32>\n"
        "  %dd = stablehlo.multiply %dm, %c : tensor<8x2xf32>",
    )
    with pytest.raises(PassFailure, match=r"marked as a gradient .* still carries the batch"):
        accumulate(marked, "num-microbatches=2")


def test_a_step_without_a_batch_argument_is_named() -> None:
    """Only scalars: no argument has a batch dim, and the message says how to name one."""
    text = """module {
  func.func @main(%a: tensor<f32>, %b: tensor<f32>) -> tensor<f32> {
    %0 = stablehlo.multiply %a, %b : tensor<f32>
    return %0 : tensor<f32>
  }
}"""
    module = parse_module(text, make_context())
    with pytest.raises(PassFailure, match=r"no batch argument: no argument outside the state has a batch dim "
                                          r"\(name them with batch-args=\)"):
        GradientAccumulationPass(num_microbatches=2).apply(module)
