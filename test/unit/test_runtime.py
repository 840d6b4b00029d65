"""alpa_mlir.runtime: devices, compiling and running plain and SPMD modules, reference
comparison, collective counts, npz inputs. Runs on 8 fake CPU devices (conftest.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.mlir import ir
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alpa_mlir.dialect_utils import context, shardy
from alpa_mlir.dialect_utils.diagnostics import DiagnosticError
from alpa_mlir.runtime import collectives, devices, hlo_sharding, inputs, reference, spmd
from alpa_mlir.runtime.collectives import CollectiveKind
from alpa_mlir.runtime.errors import (
    DeviceCountError,
    InputMismatchError,
    UnsupportedModuleError,
)
from alpa_mlir.runtime.module_kind import ModuleKind, module_kind
from alpa_mlir.runtime.signature import read_signature

F32 = jnp.float32

MATMUL_CONTRACTING_X = """
module @jit_f attributes {mhlo.num_partitions = 8 : i32, mhlo.num_replicas = 1 : i32} {
  sdy.mesh @mesh = <["x"=2, "y"=4]>
  func.func public @main(%arg0: tensor<8x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x"}]>},
                         %arg1: tensor<16x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>})
      -> (tensor<8x4xf32>) {
    %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
    return %0 : tensor<8x4xf32>
  }
}
"""

# arg0 is donated (tf.aliasing_output) and unannotated; the mesh lists its devices reversed.
DONATED_REVERSED_MESH = """
module @m attributes {mhlo.num_partitions = 8 : i32, mhlo.num_replicas = 1 : i32} {
  sdy.mesh @mesh = <["x"=2, "y"=4], device_ids=[7, 6, 5, 4, 3, 2, 1, 0]>
  func.func public @main(%arg0: tensor<16x4xf32> {tf.aliasing_output = 1 : i32},
                         %arg1: tensor<8x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {"y"}]>})
      -> (tensor<8x4xf32>, tensor<16x4xf32>) {
    %0 = stablehlo.dot_general %arg1, %arg0, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
    %1 = stablehlo.add %arg0, %arg0 : tensor<16x4xf32>
    return %0, %1 : tensor<8x4xf32>, tensor<16x4xf32>
  }
}
"""

PLAIN = """
func.func @main(%a: tensor<2x3xf32>, %b: tensor<3xi32>, %c: tensor<i1>) -> (tensor<2x3xf32>, tensor<3xi32>, tensor<i1>) {
  %0 = stablehlo.add %a, %a : tensor<2x3xf32>
  %1 = stablehlo.multiply %b, %b : tensor<3xi32>
  %2 = stablehlo.not %c : tensor<i1>
  return %0, %1, %2 : tensor<2x3xf32>, tensor<3xi32>, tensor<i1>
}
"""

MPMD = """
!m1_t = !mpmd.mesh_tensor<"m1", tensor<4x8xf32>>
func.func @main(%arg0: !m1_t) -> !m1_t attributes {
    topology = #mpmd.topology<<"m1": <["x"=2]>>, <"m2": <["x"=2]>>>} {
  %0 = mpmd.fragment<mesh="m1", origin=["f1"]> (%arg0) (%a: tensor<4x8xf32>) {
    %1 = stablehlo.add %a, %a : tensor<4x8xf32>
    mpmd.return %1 : tensor<4x8xf32>
  } : (!m1_t) -> !m1_t
  return %0 : !m1_t
}
"""


@pytest.fixture(scope="module")
def ctx() -> ir.Context:
    return context.make_context()


@pytest.fixture(scope="module")
def devs() -> tuple[jax.Device, ...]:
    return devices.ensure_local_devices(8)


def parse(text: str, ctx: ir.Context) -> ir.Module:
    return context.parse_module(text, ctx)


def export(fn: Callable[..., Any], specs: Sequence[tuple[tuple[int, ...], P]],
           ctx: ir.Context, donate: tuple[int, ...] = ()) -> ir.Module:
    """`fn` jitted with `in_shardings` on a 2x4 ("x", "y") mesh, as a parsed module."""
    mesh = jax.make_mesh((2, 4), ("x", "y"))
    shardings = tuple(NamedSharding(mesh, spec) for _, spec in specs)
    args = [jax.ShapeDtypeStruct(shape, F32) for shape, _ in specs]
    text = jax.jit(fn, in_shardings=shardings, donate_argnums=donate).lower(*args).as_text()
    return parse(text, ctx)


def mlp_step(w1: jax.Array, w2: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, ...]:
    def loss(w1: jax.Array, w2: jax.Array) -> jax.Array:
        return jnp.mean((jnp.tanh(x @ w1) @ w2 - y) ** 2)

    value, (g1, g2) = jax.value_and_grad(loss, argnums=(0, 1))(w1, w2)
    return w1 - 0.1 * g1, w2 - 0.1 * g2, value


MLP_SHAPES = ((16, 32), (32, 8), (64, 16), (64, 8))


@pytest.fixture(scope="module")
def mlp_data_parallel(ctx: ir.Context) -> ir.Module:
    specs = [P(), P(), P(("x", "y")), P(("x", "y"))]
    return export(mlp_step, list(zip(MLP_SHAPES, specs, strict=True)), ctx, donate=(0, 1))


def run_against_reference(module: ir.Module, devs: Sequence[jax.Device], seed: int = 0
                          ) -> tuple[spmd.Program, reference.ReferenceReport]:
    program = spmd.compile_program(module, devs, spmd.CompileSettings(count_collectives=True))
    args = inputs.random_inputs(program.signature, seed)
    actual = program.run(args)
    expected = reference.compile_reference(module, devs[0]).run(args)
    return program, reference.compare_outputs(actual, expected)


# ----------------------------------------------------------------------------- devices


def test_xla_flags_device_count() -> None:
    assert devices.xla_flags_cpu_device_count("--xla_force_host_platform_device_count=8") == 8
    assert devices.xla_flags_cpu_device_count("--foo --xla_force_host_platform_device_count=2") == 2
    assert devices.xla_flags_cpu_device_count("--foo") is None


def test_more_devices_than_available_says_how(devs: tuple[jax.Device, ...]) -> None:
    with pytest.raises(DeviceCountError, match=r"64 devices requested but only 8 .*XLA_FLAGS"):
        devices.ensure_local_devices(64)


def test_device_mesh_from_sdy_honours_device_ids(devs: tuple[jax.Device, ...]) -> None:
    mesh = shardy.parse_mesh('<["x"=2, "y"=2], device_ids=[3, 2, 1, 0]>')
    dm = devices.DeviceMesh.from_sdy(mesh, devs[:4])
    assert dm.device_ids == (3, 2, 1, 0)
    jm = dm.jax_mesh()
    assert jm.axis_names == ("x", "y") and jm.devices.shape == (2, 2)
    assert jm.devices[0, 0] == devs[3]
    with pytest.raises(ValueError, match="needs 6 devices"):
        devices.DeviceMesh(devs[:4], (2, 3), ("x", "y"))
    with pytest.raises(ValueError, match="appears twice"):
        devices.DeviceMesh((devs[0], devs[0]), (2,), ("x",))


def test_physical_mesh_submesh(devs: tuple[jax.Device, ...]) -> None:
    cluster = devices.PhysicalMesh.from_devices(devs, devices_per_host=4)
    assert (cluster.num_hosts, cluster.devices_per_host) == (2, 4)
    stage = cluster.submesh(slice(0, 2), slice(2, 4))
    assert [d.id for d in stage.flat_devices] == [2, 3, 6, 7]
    logical = stage.logical((2, 2), ("dp", "mp"))
    assert logical.jax_mesh().shape == {"dp": 2, "mp": 2}
    with pytest.raises(ValueError, match="do not split"):
        devices.PhysicalMesh.from_devices(devs, devices_per_host=3)


# ----------------------------------------------------------------------------- module facts


def test_module_kinds(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    assert module_kind(parse(PLAIN, ctx)) is ModuleKind.PLAIN
    assert module_kind(parse(MATMUL_CONTRACTING_X, ctx)) is ModuleKind.SPMD
    assert module_kind(parse(MPMD, ctx)) is ModuleKind.MPMD
    gspmd = parse(
        'module attributes {mhlo.num_partitions = 2 : i32} {\n'
        'func.func @main(%a: tensor<8xf32> {mhlo.sharding = "{devices=[2]<=[2]}"}) -> tensor<8xf32> {\n'
        "  %0 = stablehlo.multiply %a, %a : tensor<8xf32>\n"
        '  %1 = stablehlo.custom_call @Sharding(%0) {mhlo.sharding = "{replicated}"} : (tensor<8xf32>) -> tensor<8xf32>\n'
        "  return %1 : tensor<8xf32>\n}\n}", ctx)
    assert module_kind(gspmd) is ModuleKind.GSPMD
    program = spmd.compile_program(gspmd, devs)  # GSPMD's partitioner, on 2 devices
    assert program.num_partitions == 2
    x = np.arange(8, dtype=np.float32)
    np.testing.assert_array_equal(program.run([x])[0], x * x)


def test_signature_reads_shardings_and_donation(ctx: ir.Context, mlp_data_parallel: ir.Module) -> None:
    sig = read_signature(mlp_data_parallel)
    assert [a.info.shape for a in sig.args] == list(MLP_SHAPES)
    assert sig.donated_args == (0, 1)  # jax.buffer_donor
    assert sig.args[2].sharding is not None and sig.args[2].sharding.dim_axes == (("x", "y"), ())
    donated = read_signature(parse(DONATED_REVERSED_MESH, ctx))
    assert donated.args[0].donated and donated.args[0].aliased_output == 1
    assert not donated.args[1].donated


def test_module_without_main_is_a_diagnostic(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    module = parse("func.func @f(%a: tensor<2xf32>) -> tensor<2xf32> {\n  return %a : tensor<2xf32>\n}", ctx)
    with pytest.raises(DiagnosticError, match=r"no function @main \(found: f\)") as err:
        spmd.compile_program(module, devs)
    assert err.value.diagnostics[0].loc is not None


def test_mpmd_module_is_not_one_spmd_program(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    with pytest.raises(UnsupportedModuleError, match="an MPMD module is not one SPMD program"):
        spmd.compile_program(parse(MPMD, ctx), devs)


# ----------------------------------------------------------------------------- compile and run


def test_contracting_split_gives_one_all_reduce(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    program, report = run_against_reference(parse(MATMUL_CONTRACTING_X, ctx), devs)
    assert report.passed, [c.line() for c in report.comparisons]
    assert program.kind is ModuleKind.SPMD and program.num_partitions == 8
    stats = program.collectives
    assert stats is not None
    assert stats.counts == {**{k: 0 for k in CollectiveKind}, CollectiveKind.ALL_REDUCE: 1}
    (ar,) = stats.collectives
    assert ar.shapes == (("f32", (8, 4)),) and ar.nbytes == 8 * 4 * 4
    assert ar.group_size == 2  # over "x"
    assert stats.scalar_all_reduces == 0


def test_data_parallel_mlp_step(mlp_data_parallel: ir.Module, devs: tuple[jax.Device, ...]) -> None:
    program, report = run_against_reference(mlp_data_parallel, devs)
    assert report.passed, [c.line() for c in report.comparisons]
    stats = program.collectives
    assert stats is not None
    # One all-reduce per weight gradient; the loss's scalar all-reduce is ignored.
    assert stats.count(CollectiveKind.ALL_REDUCE) == 2
    assert stats.total == 2 and stats.scalar_all_reduces == 1
    assert stats.nbytes(CollectiveKind.ALL_REDUCE) == (16 * 32 + 32 * 8) * 4
    assert all(c.group_size == 8 for c in stats.collectives)
    cost = program.cost()
    memory = program.memory()
    assert cost.flops > 0 and cost.bytes_accessed > 0
    assert memory.argument_bytes > 0 and memory.alias_bytes > 0  # the donated weights


def test_model_parallel_mlp_step(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    specs = [P(None, "y"), P("y", None), P("x"), P("x")]
    module = export(mlp_step, list(zip(MLP_SHAPES, specs, strict=True)), ctx)
    program, report = run_against_reference(module, devs, seed=3)
    assert report.passed, [c.line() for c in report.comparisons]
    assert program.collectives is not None and program.collectives.count(CollectiveKind.ALL_REDUCE) >= 2


def _auto_mesh_sharding(*spec: Any) -> NamedSharding:
    auto = (jax.sharding.AxisType.Auto,) * 2
    return NamedSharding(jax.make_mesh((2, 4), ("x", "y"), axis_types=auto), P(*spec))


@pytest.mark.parametrize(
    ("fn", "in_spec", "out_spec", "kind", "shape", "group_size"),
    [
        # a row-sharded value returned replicated: one all-gather over "x"
        (lambda a: a * 2, ("x", None), (), CollectiveKind.ALL_GATHER, (16, 16), 2),
        # rows over "y" constrained to columns over "y": one all-to-all
        (lambda a: jax.lax.with_sharding_constraint(a * 2, _auto_mesh_sharding(None, "y")),
         ("y", None), None, CollectiveKind.ALL_TO_ALL, (4, 4, 4), 4),
        # a roll along the sharded dimension: the halo moves by collective-permute
        (lambda a: jnp.roll(a, 1, axis=0), ("x", None), None, CollectiveKind.COLLECTIVE_PERMUTE,
         (1, 16), None),
    ],
    ids=["all-gather", "all-to-all", "collective-permute"],
)
def test_collective_kinds_from_jax(fn: Callable[[jax.Array], jax.Array], in_spec: tuple[Any, ...],
                                   out_spec: tuple[Any, ...] | None, kind: CollectiveKind,
                                   shape: tuple[int, ...], group_size: int | None,
                                   ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    out = None if out_spec is None else _auto_mesh_sharding(*out_spec)
    text = jax.jit(fn, in_shardings=_auto_mesh_sharding(*in_spec), out_shardings=out).lower(
        jax.ShapeDtypeStruct((16, 16), F32)).as_text()
    program, report = run_against_reference(parse(text, ctx), devs)
    assert report.passed
    stats = program.collectives
    assert stats is not None and stats.total == 1 and stats.count(kind) == 1
    (collective,) = stats.collectives
    assert collective.shapes == (("f32", shape),) and collective.group_size == group_size


def test_unannotated_argument_and_device_ids(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    module = parse(DONATED_REVERSED_MESH, ctx)
    program, report = run_against_reference(module, devs)
    assert report.passed, [c.line() for c in report.comparisons]
    assert program.mesh.device_ids == (7, 6, 5, 4, 3, 2, 1, 0)
    assert program.input_descriptions[0].startswith("no sdy.sharding")
    assert program.input_descriptions[1] == '[{"x"}, {"y"}]'


def test_declared_sharding_xla_did_not_keep(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    # 7 rows do not split over "x": XLA compiles the argument replicated, and the runtime
    # places it the way the executable expects.
    module = parse("""
    module {
      sdy.mesh @mesh = <["x"=2, "y"=4]>
      func.func @main(%arg0: tensor<7x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}) -> tensor<7x4xf32> {
        %0 = stablehlo.negate %arg0 : tensor<7x4xf32>
        return %0 : tensor<7x4xf32>
      }
    }""", ctx)
    program, report = run_against_reference(module, devs)
    assert report.passed
    assert program.input_descriptions == ('[{"x"}, {}], compiled by XLA as replicated',)


def test_donated_inputs_are_consumed_and_runs_repeat(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    program = spmd.compile_program(parse(DONATED_REVERSED_MESH, ctx), devs)
    args = inputs.random_inputs(program.signature, seed=1)
    first = program.run(args)
    second = program.run(args)  # fresh buffers from the same numpy inputs
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(first[1], 2 * args[0], rtol=0, atol=0)
    placed = program.place(args)
    program.execute(placed)
    assert placed[0].is_deleted() and not placed[1].is_deleted()
    with pytest.raises(InputMismatchError, match=r"argument 0 \(arg0\).*donated"):
        program.execute(placed)
    timed = program.run_timed(args, repeat=3)
    assert len(timed.seconds) == 3 and timed.mean_seconds > 0
    np.testing.assert_array_equal(timed.outputs[0], first[0])


def test_plain_module_runs_on_one_device(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    module = parse(PLAIN, ctx)
    program = spmd.compile_program(module, devs, spmd.CompileSettings(count_collectives=True))
    assert program.kind is ModuleKind.PLAIN and program.mesh.size == 1
    assert program.collectives == collectives.CollectiveStats()
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, 2, 3], dtype=np.int32)
    out = program.run([a, b, np.array(True)])
    np.testing.assert_array_equal(out[0], 2 * a)
    np.testing.assert_array_equal(out[1], b * b)
    assert out[2].dtype == np.bool_ and not out[2]


def test_input_validation(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    program = spmd.compile_program(parse(MATMUL_CONTRACTING_X, ctx), devs)
    good = inputs.random_inputs(program.signature)
    with pytest.raises(InputMismatchError, match=r"takes 2 argument\(s\), got 1 input"):
        program.run(good[:1])
    with pytest.raises(InputMismatchError, match=r"argument 1 \(arg1\): expected f32\[16,4\].*got float32 \(16, 5\)"):
        program.run([good[0], np.zeros((16, 5), np.float32)])
    with pytest.raises(InputMismatchError, match=r"argument 0 \(arg0\): expected f32\[8,16\].*got float64"):
        program.run([good[0].astype(np.float64), good[1]])


def test_mesh_larger_than_devices(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    with pytest.raises(DeviceCountError, match=r"mesh @mesh .* needs 8 devices, got 4"):
        spmd.compile_program(parse(MATMUL_CONTRACTING_X, ctx), devs[:4])


def test_program_cache_compiles_once(ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    cache = spmd.ProgramCache()
    first = cache.compile(parse(PLAIN, ctx), devs[:1])
    assert cache.compile(parse(PLAIN, ctx), devs[:1]) is first
    assert cache.compile(parse(PLAIN, ctx), devs[1:2]) is not first


# ----------------------------------------------------------------------------- compiled shardings


@dataclass(frozen=True)
class FakeOpSharding:
    """The attributes of jaxlib's OpSharding that `hlo_sharding` reads."""

    tile_assignment_dimensions: list[int]
    iota_reshape_dims: list[int] = field(default_factory=list)
    iota_transpose_perm: list[int] = field(default_factory=list)
    tile_assignment_devices: list[int] = field(default_factory=list)
    replicate_on_last_tile_dim: bool = False
    last_tile_dims: list[Any] = field(default_factory=list)
    type: str = "OpSharding_Type.OTHER"


@pytest.mark.parametrize(
    ("op", "shape"),
    [
        (FakeOpSharding([2, 4], [8], [0]), (4, 8)),
        (FakeOpSharding([4, 2], [2, 4], [1, 0]), (8, 4)),
        (FakeOpSharding([2, 1, 4], [8], [0], replicate_on_last_tile_dim=True), (4, 6)),
        (FakeOpSharding([4, 1, 2], [2, 4], [1, 0], replicate_on_last_tile_dim=True), (8, 3)),
        (FakeOpSharding([1, 8], [8], [0]), (3, 16)),
        (FakeOpSharding([2, 2, 2], [2, 2, 2], [2, 0, 1]), (2, 4, 6)),
        (FakeOpSharding([8], tile_assignment_devices=list(range(8))), (16,)),
    ],
)
def test_compiled_sharding_as_named_sharding(op: FakeOpSharding, shape: tuple[int, ...],
                                             devs: tuple[jax.Device, ...]) -> None:
    rank = len(shape)
    named = hlo_sharding.named_sharding(op, rank, devs, "argument 0")
    tiles = hlo_sharding.tile_assignment(op)
    indices = named.devices_indices_map(shape)
    for p, device in enumerate(devs):
        coords = np.argwhere(tiles == p)[0]
        for j in range(rank):
            chunk = shape[j] // tiles.shape[j]
            start, stop, _ = indices[device][j].indices(shape[j])
            assert (start, stop) == (coords[j] * chunk, (coords[j] + 1) * chunk), (p, j)
    assert list(named.mesh.devices.flat) == list(devs)  # the executable's device order


def test_compiled_sharding_without_iota_order_is_refused(devs: tuple[jax.Device, ...]) -> None:
    op = FakeOpSharding([2, 4], tile_assignment_devices=[7, 6, 5, 4, 3, 2, 1, 0])
    with pytest.raises(UnsupportedModuleError, match="cannot be expressed"):
        hlo_sharding.named_sharding(op, 2, devs, "argument 3")
    maximal = FakeOpSharding([], type="OpSharding_Type.MAXIMAL")
    with pytest.raises(UnsupportedModuleError, match="argument 3: compiled sharding of type MAXIMAL"):
        hlo_sharding.named_sharding(maximal, 2, devs, "argument 3")


# ----------------------------------------------------------------------------- collectives


HLO_TEXT = """
ENTRY %main.0_spmd (param: f32[8,8]) -> f32[8,4] {
  %all-reduce = f32[32,8]{1,0} all-reduce(%dot.11), channel_id=1, replica_groups=[2,4]<=[8], to_apply=%add
  %all-reduce.1 = f32[8,16]{1,0} all-reduce(%dot.13), channel_id=2, replica_groups={{0,4},{1,5},{2,6},{3,7}}, to_apply=%add
  %all-reduce.3 = f32[] all-reduce(%reduce.6), channel_id=4, replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_0'}, to_apply=%add
  %tuple-ar = (bf16[4,2]{1,0}, f32[]) all-reduce(%a, %b), channel_id=5, replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_0','axis_1'}, to_apply=%add
  %all-gather = f32[8,16]{1,0} all-gather(%p), channel_id=6, replica_groups=[4,2]<=[2,4]T(1,0), dimensions={0}
  %reduce-scatter.2 = s32[2,16]{1,0} reduce-scatter(%q), channel_id=7, replica_groups=[2,4]<=[8], dimensions={0}, to_apply=%add
  %all-to-all = pred[4,4]{1,0} all-to-all(%r), channel_id=8, replica_groups={{0,1,2,3},{4,5,6,7}}, dimensions={1}
  %all-to-all.1 = f32[4,4,4]{2,1,0} all-to-all(%t), channel_id=10, replica_groups=mesh['axis_0'=1,'axis_1'=4,'axis_2'=2], device_ids=([2,4]T(1,0)) {'axis_1'}, dimensions={1}
  ROOT %collective-permute = f32[8,4]{1,0} collective-permute(%s), channel_id=9, source_target_pairs={{0,1},{1,0}}
  %not-a-collective = f32[8,4]{1,0} add(%all-reduce, %all-gather)
}
"""


def test_parse_hlo_collectives() -> None:
    stats = collectives.parse_hlo_collectives(HLO_TEXT)
    assert stats.counts == {
        CollectiveKind.ALL_REDUCE: 3,  # the tuple's non-scalar element counts once
        CollectiveKind.ALL_GATHER: 1,
        CollectiveKind.REDUCE_SCATTER: 1,
        CollectiveKind.ALL_TO_ALL: 2,
        CollectiveKind.COLLECTIVE_PERMUTE: 1,
    }
    assert stats.scalar_all_reduces == 2
    assert stats.nbytes(CollectiveKind.ALL_REDUCE) == 32 * 8 * 4 + 8 * 16 * 4 + 4 * 2 * 2
    assert stats.nbytes(CollectiveKind.REDUCE_SCATTER) == 2 * 16 * 4
    assert stats.nbytes(CollectiveKind.ALL_TO_ALL) == 16 + 4 * 4 * 4 * 4
    sizes = {c.name: c.group_size for c in stats.collectives}
    assert sizes == {"all-reduce": 4, "all-reduce.1": 2, "tuple-ar": 8, "all-gather": 2,
                     "reduce-scatter.2": 4, "all-to-all": 4, "all-to-all.1": 4, "collective-permute": None}
    assert "all-reduce=3" in stats.summary() and "scalar all-reduces ignored: 2" in stats.summary()


def test_dump_without_partitioning_has_no_collectives(tmp_path: Path) -> None:
    assert collectives.read_dump(tmp_path) == collectives.CollectiveStats()


# ----------------------------------------------------------------------------- reference rule


def test_compare_output_tolerances() -> None:
    e = np.array([1.0, 0.0, np.nan, np.inf], np.float32)
    close = reference.compare_output(0, e + np.float32(1e-6) * np.array([1, 1, 0, 0], np.float32), e)
    assert close.ok and close.max_abs_err == pytest.approx(1e-6, rel=1e-2)
    assert "ok" in close.line() and close.line().startswith("out0: [4] float32")
    far = reference.compare_output(1, e + np.array([1e-3, 0, 0, 0], np.float32), e)
    assert not far.ok and "MISMATCH (2 NaN/Inf in the reference)" in far.line()
    assert close.nonfinite == 2
    assert reference.compare_output(1, e + np.array([1e-3, 0, 0, 0], np.float32), e,
                                    reference.Tolerance(rtol=1e-2)).ok
    nan = reference.compare_output(2, np.array([1.0, 0.0, 1.0, np.inf], np.float32), e)
    assert not nan.ok and "NaN/Inf" in nan.note
    ints = np.array([1, 2, 3], np.int32)
    assert reference.compare_output(3, ints, ints).ok
    assert not reference.compare_output(3, ints + 1, ints, reference.Tolerance(rtol=1.0, atol=1.0)).ok
    shape = reference.compare_output(4, ints[:2], ints)
    assert not shape.ok and "got int32 (2,)" in shape.note
    report = reference.compare_outputs([ints, ints + 1], [ints, ints])
    assert report.summary_line() == "reference check: FAIL (1 of 2 outputs mismatch: out1)"
    assert reference.compare_outputs([ints], [ints]).summary_line() == "reference check: PASS (1 output match)"


def test_reference_module_strips_shardings(ctx: ir.Context) -> None:
    module = parse(MATMUL_CONTRACTING_X, ctx)
    stripped = reference.reference_module(module)
    assert "sdy." not in context.print_module(stripped)
    assert "sdy.sharding" in context.print_module(module)  # the original is untouched


# ----------------------------------------------------------------------------- inputs and npz


def test_random_inputs_are_seeded_and_in_range(ctx: ir.Context) -> None:
    sig = read_signature(parse(PLAIN, ctx))
    a = inputs.random_inputs(sig, seed=5)
    b = inputs.random_inputs(sig, seed=5)
    c = inputs.random_inputs(sig, seed=6)
    assert [x.dtype for x in a] == [np.float32, np.int32, np.bool_]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert np.abs(a[0]).max() < 1.0 and set(np.unique(a[1])) <= {0, 1}


def test_npz_round_trip_and_key_errors(ctx: ir.Context, tmp_path: Path) -> None:
    sig = read_signature(parse(PLAIN, ctx))
    args = inputs.random_inputs(sig, seed=2)
    path = tmp_path / "in.npz"
    inputs.save_inputs(path, args)
    for x, y in zip(inputs.load_inputs(path, sig), args, strict=True):
        np.testing.assert_array_equal(x, y)
    np.savez(tmp_path / "missing.npz", arg0=args[0], arg2=args[2])
    with pytest.raises(InputMismatchError, match=r"missing key arg1 \(expected i32\[3\]\)"):
        inputs.load_inputs(tmp_path / "missing.npz", sig)
    np.savez(tmp_path / "extra.npz", arg0=args[0], arg1=args[1], arg2=args[2], arg7=args[0])
    with pytest.raises(InputMismatchError, match="unexpected key arg7; @main takes 3 argument"):
        inputs.load_inputs(tmp_path / "extra.npz", sig)
    np.savez(tmp_path / "shape.npz", arg0=args[0].T, arg1=args[1], arg2=args[2])
    with pytest.raises(InputMismatchError, match=r"key arg0: expected f32\[2,3\].*got float32 \(3, 2\)"):
        inputs.load_inputs(tmp_path / "shape.npz", sig)
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(InputMismatchError, match="not a readable npz"):
        inputs.load_inputs(tmp_path / "bad.npz", sig)
    with pytest.raises(InputMismatchError, match="no such file"):
        inputs.load_inputs(tmp_path / "absent.npz", sig)
    out = tmp_path / "out"  # no .npz suffix: written exactly there
    inputs.save_outputs(out, args)
    assert sorted(inputs.load_npz(out)) == ["out0", "out1", "out2"]


def test_bfloat16_inputs_round_trip(ctx: ir.Context, tmp_path: Path) -> None:
    module = parse("func.func @main(%a: tensor<4xbf16>) -> tensor<4xbf16> {\n"
                   "  %0 = stablehlo.add %a, %a : tensor<4xbf16>\n  return %0 : tensor<4xbf16>\n}", ctx)
    sig = read_signature(module)
    args = inputs.random_inputs(sig, seed=0)
    assert args[0].dtype.name == "bfloat16"
    inputs.save_inputs(tmp_path / "in.npz", args)
    loaded = inputs.load_inputs(tmp_path / "in.npz", sig)
    assert loaded[0].dtype == args[0].dtype and math.isclose(float(loaded[0][0]), float(args[0][0]))
