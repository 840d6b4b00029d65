"""pytest setup: 8 fake CPU devices, set before anything imports jax's backend; the
modules, fixtures and helpers shared by the runtime tests (test_module_kind, test_signature,
test_spmd, test_collectives, test_reference, test_inputs, test_devices, test_hlo_sharding)."""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import pytest
from jax.extend.mlir import ir
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alpa_mlir.dialect_utils import context
from alpa_mlir.runtime import devices, inputs, reference, spmd

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
