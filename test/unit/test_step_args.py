"""passes/sharding/step_args.py: which arguments of a training step are state, batch or
neither, read from the program with and without donation."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.dialect_utils.graph import FunctionGraph, main_function
from alpa_mlir.models.export import export_train_step
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.passes.sharding.step_args import StateSource, StepArgsError, infer_step_args


def _graph(text: str) -> tuple[object, FunctionGraph]:
    module = parse_module(text, make_context())
    return module, FunctionGraph(main_function(module))


def test_zoo_step_with_and_without_donation() -> None:
    """The zoo's MLP step: the same state and batch from donation and from the results."""
    _kept, donated = _graph(export_train_step("mlp", "tiny", debug_info=False))
    _kept2, plain = _graph(export_train_step("mlp", "tiny", donate=False, debug_info=False))
    a, b = infer_step_args(donated), infer_step_args(plain)
    assert a.source is StateSource.DONATION and b.source is StateSource.POSITIONS
    assert dict(a.state) == dict(b.state) and a.state
    assert a.batch == b.batch and len(a.batch) == 2
    assert a.other == b.other == ()


def _user_step(params, opt_state, batch, key, lr):  # type: ignore[no-untyped-def]
    """A step written the way users write one: dropout from a key, a learning rate."""
    def loss_fn(p):  # type: ignore[no-untyped-def]
        keep = jax.random.bernoulli(key, 0.9, batch["x"].shape)
        h = jnp.tanh(jnp.where(keep, batch["x"], 0.0) @ p["w"])
        return jnp.mean((h - batch["y"]) ** 2)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    new_params = jax.tree.map(lambda w, g: w - lr * g, params, grads)
    new_opt = jax.tree.map(lambda m, g: 0.9 * m + g, opt_state, grads)
    return new_params, new_opt, loss, jax.random.split(key)[0]


def _user_text(donate: tuple[int, ...]) -> str:
    params = {"w": jnp.zeros((16, 8))}
    batch = {"x": jnp.zeros((32, 16)), "y": jnp.zeros((32, 8))}
    key = jax.random.key_data(jax.random.key(0))

    def step(p, o, b, k, lr):  # type: ignore[no-untyped-def]
        new_p, new_o, loss, k2 = _user_step(p, o, b, jax.random.wrap_key_data(k), lr)
        return new_p, new_o, loss, jax.random.key_data(k2)

    return jax.jit(step, donate_argnums=donate).lower(params, params, batch, key, jnp.float32(0.1)).as_text()


@pytest.mark.parametrize("donate", [(), (0, 1)])
def test_user_step_roles(donate: tuple[int, ...]) -> None:
    """params and optimizer state are state (by donation or by matching results), x and y
    the batch (dim 0 = 32), the RNG key and the learning rate neither."""
    _module, graph = _graph(_user_text(donate))
    args = infer_step_args(graph)
    assert dict(args.state) == {0: 0, 1: 1}
    assert args.batch == (2, 3) and args.batch_size == 32
    assert args.other == (4, 5)
    assert args.source is (StateSource.DONATION if donate else StateSource.POSITIONS)
    assert args.describe()["state_from"] == args.source.value


def test_options_override_and_are_checked() -> None:
    _module, graph = _graph(_user_text(()))
    args = infer_step_args(graph, batch_args=(2,), state_args=(0,))
    assert dict(args.state) == {0: 0} and args.batch == (2,) and args.source is StateSource.OPTION
    assert args.other == (1, 3, 4, 5)
    with pytest.raises(StepArgsError, match="batch-args names argument 9, but @main has 6 arguments"):
        infer_step_args(graph, batch_args=(9,))
    with pytest.raises(StepArgsError, match="argument 2 is in both batch-args and state-args"):
        infer_step_args(graph, batch_args=(2,), state_args=(2,))


def _plan(text: str, pipeline: str, report: Path) -> dict:  # type: ignore[type-arg]
    ctx = make_context()
    module = parse_module(text, ctx)
    PassManager.parse(f"builtin.module({pipeline} report={report}}})", ctx).run(module)
    return json.loads(report.read_text())


@pytest.mark.slow
def test_zoo_plans_equal_without_donation(tmp_path: Path) -> None:
    """A step exported without donation plans exactly as with it: the same argument
    shardings under force-data-parallel, the same stage plan."""
    texts = {d: export_train_step("mlp", "tiny", donate=d, debug_info=False) for d in (True, False)}
    shard = {d: _plan(t, "alpa-auto-sharding{mesh=2x4 force-data-parallel=true", tmp_path / f"s{d}.json")
             for d, t in texts.items()}
    assert [a["sharding"] for a in shard[True]["arguments"]] == [a["sharding"] for a in shard[False]["arguments"]]
    assert shard[True]["objective"] == pytest.approx(shard[False]["objective"])
    stages = {d: _plan(t, "alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2", tmp_path / f"p{d}.json")
              for d, t in texts.items()}
    picked = {d: [(s["layers"], s["submesh"], s["logical_shape"]) for s in p["stages"]] for d, p in stages.items()}
    assert picked[True] == picked[False]
    assert stages[True]["predicted_step_s"] == pytest.approx(stages[False]["predicted_step_s"])
