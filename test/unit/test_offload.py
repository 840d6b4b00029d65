"""pipeshard.offload and the runtime's memory-kind moves: stashed activations go to
pinned host memory after the forward fragment and come back before the backward.

- GPT tiny in two stages: the rewrite (transfers with the right types, no backward
  fragment reading a layer-0 forward value directly), and the rewritten program run by
  the pipeline runtime and the sequential executor against the original step.
- A hand-written one-stage program: which results belong to which layer (through
  sharding constraints, block arguments returned as is), the arrays really in
  pinned_host memory between forward and backward and the device copies released,
  alpa-run on it.
- The errors: transfers that change the memory kind and something else, fragments
  reading host memory, devices without the memory kind.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import mpmd
from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.diagnostics import DiagnosticError
from alpa_mlir.dialect_utils.graph import functions
from alpa_mlir.dialect_utils.mpmd import MemoryKind
from alpa_mlir.models.export import example_inputs, export_train_step
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.passes.pipeshard.offload import offload_activations
from alpa_mlir.runtime import memory_kinds, mpmd_reference, pipeline
from alpa_mlir.runtime.errors import ExecutionError
from alpa_mlir.runtime.mpmd_reference import SequentialExecutor
from alpa_mlir.runtime.pipeline import PipelineExecutable
from alpa_mlir.runtime.pipeline_program import Move, read_program
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference
from alpa_mlir.tools.alpa_run import main as alpa_run

PIPESHARD = ("builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2 stages=manual "
             "layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,1x4})")
HOST = MemoryKind.PINNED_HOST.value

# One stage on 2 devices. Forward results: %a (an argument returned as is, first read
# through a constraint by the layer-1 tanh), %b (an argument no op reads), %k (the
# constrained layer-0 sine), %t (the layer-1 tanh). The backward reads all four.
TINY = """!t = !mpmd.mesh_tensor<"m", tensor<4x8xf32>, sharding=<@m, [{"x"}, {}]>>
module {
  sdy.mesh @m = <["x"=2]>
  func.func @main(%x: !t, %y: !t) -> !t attributes {topology = #mpmd.topology<<"m": <["x"=2]>>>} {
    %f:4 = mpmd.fragment<mesh="m", origin=["layer0"], stage=0> (%x, %y) {alpa.kind = "forward"}
        (%a: tensor<4x8xf32>, %b: tensor<4x8xf32>) {
      %c = sdy.sharding_constraint %a <@m, [{"x"}, {}]> : tensor<4x8xf32>
      %t = stablehlo.tanh %c {alpa.layer = 1 : i64} : tensor<4x8xf32>
      %s = stablehlo.sine %t {alpa.layer = 0 : i64} : tensor<4x8xf32>
      %k = sdy.sharding_constraint %s <@m, [{"x"}, {}]> : tensor<4x8xf32>
      mpmd.return %a, %b, %k, %t : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
    } : (!t, !t) -> (!t, !t, !t, !t)
    %g = mpmd.fragment<mesh="m", origin=["layer0"(1)], stage=0> (%f#0, %f#1, %f#2, %f#3) {alpa.kind = "backward"}
        (%a: tensor<4x8xf32>, %b: tensor<4x8xf32>, %c: tensor<4x8xf32>, %d: tensor<4x8xf32>) {
      %0 = stablehlo.multiply %a, %b : tensor<4x8xf32>
      %1 = stablehlo.add %0, %c : tensor<4x8xf32>
      %2 = stablehlo.subtract %1, %d : tensor<4x8xf32>
      mpmd.return %2 : tensor<4x8xf32>
    } : (!t, !t, !t, !t) -> !t
    return %g : !t
  }
}
"""


# ----------------------------------------------------------------------------- helpers


@functools.cache
def exported() -> str:
    return export_train_step("gpt", "tiny", debug_info=False)


@functools.cache
def planned() -> str:
    ctx = make_context()
    module = parse_module(exported(), ctx)
    PassManager.parse(PIPESHARD, ctx).run(module)
    return print_module(module)


@functools.cache
def offloaded(layers: tuple[int, ...]) -> tuple[str, int]:
    module = parse_module(planned(), make_context())
    count = offload_activations(module, set(layers))
    return print_module(module), count


@functools.cache
def reference_outputs() -> list[np.ndarray]:
    inputs = example_inputs("gpt", "tiny", seed=0)
    return compile_reference(parse_module(exported(), make_context()), jax.devices()[0]).run(inputs)


def tiny_inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((4, 8)).astype(np.float32) for _ in range(2)]


def tiny_expected(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return x * y + np.sin(np.tanh(x)) - np.tanh(x)


def _owner(v: ir.Value) -> ir.Operation | None:
    return v.owner.operation if isinstance(v, ir.OpResult) else None


def _made_by(v: ir.Value, op: ir.Operation) -> bool:
    owner = _owner(v)
    return owner is not None and owner == op


def _is_fragment(op: ir.Operation | None, kind: str, mesh: str | None = None) -> bool:
    return (op is not None and op.name == mpmd.FRAGMENT and mpmd.fragment_kind(op) == kind
            and (mesh is None or mpmd.fragment_mesh(op) == mesh))


def _memory_transfers(func_op: ir.Operation, kind: MemoryKind) -> list[ir.Operation]:
    """The transfers of `func_op` into memory `kind` that change the memory kind."""
    return [op for op in mpmd.top_level_ops(func_op) if op.name == mpmd.TRANSFER
            and mpmd.memory_kind_of(op.results[0].type) is kind
            and mpmd.memory_kind_of(op.operands[0].type) is not kind]


# ----------------------------------------------------------------------------- the rewrite


def test_gpt_layer0_stash_goes_through_host_memory() -> None:
    module = parse_module(planned(), make_context())
    micro = functions(module)["microbatch"]
    ops = list(mpmd.top_level_ops(micro))
    forward0 = next(op for op in ops if _is_fragment(op, "forward", "stage0"))
    backward0 = next(op for op in ops if _is_fragment(op, "backward", "stage0"))
    stashed = {v for v in backward0.operands if _made_by(v, forward0)}  # every op there is layer 0

    count = offload_activations(module, {0})

    assert count == len(stashed) > 0
    module.operation.verify()
    offloads = _memory_transfers(micro, MemoryKind.PINNED_HOST)
    reloads = _memory_transfers(micro, MemoryKind.DEVICE)
    assert len(offloads) == len(reloads) == count
    ops = list(mpmd.top_level_ops(micro))
    start = ops.index(forward0) + 1
    assert ops[start:start + count] == offloads  # right after the forward fragment
    for op in offloads:
        src = mpmd.parse_mesh_tensor(op.operands[0].type)
        assert mpmd.parse_mesh_tensor(op.results[0].type) == dataclasses.replace(src, memory_kind=MemoryKind.PINNED_HOST)
        assert src.mesh == "stage0" and src.sharding is not None
        assert _made_by(op.operands[0], forward0)
    backward_at = ops.index(backward0)
    assert ops[backward_at - count:backward_at] == reloads  # right before the backward fragment
    for op in reloads:
        assert _owner(op.operands[0]) in offloads
        assert op.results[0].type == _owner(op.operands[0]).operands[0].type  # type: ignore[union-attr]
        assert [use.owner.operation for use in op.results[0].uses] == [backward0]
    # no backward fragment reads a forward value of layer 0 directly; layer 1's stay direct
    for op in ops:
        if _is_fragment(op, "backward"):
            assert not any(_made_by(v, forward0) for v in op.operands)
    forward1 = next(op for op in ops if _is_fragment(op, "forward", "stage1"))
    backward1 = next(op for op in ops if _is_fragment(op, "backward", "stage1"))
    assert any(_made_by(v, forward1) for v in backward1.operands)
    # the runtime schedules the way out with the forward, the way back with the backward
    moves = [ins for ins in read_program(module).instructions if isinstance(ins, Move) and ins.memory_kind]
    assert len(moves) == 2 * count * 2  # there and back, two microbatches
    assert {m.unit.kind for m in moves if m.memory_kind is MemoryKind.PINNED_HOST} == {"forward"}
    assert {m.unit.kind for m in moves if m.memory_kind is MemoryKind.DEVICE} == {"backward"}


def test_layers_without_stash_change_nothing() -> None:
    module = parse_module(planned(), make_context())
    before = print_module(module)
    assert offload_activations(module, set()) == 0
    assert offload_activations(module, {7}) == 0
    assert print_module(module) == before


@pytest.mark.parametrize(("layers", "count"), [((0,), 1), ((1,), 2), ((0, 1), 3), ((2,), 0)])
def test_layer_of_a_returned_value(layers: tuple[int, ...], count: int) -> None:
    """%k is layer 0 through its constraint; %a an argument whose first reader (through
    a constraint) is layer 1; %t layer 1; %b is read by no op and never offloaded."""
    module = parse_module(TINY, make_context())
    assert offload_activations(module, set(layers)) == count
    module.operation.verify()
    main = functions(module)["main"]
    backward = next(op for op in mpmd.top_level_ops(main) if _is_fragment(op, "backward"))
    direct = [i for i, v in enumerate(backward.operands) if _is_fragment(_owner(v), "forward")]
    offloaded_positions = {(0,): {2}, (1,): {0, 3}, (0, 1): {0, 2, 3}, (2,): set()}[layers]
    assert set(range(4)) - set(direct) == offloaded_positions


# ----------------------------------------------------------------------------- running it


@pytest.fixture(scope="module")
def fragment_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled fragments shared by the pipelined runs (offloading changes no fragment)."""
    return tmp_path_factory.mktemp("fragments")


@pytest.mark.parametrize("layers", [(0,), (0, 1)])
def test_offloaded_gpt_equals_the_original_step(layers: tuple[int, ...], fragment_cache: Path) -> None:
    text, count = offloaded(layers)
    inputs = example_inputs("gpt", "tiny", seed=0)
    want = reference_outputs()
    sequential = SequentialExecutor(parse_module(text, make_context()), jax.devices()[0]).run(inputs)
    result = compare_outputs(sequential, want, Tolerance())
    assert result.passed, result.summary_line()
    exe = PipelineExecutable(parse_module(text, make_context()), jax.devices()[:8], cache_dir=fragment_cache)
    pipelined = exe.run(inputs)
    result = compare_outputs(pipelined, want, Tolerance())
    assert result.passed, result.summary_line()
    assert exe.last.memory_moves == 2 * count * 2  # there and back, two microbatches
    assert exe.last.peak_host_bytes > 0


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[dict[str, Any]]:
    """Record every `in_memory` call `module` makes: its arrays, kinds and results, and
    which arrays of earlier calls were deleted when it was made."""
    calls: list[dict[str, Any]] = []
    real = memory_kinds.in_memory

    def spy(arrays: Sequence[jax.Array], kinds: Sequence[MemoryKind]) -> list[jax.Array]:
        deleted = [[a.is_deleted() for a in c["arrays"]] for c in calls]
        live = [not a.is_deleted() for a in arrays]
        out = real(arrays, kinds)
        shard_kinds = [{s.data.sharding.memory_kind for s in a.addressable_shards} for a in out]
        calls.append({"arrays": list(arrays), "kinds": list(kinds), "out": out, "shard_kinds": shard_kinds,
                      "earlier_deleted": deleted, "live": live})
        return out

    monkeypatch.setattr(module, "in_memory", spy)
    return calls


def test_offloaded_arrays_live_in_host_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    module = parse_module(TINY, make_context())
    offload_activations(module, {0, 1})
    calls = _spy(monkeypatch, pipeline)
    exe = PipelineExecutable(module, jax.devices()[:2])
    inputs = tiny_inputs()
    np.testing.assert_allclose(exe.run(inputs)[0], tiny_expected(*inputs), rtol=1e-6, atol=1e-6)
    assert [c["kinds"] for c in calls] == [[MemoryKind.PINNED_HOST] * 3, [MemoryKind.DEVICE] * 3]
    out, back = calls
    for device_copy, host_copy in zip(out["arrays"], out["out"], strict=True):
        assert host_copy.sharding == device_copy.sharding.with_memory_kind(HOST)  # same sharding
    assert out["shard_kinds"] == [{HOST}] * 3  # every shard, when it was made
    assert back["arrays"] == out["out"] and all(back["live"])  # read back from host memory
    assert back["earlier_deleted"][0] == [True] * 3  # the device copies were released
    assert all(a.sharding.memory_kind == "device" for a in back["out"])
    assert all(a.is_deleted() for a in out["out"])  # host copies freed after their last use
    assert exe.last.memory_moves == 6
    assert exe.last.peak_host_bytes == 3 * 4 * 8 * 4  # three f32[4,8], split over 2 devices


def test_sequential_executor_moves_between_memories(monkeypatch: pytest.MonkeyPatch) -> None:
    module = parse_module(TINY, make_context())
    offload_activations(module, {0, 1})
    calls = _spy(monkeypatch, mpmd_reference)
    inputs = tiny_inputs()
    got = SequentialExecutor(module, jax.devices()[0]).run(inputs)
    np.testing.assert_allclose(got[0], tiny_expected(*inputs), rtol=1e-6, atol=1e-6)
    assert [c["kinds"] for c in calls] == [[MemoryKind.PINNED_HOST]] * 3 + [[MemoryKind.DEVICE]] * 3
    assert all(c["out"][0].sharding.memory_kind == c["kinds"][0].value for c in calls)


def test_shard_by_shard_copy_keeps_the_sharding() -> None:
    """The path taken for arrays over several processes, here on one."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("x", "y"))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
    value = np.arange(32, dtype=np.float32).reshape(4, 8)
    array = jax.device_put(value, sharding)
    host = memory_kinds._shard_by_shard(array, sharding.with_memory_kind(HOST))
    assert host.sharding == sharding.with_memory_kind(HOST)
    assert memory_kinds.host_bytes(host) == 4 * value.nbytes // 2  # 4 shards of half the rows
    back = memory_kinds.in_memory([host], [MemoryKind.DEVICE])[0]
    assert back.sharding == sharding and memory_kinds.host_bytes(back) == 0
    np.testing.assert_array_equal(np.asarray(back), value)


HOST_ARGUMENT = """!d = !mpmd.mesh_tensor<"m", tensor<4x8xf32>, sharding=<@m, [{"x"}, {}]>>
!h = !mpmd.mesh_tensor<"m", tensor<4x8xf32>, sharding=<@m, [{"x"}, {}]>, memory_kind="pinned_host">
module {
  sdy.mesh @m = <["x"=2]>
  func.func @main(%x: !h) -> !d attributes {topology = #mpmd.topology<<"m": <["x"=2]>>>} {
    %0 = mpmd.transfer %x : (!h) -> !d
    %1 = mpmd.fragment<mesh="m", origin=["f"]> (%0) (%a: tensor<4x8xf32>) {
      %2 = stablehlo.negate %a : tensor<4x8xf32>
      mpmd.return %2 : tensor<4x8xf32>
    } : (!d) -> !d
    return %1 : !d
  }
}"""


def test_an_argument_in_host_memory_is_placed_there_and_kept() -> None:
    module = parse_module(HOST_ARGUMENT, make_context())
    x = np.arange(32, dtype=np.float32).reshape(4, 8)
    exe = PipelineExecutable(module, jax.devices()[:2])
    placed = exe.place([x])
    assert placed[0].sharding.memory_kind == HOST
    for _ in range(2):  # the copy back is a new array: freeing it leaves the argument alone
        np.testing.assert_array_equal(np.asarray(exe.step(placed)[0]), -x)
        assert not placed[0].is_deleted()
    np.testing.assert_array_equal(SequentialExecutor(module, jax.devices()[0]).run([x])[0], -x)


@pytest.mark.parametrize("executor", ["pipeline", "sequential"])
def test_alpa_run_offloaded_module(executor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = parse_module(TINY, make_context())
    offload_activations(module, {0, 1})
    path = tmp_path / "offloaded.mlir"
    path.write_text(print_module(module))
    rc = alpa_run([str(path), "--reference", "--executor", executor])
    out = capsys.readouterr().out
    assert rc == 0, out
    if executor == "pipeline":
        assert "offloaded: 6 copies between device and host memory, at most 384 bytes in host memory" in out


# ----------------------------------------------------------------------------- errors


def _two_meshes(transfer: str) -> str:
    return f"""
module {{
  sdy.mesh @a = <["x"=2]>
  sdy.mesh @b = <["x"=2]>
  func.func @main(%x: !mpmd.mesh_tensor<"a", tensor<4xf32>>) -> !mpmd.mesh_tensor<"a", tensor<4xf32>>
      attributes {{topology = #mpmd.topology<<"a": <["x"=2]>>, <"b": <["x"=2]>>>}} {{
    %0 = {transfer}
    return %x : !mpmd.mesh_tensor<"a", tensor<4xf32>>
  }}
}}
"""


@pytest.mark.parametrize("transfer", [
    # to host memory of another mesh
    'mpmd.transfer %x : (!mpmd.mesh_tensor<"a", tensor<4xf32>>) '
    '-> !mpmd.mesh_tensor<"b", tensor<4xf32>, memory_kind="pinned_host">',
    # to host memory in another sharding
    'mpmd.transfer %x : (!mpmd.mesh_tensor<"a", tensor<4xf32>>) '
    '-> !mpmd.mesh_tensor<"a", tensor<4xf32>, sharding=<@a, [{"x"}]>, memory_kind="pinned_host">',
])
def test_a_memory_kind_change_with_anything_else_is_rejected(transfer: str) -> None:
    module = parse_module(_two_meshes(transfer), make_context())
    module.operation.verify()  # jaxlib accepts it; we do not
    with pytest.raises(DiagnosticError, match="same mesh and sharding on both ends") as info:
        mpmd.program_functions(module)
    loc = info.value.diagnostics[0].loc
    assert loc is not None and loc.line == 7  # the transfer
    with pytest.raises(DiagnosticError, match="same mesh and sharding"):
        PipelineExecutable(module, jax.devices()[:4])


def test_host_to_host_transfer_is_rejected() -> None:
    host = '!mpmd.mesh_tensor<"a", tensor<4xf32>, memory_kind="pinned_host">'
    text = _two_meshes(f'mpmd.transfer %x : (!mpmd.mesh_tensor<"a", tensor<4xf32>>) -> {host}\n'
                       f'    %1 = mpmd.transfer %0 : ({host}) -> {host}')
    module = parse_module(text, make_context())
    with pytest.raises(DiagnosticError, match="one of them in device memory"):
        mpmd.program_functions(module)


def test_a_fragment_reading_host_memory_is_rejected() -> None:
    module = parse_module(TINY, make_context())
    offload_activations(module, {0})
    main = functions(module)["main"]
    reload = _memory_transfers(main, MemoryKind.DEVICE)[0]
    reload.results[0].replace_all_uses_with(reload.operands[0])  # the backward reads the host copy
    with pytest.raises(DiagnosticError, match=r'fragment "backward" on m .*operand 2 is in pinned_host memory'):
        mpmd.program_functions(module)


class _Memory:
    def __init__(self, kind: str) -> None:
        self.kind = kind


class _DeviceWithoutHostMemory:
    process_index = 0

    def addressable_memories(self) -> list[_Memory]:
        return [_Memory("device")]

    def __str__(self) -> str:
        return "FakeDevice(0)"


def test_a_device_without_the_memory_kind_is_reported() -> None:
    memory_kinds.check_memories(jax.devices()[:1], [MemoryKind.PINNED_HOST])  # CPU has it
    with pytest.raises(ExecutionError, match=r"device FakeDevice\(0\) has no pinned_host memory \(it has: device\)"):
        memory_kinds.check_memories([_DeviceWithoutHostMemory()], [MemoryKind.PINNED_HOST])  # type: ignore[list-item]


def test_mesh_tensor_memory_kind_text() -> None:
    ctx = make_context()
    with ctx:
        tensor = ir.RankedTensorType.parse("tensor<4x8xf32>")
        on_device = mpmd.mesh_tensor_type("m", tensor, '<@m, [{"x"}, {}]>')
        on_host = mpmd.with_memory_kind(on_device, MemoryKind.PINNED_HOST)
        assert str(on_host) == ('!mpmd.mesh_tensor<"m", tensor<4x8xf32>, sharding=<@m, [{"x"}, {}]>, '
                                'memory_kind="pinned_host">')
        assert mpmd.parse_mesh_tensor(on_host) == mpmd.MeshTensor("m", tensor, '<@m, [{"x"}, {}]>',
                                                                  MemoryKind.PINNED_HOST)
        assert mpmd.with_memory_kind(on_host, MemoryKind.DEVICE) == on_device
        assert mpmd.mesh_tensor_parts(on_host) == mpmd.mesh_tensor_parts(on_device)
        explicit = ir.Type.parse('!mpmd.mesh_tensor<"m", tensor<4x8xf32>, memory_kind="device">')
        assert mpmd.memory_kind_of(explicit) is MemoryKind.DEVICE
        assert mpmd.memory_kind_of(tensor) is MemoryKind.DEVICE
