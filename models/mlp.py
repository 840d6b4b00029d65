"""MLP: a stack of dense layers with relu, trained on a mean-squared-error regression.

    x (B, input_dim) -> [dense -> relu] x (num_layers - 1) -> dense -> (B, output_dim)

The batch is {"x": (B, input_dim) float32, "y": (B, output_dim) float32}; the loss is the
mean squared error over all B * output_dim elements.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

import alpa_mlir.models.layers as L
import alpa_mlir.models.params as P
from alpa_mlir.models.losses import mean_squared_error
from alpa_mlir.models.optimizer import Optimizer
from alpa_mlir.models.precision import Precision
from alpa_mlir.models.training import Batch, TrainStep
from alpa_mlir.models.training import make_train_step as _make_train_step
from alpa_mlir.models.validation import require_positive


@dataclass(frozen=True)
class MLPConfig:
    """Sizes of an MLP and its training batch."""

    batch_size: int  # examples per training step (global batch)
    input_dim: int  # features per example
    hidden_dim: int  # width of every hidden layer
    output_dim: int  # regression targets per example
    num_layers: int  # dense layers, the output layer included

    def __post_init__(self) -> None:
        require_positive(self, "batch_size", "input_dim", "hidden_dim", "output_dim", "num_layers")


PRESETS: dict[str, MLPConfig] = {
    "tiny": MLPConfig(batch_size=8, input_dim=16, hidden_dim=32, output_dim=8, num_layers=3),
    "medium": MLPConfig(
        batch_size=256, input_dim=1024, hidden_dim=2048, output_dim=1024, num_layers=8
    ),
}


def layer_dims(config: MLPConfig) -> list[tuple[int, int]]:
    """(in, out) of each dense layer."""
    dims = [config.input_dim] + [config.hidden_dim] * (config.num_layers - 1)
    return list(zip(dims, [*dims[1:], config.output_dim], strict=True))


def param_specs(config: MLPConfig) -> P.SpecTree:
    """All parameters, as a `ParamSpec` tree."""
    return {
        "layers": [
            {"bias": P.zeros(d_out), "kernel": P.fan_in_normal(d_in, d_out)}
            for d_in, d_out in layer_dims(config)
        ]
    }


def batch_shapes(config: MLPConfig) -> Batch:
    """Abstract training batch."""
    return {
        "x": jax.ShapeDtypeStruct((config.batch_size, config.input_dim), jnp.float32),
        "y": jax.ShapeDtypeStruct((config.batch_size, config.output_dim), jnp.float32),
    }


def example_batch(config: MLPConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Gaussian inputs and targets."""
    return {
        "x": rng.standard_normal((config.batch_size, config.input_dim), dtype=np.float32),
        "y": rng.standard_normal((config.batch_size, config.output_dim), dtype=np.float32),
    }


def predict(params: P.Params, x: jax.Array) -> jax.Array:
    """The network's output for x."""
    layers = params["layers"]
    for layer in layers[:-1]:
        x = jax.nn.relu(L.dense(layer, x))
    return L.dense(layers[-1], x)


def loss(config: MLPConfig, params: P.Params, batch: Batch) -> jax.Array:
    """Mean squared error."""
    return mean_squared_error(predict(params, batch["x"]), batch["y"])


def make_train_step(config: MLPConfig, optimizer: Optimizer | None = None,
                    precision: Precision | None = None) -> TrainStep:
    """`train_step(params, opt_state, batch) -> (new_params, new_opt_state, loss)`."""
    return _make_train_step(lambda p, b: loss(config, p, b), optimizer, precision)
