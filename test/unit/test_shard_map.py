"""A step with a shard_map region (`sdy.manual_computation`), as JAX exports it: the region
is the user's own parallel program and is kept as written. The reference run keeps it on
its mesh (everything else replicated), alpa-auto-sharding plans around it on that mesh
(and says which mesh when asked for another), and the pipeshard path says it cannot
pipeline it. Every run equals jax.jit's on the same inputs."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.shardy import manual_computations, meshes
from alpa_mlir.passes import PassManager
from alpa_mlir.passes.pass_base import PassFailure
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference
from alpa_mlir.runtime.spmd import compile_program


def _step(mesh: Mesh):  # type: ignore[no-untyped-def]
    def inner(h: jax.Array) -> jax.Array:
        return jax.lax.psum(jnp.sin(h) * 2.0, "y")

    def step(w: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jnp.tanh(x @ w)
        s = jax.shard_map(inner, mesh=mesh, in_specs=P(None, "y"), out_specs=P(None, None))(h)
        return (s ** 2).sum(), s

    return step


@functools.cache
def exported() -> tuple[str, tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("x", "y"))
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((16, 32)).astype(np.float32), rng.standard_normal((8, 16)).astype(np.float32))
    step = jax.jit(_step(mesh))
    want = tuple(np.asarray(x) for x in step(*args))
    return step.lower(*args).as_text(), args, want


def _check(outputs: list[np.ndarray]) -> None:
    _, _, want = exported()
    report = compare_outputs(outputs, list(want), Tolerance(rtol=1e-5, atol=1e-5))
    assert report.passed, report.summary_line()


def test_the_reference_keeps_the_region_on_its_mesh() -> None:
    text, args, _ = exported()
    ctx = make_context()
    module = parse_module(text, ctx)
    assert len(manual_computations(module)) == 1
    _check(compile_reference(module, jax.devices()[0]).run(list(args)))
    PassManager.parse("builtin.module(alpa-strip-sharding)", ctx).run(module)
    assert module.operation.verify()
    assert len(manual_computations(module)) == 1 and list(meshes(module)) == ["mesh"]
    assert "sdy.sharding = " not in print_module(module)  # the shardings around it are gone


def test_auto_sharding_plans_around_the_region() -> None:
    text, args, _ = exported()
    ctx = make_context()
    module = parse_module(text, ctx)
    PassManager.parse("builtin.module(alpa-auto-sharding{devices=2x4})", ctx).run(module)
    assert len(manual_computations(module)) == 1
    _check(compile_program(module, jax.devices()[:8]).run(list(args)))


@pytest.mark.parametrize(("pipeline", "message"), [
    ("alpa-auto-sharding{mesh=8}",
     re.escape('runs on mesh @mesh <["x"=2, "y"=4]>, and the plan\'s mesh @mesh is <["x"=8]>: plan on '
               "the region's mesh (mesh=2x4 mesh-axes=x,y)")),
    ("alpa-pipeshard{devices=2x4}", "a shard_map region .* cannot be pipelined"),
])
def test_what_cannot_be_done_is_said(pipeline: str, message: str) -> None:
    ctx = make_context()
    module = parse_module(exported()[0], ctx)
    with pytest.raises(PassFailure, match=message):
        PassManager.parse(f"builtin.module({pipeline})", ctx).run(module)
