"""alpa_mlir.runtime.module_kind: plain, SPMD, GSPMD and MPMD modules told apart."""

from __future__ import annotations

import jax
import numpy as np
from conftest import MATMUL_CONTRACTING_X, MPMD, PLAIN, parse
from jax.extend.mlir import ir

from alpa_mlir.runtime import spmd
from alpa_mlir.runtime.module_kind import ModuleKind, module_kind


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
