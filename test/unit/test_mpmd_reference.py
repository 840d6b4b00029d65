"""MPMD modules: reading them (`dialect_utils.mpmd`), flattening them into one plain
program, and the sequential reference executor (`runtime.mpmd_reference`), checked against
numpy and against the flattened program. Runs on fake CPU devices (conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import context, graph, mpmd, shardy
from alpa_mlir.dialect_utils.diagnostics import DiagnosticError
from alpa_mlir.runtime import ModuleKind, module_kind
from alpa_mlir.runtime.errors import InputMismatchError
from alpa_mlir.runtime.inputs import random_inputs
from alpa_mlir.runtime.mpmd_reference import SequentialExecutor, compile_flat_reference
from alpa_mlir.runtime.reference import compare_outputs
from alpa_mlir.runtime.signature import read_signature
from alpa_mlir.tools.alpa_run import main as alpa_run_main

TOPOLOGY = '#mpmd.topology<<"stage0": <["x"=2]>>, <"stage1": <["x"=2]>>>'

# A 2-stage, 2-microbatch training step of y = (x @ w0) @ w1 with a squared-error loss and
# SGD (learning rate 0.1), in the format of docs/mpmd-format.md.
TRAIN_STEP = """
!w0 = !mpmd.mesh_tensor<"stage0", tensor<4x8xf32>, sharding=<@stage0, [{}, {"x"}]>>
!x0 = !mpmd.mesh_tensor<"stage0", tensor<16x4xf32>>
!xm = !mpmd.mesh_tensor<"stage0", tensor<8x4xf32>>
!h0 = !mpmd.mesh_tensor<"stage0", tensor<8x8xf32>>
!l0 = !mpmd.mesh_tensor<"stage0", tensor<f32>>
!w1 = !mpmd.mesh_tensor<"stage1", tensor<8x4xf32>>
!y1 = !mpmd.mesh_tensor<"stage1", tensor<16x4xf32>>
!ym = !mpmd.mesh_tensor<"stage1", tensor<8x4xf32>>
!h1 = !mpmd.mesh_tensor<"stage1", tensor<8x8xf32>>
!l1 = !mpmd.mesh_tensor<"stage1", tensor<f32>>
module @step {
  sdy.mesh @stage0 = <["x"=2]>
  sdy.mesh @stage1 = <["x"=2]>
  func.func @main(%w0: !w0 {tf.aliasing_output = 0 : i32}, %w1: !w1 {tf.aliasing_output = 1 : i32},
                  %x: !x0, %y: !y1) -> (!w0, !w1, !l0)
      attributes {topology = TOPOLOGY, alpa.num_microbatches = 2 : i64} {
    %xm:2 = mpmd.fragment<mesh="stage0", origin=["microbatches"]> (%x) {alpa.kind = "microbatches"} (%a: tensor<16x4xf32>) {
      %0 = stablehlo.slice %a [0:8, 0:4] : (tensor<16x4xf32>) -> tensor<8x4xf32>
      %1 = stablehlo.slice %a [8:16, 0:4] : (tensor<16x4xf32>) -> tensor<8x4xf32>
      mpmd.return %0, %1 : tensor<8x4xf32>, tensor<8x4xf32>
    } : (!x0) -> (!xm, !xm)
    %ym:2 = mpmd.fragment<mesh="stage1", origin=["microbatches"]> (%y) {alpa.kind = "microbatches"} (%a: tensor<16x4xf32>) {
      %0 = stablehlo.slice %a [0:8, 0:4] : (tensor<16x4xf32>) -> tensor<8x4xf32>
      %1 = stablehlo.slice %a [8:16, 0:4] : (tensor<16x4xf32>) -> tensor<8x4xf32>
      mpmd.return %0, %1 : tensor<8x4xf32>, tensor<8x4xf32>
    } : (!y1) -> (!ym, !ym)
    %z0 = mpmd.fragment<mesh="stage0", origin=["accumulators"]> () {alpa.kind = "accumulators"} () {
      %0 = stablehlo.constant dense<0.0> : tensor<4x8xf32>
      mpmd.return %0 : tensor<4x8xf32>
    } : () -> !w0
    %z1:2 = mpmd.fragment<mesh="stage1", origin=["accumulators"]> () {alpa.kind = "accumulators"} () {
      %0 = stablehlo.constant dense<0.0> : tensor<8x4xf32>
      %1 = stablehlo.constant dense<0.0> : tensor<f32>
      mpmd.return %0, %1 : tensor<8x4xf32>, tensor<f32>
    } : () -> (!w1, !l1)
    %r0:3 = mpmd.call @microbatch(%w0, %w1, %xm#0, %ym#0, %z0, %z1#0, %z1#1) {call_counter = 0 : ui32}
        : (!w0, !w1, !xm, !ym, !w0, !w1, !l1) -> (!w0, !w1, !l1)
    %r1:3 = mpmd.call @microbatch(%w0, %w1, %xm#1, %ym#1, %r0#0, %r0#1, %r0#2) {call_counter = 1 : ui32}
        : (!w0, !w1, !xm, !ym, !w0, !w1, !l1) -> (!w0, !w1, !l1)
    %loss = mpmd.transfer %r1#2 : (!l1) -> !l0
    %nw0 = mpmd.fragment<mesh="stage0", origin=["apply"], stage=0> (%w0, %r1#0) {alpa.kind = "apply"} (%w: tensor<4x8xf32>, %g: tensor<4x8xf32>) {
      %c = stablehlo.constant dense<0.1> : tensor<4x8xf32>
      %0 = stablehlo.multiply %c, %g : tensor<4x8xf32>
      %1 = stablehlo.subtract %w, %0 : tensor<4x8xf32>
      mpmd.return %1 : tensor<4x8xf32>
    } : (!w0, !w0) -> !w0
    %nw1 = mpmd.fragment<mesh="stage1", origin=["apply"], stage=1> (%w1, %r1#1) {alpa.kind = "apply"} (%w: tensor<8x4xf32>, %g: tensor<8x4xf32>) {
      %c = stablehlo.constant dense<0.1> : tensor<8x4xf32>
      %0 = stablehlo.multiply %c, %g : tensor<8x4xf32>
      %1 = stablehlo.subtract %w, %0 : tensor<8x4xf32>
      mpmd.return %1 : tensor<8x4xf32>
    } : (!w1, !w1) -> !w1
    return %nw0, %nw1, %loss : !w0, !w1, !l0
  }
  func.func private @microbatch(%w0: !w0, %w1: !w1, %x: !xm, %y: !ym, %g0: !w0, %g1: !w1, %l: !l1)
      -> (!w0, !w1, !l1) attributes {topology = TOPOLOGY} {
    %h = mpmd.fragment<mesh="stage0", origin=["layer0"], stage=0> (%x, %w0) {alpa.kind = "forward"} (%a: tensor<8x4xf32>, %w: tensor<4x8xf32>) {
      %0 = stablehlo.dot_general %a, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>
      %1 = sdy.sharding_constraint %0 <@stage0, [{"x"}, {}]> : tensor<8x8xf32>
      mpmd.return %1 : tensor<8x8xf32>
    } : (!xm, !w0) -> !h0
    %ht = mpmd.transfer %h : (!h0) -> !h1
    %b1:3 = mpmd.fragment<mesh="stage1", origin=["layer1"], stage=1> (%ht, %w1, %y, %g1, %l) {alpa.kind = "backward"} (%a: tensor<8x8xf32>, %w: tensor<8x4xf32>, %t: tensor<8x4xf32>, %g: tensor<8x4xf32>, %acc: tensor<f32>) {
      %0 = stablehlo.dot_general %a, %w, contracting_dims = [1] x [0] : (tensor<8x8xf32>, tensor<8x4xf32>) -> tensor<8x4xf32>
      %d = stablehlo.subtract %0, %t : tensor<8x4xf32>
      %sq = stablehlo.multiply %d, %d : tensor<8x4xf32>
      %zero = stablehlo.constant dense<0.0> : tensor<f32>
      %s = stablehlo.reduce(%sq init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x4xf32>, tensor<f32>) -> tensor<f32>
      %l2 = stablehlo.add %acc, %s : tensor<f32>
      %two = stablehlo.constant dense<2.0> : tensor<8x4xf32>
      %dd = stablehlo.multiply %two, %d : tensor<8x4xf32>
      %gw = stablehlo.dot_general %a, %dd, contracting_dims = [0] x [0] : (tensor<8x8xf32>, tensor<8x4xf32>) -> tensor<8x4xf32>
      %g2 = stablehlo.add %g, %gw : tensor<8x4xf32>
      %dh = stablehlo.dot_general %dd, %w, contracting_dims = [1] x [1] : (tensor<8x4xf32>, tensor<8x4xf32>) -> tensor<8x8xf32>
      mpmd.return %g2, %l2, %dh : tensor<8x4xf32>, tensor<f32>, tensor<8x8xf32>
    } : (!h1, !w1, !ym, !w1, !l1) -> (!w1, !l1, !h1)
    %dht = mpmd.transfer %b1#2 : (!h1) -> !h0
    %g0n = mpmd.fragment<mesh="stage0", origin=["layer0"], stage=0> (%x, %dht, %g0) {alpa.kind = "backward"} (%a: tensor<8x4xf32>, %dh: tensor<8x8xf32>, %g: tensor<4x8xf32>) {
      %0 = stablehlo.dot_general %a, %dh, contracting_dims = [0] x [0] : (tensor<8x4xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
      %1 = stablehlo.add %g, %0 : tensor<4x8xf32>
      mpmd.return %1 : tensor<4x8xf32>
    } : (!xm, !h0, !w0) -> !w0
    return %g0n, %b1#0, %b1#1 : !w0, !w1, !l1
  }
}
""".replace("TOPOLOGY", TOPOLOGY)


def train_step_numpy(w0: np.ndarray, w1: np.ndarray, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    g0, g1, loss = np.zeros_like(w0), np.zeros_like(w1), np.float32(0)
    for k in range(2):
        xm, ym = x[8 * k: 8 * k + 8], y[8 * k: 8 * k + 8]
        h = xm @ w0
        d = h @ w1 - ym
        loss += (d * d).sum()
        g1 += h.T @ (2 * d)
        g0 += xm.T @ ((2 * d) @ w1.T)
    return [w0 - 0.1 * g0, w1 - 0.1 * g1, np.asarray(loss, np.float32)]


# Structure beyond the training step: a zero-operand fragment, a multi-result fragment,
# a value used by two later fragments (and by a transfer), a callee called twice on
# different operands, an argument returned as is and a value returned twice.
NESTED = """
!a = !mpmd.mesh_tensor<"stage0", tensor<4xf32>>
!b = !mpmd.mesh_tensor<"stage1", tensor<4xf32>>
!i = !mpmd.mesh_tensor<"stage1", tensor<2xi32>>
module {
  func.func @main(%p: !a, %q: !b, %n: !i) -> (!b, !a, !b, !b, !i)
      attributes {topology = TOPOLOGY} {
    %c = mpmd.fragment<mesh="stage0", origin=["const"]> () () {
      %0 = stablehlo.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
      mpmd.return %0 : tensor<4xf32>
    } : () -> !a
    %m:2 = mpmd.fragment<mesh="stage0", origin=["pair"]> (%p, %c) {alpa.kind = "forward"} (%u: tensor<4xf32>, %v: tensor<4xf32>) {
      %0 = stablehlo.add %u, %v : tensor<4xf32>
      %1 = stablehlo.multiply %u, %v : tensor<4xf32>
      mpmd.return %0, %1 : tensor<4xf32>, tensor<4xf32>
    } : (!a, !a) -> (!a, !a)
    %s = mpmd.fragment<mesh="stage0", origin=["sub"]> (%m#0, %m#1) {alpa.kind = "forward"} (%u: tensor<4xf32>, %v: tensor<4xf32>) {
      %0 = stablehlo.subtract %u, %v : tensor<4xf32>
      mpmd.return %0 : tensor<4xf32>
    } : (!a, !a) -> !a
    %e = mpmd.fragment<mesh="stage0", origin=["exp"]> (%m#0) {alpa.kind = "forward"} (%u: tensor<4xf32>) {
      %0 = stablehlo.exponential %u : tensor<4xf32>
      mpmd.return %0 : tensor<4xf32>
    } : (!a) -> !a
    %t = mpmd.transfer %m#0 : (!a) -> !b
    %r0 = mpmd.call @twice(%t, %q) {call_counter = 0 : ui32} : (!b, !b) -> !b
    %r1 = mpmd.call @twice(%r0, %t) {call_counter = 1 : ui32} : (!b, !b) -> !b
    %es = mpmd.fragment<mesh="stage0", origin=["sum"]> (%e, %s) (%u: tensor<4xf32>, %v: tensor<4xf32>) {
      %0 = stablehlo.add %u, %v : tensor<4xf32>
      mpmd.return %0 : tensor<4xf32>
    } : (!a, !a) -> !a
    return %r1, %es, %r0, %r0, %n : !b, !a, !b, !b, !i
  }
  func.func private @twice(%u: !b, %v: !b) -> !b attributes {topology = TOPOLOGY} {
    %0 = mpmd.fragment<mesh="stage1", origin=["twice"]> (%u, %v) {alpa.kind = "backward"} (%a: tensor<4xf32>, %b: tensor<4xf32>) {
      %0 = stablehlo.add %a, %a : tensor<4xf32>
      %1 = stablehlo.add %0, %b : tensor<4xf32>
      mpmd.return %1 : tensor<4xf32>
    } : (!b, !b) -> !b
    return %0 : !b
  }
}
""".replace("TOPOLOGY", TOPOLOGY)


def nested_numpy(p: np.ndarray, q: np.ndarray, n: np.ndarray) -> list[np.ndarray]:
    c = np.array([1, 2, 3, 4], np.float32)
    m0, m1 = p + c, p * c
    r0 = 2 * m0 + q
    r1 = 2 * r0 + m0
    return [r1, np.exp(m0) + (m0 - m1), r0, r0, n]


@pytest.fixture(scope="module")
def ctx() -> ir.Context:
    return context.make_context()


@pytest.fixture(scope="module")
def device() -> jax.Device:
    return jax.devices()[0]


@pytest.fixture(scope="module")
def step(ctx: ir.Context) -> ir.Module:
    return context.parse_module(TRAIN_STEP, ctx)


@pytest.fixture(scope="module")
def step_executor(step: ir.Module, device: jax.Device) -> SequentialExecutor:
    return SequentialExecutor(step, device)


def _main(module: ir.Module) -> ir.Operation:
    return graph.main_function(module)


def _all_ops(module: ir.Module) -> list[ir.Operation]:
    found: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        found.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


def _fragments(module: ir.Module) -> list[ir.Operation]:
    return [op for op in _all_ops(module) if op.name == mpmd.FRAGMENT]


# ----------------------------------------------------------------------------- reading


def test_topology(step: ir.Module) -> None:
    topo = mpmd.topology(_main(step))
    assert list(topo) == ["stage0", "stage1"]
    assert topo["stage0"] == shardy.Mesh.from_shape((2,), ("x",))
    assert mpmd.topology(graph.functions(step)["microbatch"]) == topo


def test_parse_topology_with_several_axes_and_device_ids() -> None:
    text = '#mpmd.topology<<"a" : <["x"=2, "y"=4]>>, <"b, c" : <["x"=2], device_ids=[1, 0]>>>'
    topo = mpmd.parse_topology(text)
    assert topo["a"].shape == (2, 4) and topo["a"].axis_names == ("x", "y")
    assert topo["b, c"].device_ids == (1, 0)
    with pytest.raises(ValueError, match=r"not an #mpmd\.topology"):
        mpmd.parse_topology('#sdy.mesh<["x"=2]>')


def test_missing_topology_is_a_located_error(ctx: ir.Context) -> None:
    module = context.parse_module("func.func @main(%a: tensor<4xf32>) -> tensor<4xf32> {\n"
                                  "  return %a : tensor<4xf32>\n}\n", ctx)
    with pytest.raises(DiagnosticError, match=r"-:1:1: error: function @main has no #mpmd\.topology"):
        mpmd.topology(_main(module))


def test_mesh_tensor_parts_and_type(step: ir.Module, ctx: ir.Context) -> None:
    arg_types = [a.type for a in _main(step).regions[0].blocks[0].arguments]
    assert all(mpmd.is_mesh_tensor(t) for t in arg_types)
    mesh, tensor, text = mpmd.mesh_tensor_parts(arg_types[0])
    assert (mesh, str(tensor), text) == ("stage0", "tensor<4x8xf32>", '<@stage0, [{}, {"x"}]>')
    assert isinstance(tensor, ir.RankedTensorType) and tensor.shape == [4, 8]
    assert mpmd.mesh_tensor_parts(arg_types[1])[0::2] == ("stage1", None)
    for t in arg_types:
        assert mpmd.mesh_tensor_type(*mpmd.mesh_tensor_parts(t)) == t
    assert mpmd.mesh_tensor_type("stage0", tensor, '#sdy.sharding<@stage0, [{}, {"x"}]>') == arg_types[0]
    with ctx:
        plain = ir.Type.parse("tensor<3xi32>")
    assert not mpmd.is_mesh_tensor(plain)
    assert mpmd.global_type(plain) == plain
    assert mpmd.global_type(arg_types[0]) == tensor


def test_fragment_attributes(step: ir.Module) -> None:
    described = [mpmd.describe_fragment(op) for op in _fragments(step)]
    assert described[0] == 'fragment "microbatches" on stage0 (origin microbatches)'
    forward = next(op for op in _fragments(step) if mpmd.fragment_kind(op) == "forward")
    assert mpmd.fragment_mesh(forward) == "stage0"
    assert mpmd.fragment_origin(forward) == ("layer0",)
    assert mpmd.fragment_stage(forward) == 0
    assert mpmd.fragment_stage(_fragments(step)[0]) is None
    calls = [op for op in mpmd.top_level_ops(_main(step)) if op.name == mpmd.CALL]
    assert [mpmd.callee_name(c) for c in calls] == ["microbatch", "microbatch"]
    assert [mpmd.call_counter(c) for c in calls] == [0, 1]


def test_program_functions(step: ir.Module) -> None:
    assert list(mpmd.program_functions(step)) == ["main", "microbatch"]


# ----------------------------------------------------------------------------- flatten


def test_flatten_is_plain_stablehlo_with_the_same_signature(step: ir.Module) -> None:
    before = context.print_module(step)
    flat = mpmd.flatten(step)
    assert context.print_module(step) == before  # the input is untouched
    assert flat.operation.verify()
    names = {op.name for op in _all_ops(flat)}
    assert not {n for n in names if n.startswith(("mpmd.", "sdy."))}, names
    text = context.print_module(flat)
    assert "mesh_tensor" not in text and "sdy" not in text and "topology" not in text
    assert list(graph.functions(flat)) == ["main"]
    assert module_kind(flat) is ModuleKind.PLAIN
    signature = read_signature(flat)
    assert [a.info.shape for a in signature.args] == [(4, 8), (8, 4), (16, 4), (16, 4)]
    assert [r.info.shape for r in signature.results] == [(4, 8), (8, 4), ()]
    assert [a.aliased_output for a in signature.args] == [0, 1, None, None]
    assert all(a.sharding is None for a in signature.args)
    # Both microbatches are inlined: two copies of every microbatch-function fragment.
    assert sum(1 for op in _all_ops(flat) if op.name == "stablehlo.dot_general") == 2 * 5


def test_fragment_module(step: ir.Module) -> None:
    forward = next(op for op in _fragments(step) if mpmd.fragment_kind(op) == "forward")
    module = mpmd.fragment_module(forward)
    assert module.operation.verify()
    func_op = _main(module)
    ftype = ir.FunctionType(ir.TypeAttr(func_op.attributes["function_type"]).value)
    assert [str(t) for t in ftype.inputs] == ["tensor<8x4xf32>", "tensor<4x8xf32>"]
    assert [str(t) for t in ftype.results] == ["tensor<8x8xf32>"]
    names = [op.name for op in _all_ops(module)]
    assert "sdy.sharding_constraint" not in names and "stablehlo.dot_general" in names


def test_fragment_module_copies_called_helpers(ctx: ir.Context, device: jax.Device) -> None:
    text = """
!t = !mpmd.mesh_tensor<"stage0", tensor<4xf32>>
func.func @main(%arg0: !t) -> !t attributes {topology = TOPOLOGY} {
  %0 = mpmd.fragment<mesh="stage0", origin=[]> (%arg0) (%a: tensor<4xf32>) {
    %1 = func.call @helper(%a) : (tensor<4xf32>) -> tensor<4xf32>
    mpmd.return %1 : tensor<4xf32>
  } : (!t) -> !t
  return %0 : !t
}
func.func private @helper(%a: tensor<4xf32>) -> tensor<4xf32> {
  %0 = stablehlo.add %a, %a : tensor<4xf32>
  return %0 : tensor<4xf32>
}
""".replace("TOPOLOGY", TOPOLOGY)
    module = context.parse_module(text, ctx)
    assert list(graph.functions(mpmd.fragment_module(_fragments(module)[0]))) == ["main", "helper"]
    assert list(graph.functions(mpmd.flatten(module))) == ["main", "helper"]
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(SequentialExecutor(module, device).run([x])[0], 2 * x)


# ----------------------------------------------------------------------------- executor


def test_executor_matches_numpy(step_executor: SequentialExecutor) -> None:
    inputs = random_inputs(step_executor.signature, seed=1)
    outputs = step_executor.run(inputs)
    expected = train_step_numpy(*inputs)
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_executor_matches_the_flattened_program(
    step: ir.Module, step_executor: SequentialExecutor, device: jax.Device
) -> None:
    inputs = random_inputs(step_executor.signature, seed=2)
    flat = compile_flat_reference(step, device)
    report = compare_outputs(step_executor.run(inputs), flat.run(inputs))
    assert report.passed, [c.line() for c in report.comparisons]


def test_fragments_compile_once_and_run_per_microbatch(step: ir.Module, device: jax.Device) -> None:
    executor = SequentialExecutor(step, device)
    stats = executor.stats
    # 9 fragment ops; the two "microbatches" fragments have identical bodies.
    assert (stats.fragment_ops, stats.compiled, len(executor.programs)) == (9, 8, 8)
    assert stats.compile_seconds > 0 and stats.runs == 0
    compiled = list(executor.programs)
    inputs = random_inputs(executor.signature)
    executor.run(inputs)
    executor.run(inputs)
    assert executor.programs == compiled  # nothing compiled while running
    assert stats.runs == 2 and len(stats.run_seconds) == 2
    assert stats.executions_per_run() == {
        "microbatches": 2, "accumulators": 2, "forward": 2, "backward": 4, "apply": 2,
    }
    assert stats.executions["forward"] == 4
    assert (stats.calls, stats.transfers) == (4, 2 * (1 + 2 * 2))
    assert executor.num_microbatch_calls == 2


def test_signature_and_placements(step_executor: SequentialExecutor) -> None:
    signature = step_executor.signature
    assert [a.info.shape for a in signature.args] == [(4, 8), (8, 4), (16, 4), (16, 4)]
    assert [a.donated for a in signature.args] == [True, True, False, False]
    assert [p.mesh for p in step_executor.placements] == ["stage0", "stage1", "stage0", "stage1"]
    first = step_executor.placements[0].sharding
    assert first is not None and first.dim_axes == ((), ("x",))
    assert [r.info.shape for r in signature.results] == [(4, 8), (8, 4), ()]


def test_run_timed_and_device_resident_values(step_executor: SequentialExecutor) -> None:
    inputs = random_inputs(step_executor.signature, seed=3)
    timed = step_executor.run_timed(inputs, repeat=2)
    assert len(timed.seconds) == 2
    arrays = step_executor.execute(inputs)
    assert all(isinstance(a, jax.Array) for a in arrays)
    for got, want in zip(timed.outputs, arrays, strict=True):
        np.testing.assert_array_equal(got, np.asarray(want))
    with pytest.raises(ValueError, match="repeat must be at least 1"):
        step_executor.run_timed(inputs, repeat=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda xs: xs[:3], r"@main takes 4 argument\(s\), got 3 input\(s\)"),
        (lambda xs: [*xs[:3], xs[3][:8]],
         r"argument 3 \(arg3\): expected f32\[16,4\] \(float32 \(16, 4\)\), got float32 \(8, 4\)"),
        (lambda xs: [xs[0].astype(np.float64), *xs[1:]],
         r"argument 0 \(arg0\): expected f32\[4,8\] \(float32 \(4, 8\)\), got float64 \(4, 8\)"),
    ],
)
def test_input_mismatch(step_executor: SequentialExecutor,
                        change: Callable[[list[np.ndarray]], list[np.ndarray]], message: str) -> None:
    inputs = random_inputs(step_executor.signature)
    with pytest.raises(InputMismatchError, match=message):
        step_executor.run(change(inputs))


def test_nested_structure(ctx: ir.Context, device: jax.Device) -> None:
    module = context.parse_module(NESTED, ctx)
    executor = SequentialExecutor(module, device)
    assert (executor.stats.fragment_ops, executor.stats.compiled) == (6, 6)
    p = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    q = np.array([1.0, 1.5, -2.0, 3.0], np.float32)
    n = np.array([3, 4], np.int32)
    outputs = executor.run([p, q, n])
    for got, want in zip(outputs, nested_numpy(p, q, n), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert executor.stats.executions_per_run() == {"fragment": 2, "forward": 3, "backward": 2}
    flat = mpmd.flatten(module)
    assert flat.operation.verify()
    report = compare_outputs(outputs, compile_flat_reference(module, device).run([p, q, n]))
    assert report.passed, [c.line() for c in report.comparisons]


def test_a_program_without_fragments(ctx: ir.Context, device: jax.Device) -> None:
    module = context.parse_module(
        '!t = !mpmd.mesh_tensor<"stage0", tensor<4xf32>>\n'
        f"func.func @main(%arg0: !t) -> !t attributes {{topology = {TOPOLOGY}}} {{\n"
        "  return %arg0 : !t\n}\n", ctx)
    executor = SequentialExecutor(module, device)
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(executor.run([x])[0], x)
    assert executor.stats.compiled == 0
    np.testing.assert_array_equal(compile_flat_reference(module, device).run([x])[0], x)


# ----------------------------------------------------------------------------- errors

UNSUPPORTED_TOP_LEVEL = """!t = !mpmd.mesh_tensor<"stage0", tensor<4xf32>>
func.func @main(%arg0: !t) -> (!t, tensor<4xf32>) attributes {topology = TOPOLOGY} {
  %c = stablehlo.constant dense<1.0> : tensor<4xf32>
  return %arg0, %c : !t, tensor<4xf32>
}
""".replace("TOPOLOGY", TOPOLOGY)

UNSUPPORTED_IN_CALLEE = """!t = !mpmd.mesh_tensor<"stage0", tensor<4xf32>>
func.func @main(%arg0: !t) -> !t attributes {topology = TOPOLOGY} {
  %0 = mpmd.call @f(%arg0) : (!t) -> !t
  return %0 : !t
}
func.func private @f(%arg0: !t) -> !t attributes {topology = TOPOLOGY} {
  %0 = mpmd.unassign %arg0 : (!t) -> tensor<4xf32>
  %1 = mpmd.assign %0 : (tensor<4xf32>) -> !t
  return %1 : !t
}
""".replace("TOPOLOGY", TOPOLOGY)

UNSUPPORTED_SDY_OP = """sdy.mesh @stage0 = <["x"=2]>
!t = !mpmd.mesh_tensor<"stage0", tensor<4xf32>>
func.func @main(%arg0: !t) -> !t attributes {topology = TOPOLOGY} {
  %0 = mpmd.fragment<mesh="stage0", origin=[]> (%arg0) (%a: tensor<4xf32>) {
    %1 = sdy.propagation_barrier %a allowed_direction=NONE : tensor<4xf32>
    mpmd.return %1 : tensor<4xf32>
  } : (!t) -> !t
  return %0 : !t
}
""".replace("TOPOLOGY", TOPOLOGY)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (UNSUPPORTED_TOP_LEVEL,
         "-:3:8: error: 'stablehlo.constant' is not supported at the top level of MPMD function "
         "@main: expected only mpmd.fragment, mpmd.transfer, mpmd.call, func.return"),
        (UNSUPPORTED_IN_CALLEE, "-:7:8: error: 'mpmd.unassign' is not supported at the top level "
                                "of MPMD function @f"),
        (UNSUPPORTED_SDY_OP, "-:5:10: error: 'sdy.propagation_barrier' inside an mpmd.fragment "
                             "is not supported"),
    ],
)
def test_unsupported_ops_are_located_errors(text: str, message: str, ctx: ir.Context,
                                            device: jax.Device) -> None:
    module = context.parse_module(text, ctx)
    for build in (lambda: SequentialExecutor(module, device), lambda: mpmd.flatten(module)):
        with pytest.raises(DiagnosticError) as info:
            build()
        assert str(info.value).startswith(message), str(info.value)


# ----------------------------------------------------------------------------- alpa-run


def test_alpa_run_on_an_mpmd_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "step.mlir"
    path.write_text(TRAIN_STEP)
    inputs = random_inputs(SequentialExecutor(context.parse_module(TRAIN_STEP, context.make_context()),
                                              jax.devices()[0]).signature, seed=5)
    np.savez(tmp_path / "in.npz", **{f"arg{i}": x for i, x in enumerate(inputs)})
    rc = alpa_run_main([str(path), "--executor", "sequential", "--inputs", str(tmp_path / "in.npz"),
                        "--reference", "--outputs", str(tmp_path / "out.npz")])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[:4] == [f"module: {path} (mpmd)", "topology: stage0 x=2", "topology: stage1 x=2",
                         "executor: sequential (1 device)"]
    assert "fragments: 9 (8 compiled), microbatch calls: 2" in lines
    assert lines[-1] == "reference check: PASS (3 outputs match)"
    with np.load(tmp_path / "out.npz") as saved:
        for i, want in enumerate(train_step_numpy(*inputs)):
            np.testing.assert_allclose(saved[f"out{i}"], want, rtol=1e-5, atol=1e-6)


def test_alpa_run_pipeline_on_an_mpmd_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "step.mlir"
    path.write_text(TRAIN_STEP)
    inputs = random_inputs(SequentialExecutor(context.parse_module(TRAIN_STEP, context.make_context()),
                                              jax.devices()[0]).signature, seed=5)
    np.savez(tmp_path / "in.npz", **{f"arg{i}": x for i, x in enumerate(inputs)})
    rc = alpa_run_main([str(path), "--inputs", str(tmp_path / "in.npz"), "--schedule", "gpipe",
                        "--outputs", str(tmp_path / "out.npz")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "executor: pipeline (gpipe, 2 stages, 2 microbatches" in out
    with np.load(tmp_path / "out.npz") as saved:
        for i, want in enumerate(train_step_numpy(*inputs)):
            np.testing.assert_allclose(saved[f"out{i}"], want, rtol=1e-5, atol=1e-6)


def test_alpa_run_refuses_spmd_flags_on_mpmd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "step.mlir"
    path.write_text(TRAIN_STEP)
    assert alpa_run_main([str(path), "--collectives"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"alpa-run: error: --collectives applies to plain and SPMD modules; {path} "
                          "is an MPMD module"), err
