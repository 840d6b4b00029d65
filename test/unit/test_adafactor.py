"""The zoo's Adafactor (`models/adafactor.py`): the same trajectory as optax's adafactor,
factored state where Alpa's MoE needs it, and the export / CLI option."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.models import AdafactorConfig, train_step_setup
from alpa_mlir.models.adafactor import Factored
from alpa_mlir.models.errors import ModelConfigError
from alpa_mlir.models.params import count_params as count_params_of
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.runtime.pipeline import PipelineExecutable
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference
from alpa_mlir.tools.alpa_export import main as export_main


def _params(rng: np.random.Generator) -> dict[str, jax.Array]:
    return {
        "kernel": jnp.asarray(rng.normal(size=(16, 40)), jnp.float32),  # factored
        "experts": jnp.asarray(rng.normal(size=(3, 24, 12)), jnp.float32),  # factored, rank 3
        "narrow": jnp.asarray(rng.normal(size=(4, 40)), jnp.float32),  # second dim < 8: full
        "bias": jnp.asarray(rng.normal(size=(40,)), jnp.float32),  # rank 1: full
    }


def test_trajectory_equals_optax_adafactor() -> None:
    rng = np.random.default_rng(0)
    params = _params(rng)
    ours = AdafactorConfig(learning_rate=1e-2, min_dim_size_to_factor=8)
    theirs = optax.adafactor(learning_rate=1e-2, min_dim_size_to_factor=8)
    state, their_state, their_params = ours.state_shapes(params), theirs.init(params), params
    state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state)
    ours_params = params
    for _ in range(5):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
        ours_params, state = ours.update(grads, state, ours_params)
        updates, their_state = theirs.update(grads, their_state, their_params)
        their_params = optax.apply_updates(their_params, updates)
    for name in params:
        np.testing.assert_allclose(ours_params[name], their_params[name], rtol=2e-5, atol=2e-6)
        assert not np.allclose(ours_params[name], params[name])  # the parameters moved
    assert int(state.step) == 5


def test_state_is_factored_for_matrices_and_full_otherwise() -> None:
    shapes = AdafactorConfig(min_dim_size_to_factor=8).state_shapes(_params(np.random.default_rng(0)))
    assert isinstance(shapes.nu["kernel"], Factored)
    assert (shapes.nu["kernel"].row.shape, shapes.nu["kernel"].col.shape) == ((16, 1), (1, 40))
    assert (shapes.nu["experts"].row.shape, shapes.nu["experts"].col.shape) == ((3, 1, 12), (3, 24, 1))
    assert shapes.nu["narrow"].shape == (4, 40) and shapes.nu["bias"].shape == (40,)


def test_moe_state_is_a_small_fraction_of_adams() -> None:
    # Alpa's MoE preset with Alpa's optimizer: the state that made MoE 70B fit 16 GB.
    adam = train_step_setup("moe", "10B").abstract_args()
    adafactor = train_step_setup("moe", "10B", optimizer="adafactor").abstract_args()
    params = count_params_of(adam[0])
    assert count_params_of(adam[1]) == 2 * params + 1
    assert count_params_of(adafactor[1]) < 0.01 * params


@pytest.mark.parametrize("model", ["moe", "gpt"])
def test_tiny_step_with_adafactor_reduces_the_loss(model: str) -> None:
    setup = train_step_setup(model, "tiny", optimizer="adafactor")
    treedef = jax.tree.structure(setup.abstract_args())
    params, opt_state, batch = jax.tree.unflatten(treedef, setup.example_args(seed=0))
    step = jax.jit(setup.train_step())
    losses = []
    for _ in range(4):
        params, opt_state, loss = step(params, opt_state, batch)
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def test_alpa_export_optimizer_option(tmp_path, capsys) -> None:
    out = tmp_path / "moe.mlir"
    assert export_main(["moe", "--optimizer", "adafactor", "-o", str(out), "--no-debug-info"]) == 0
    with_adam = tmp_path / "adam.mlir"
    assert export_main(["moe", "-o", str(with_adam), "--no-debug-info"]) == 0
    num_args = [1 + max(int(n) for n in re.findall(r"%arg(\d+)", path.read_text()))
                for path in (out, with_adam)]
    params = len([n for n in train_step_setup("moe").argument_names() if n.startswith("params.")])
    assert num_args[1] - num_args[0] == params  # tiny: nothing factored, one moment not two
    assert export_main(["moe", "--optimizer", "sgd"]) == 1
    assert "invalid choice: 'sgd'" in capsys.readouterr().err
    with pytest.raises(ModelConfigError, match="unknown optimizer 'sgd'; valid: adam, adafactor"):
        train_step_setup("moe", optimizer="sgd")


def test_pipelined_moe_with_factored_state_equals_the_single_device_step() -> None:
    """MoE tiny with Adafactor (every matrix factored), two stages with ZeRO-3 on 8 CPU
    devices: the state whose shapes differ from its parameters' is planned, split and
    updated as the exported step does on one device."""
    setup = train_step_setup("moe", "tiny", optimizer=AdafactorConfig(min_dim_size_to_factor=8))
    assert any(isinstance(v, Factored) for v in jax.tree.leaves(
        setup.abstract_args()[1].nu, is_leaf=lambda x: isinstance(x, Factored)))
    text = setup.lower().as_text(debug_info=False)
    ctx = make_context()
    module = parse_module(text, ctx)
    PassManager.parse(
        "builtin.module(alpa-pipeshard{devices=1x8 layers=2 num-microbatches=2 stages=manual "
        "layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,4x1 zero-stage=3})",
        ctx).run(module)
    inputs = setup.example_args(seed=0)
    got = PipelineExecutable(module, jax.devices()[:8]).run(inputs)
    want = compile_reference(parse_module(text, make_context()), jax.devices()[0]).run(inputs)
    result = compare_outputs(got, want, Tolerance())
    assert result.passed, result.summary_line()
