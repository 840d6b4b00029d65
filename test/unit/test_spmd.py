"""alpa_mlir.runtime.spmd: compiling and running plain and SPMD modules, checked against the
reference. Runs on 8 fake CPU devices (conftest.py)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import (
    DONATED_REVERSED_MESH,
    MATMUL_CONTRACTING_X,
    MLP_SHAPES,
    MPMD,
    PLAIN,
    export,
    mlp_step,
    parse,
    run_against_reference,
)
from jax.extend.mlir import ir
from jax.sharding import PartitionSpec as P

from alpa_mlir.dialect_utils.diagnostics import DiagnosticError
from alpa_mlir.runtime import collectives, inputs, spmd
from alpa_mlir.runtime.collectives import CollectiveKind
from alpa_mlir.runtime.errors import (
    DeviceCountError,
    InputMismatchError,
    UnsupportedModuleError,
)
from alpa_mlir.runtime.module_kind import ModuleKind


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
