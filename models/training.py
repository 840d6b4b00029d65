"""The training step every model shares: forward + `jax.grad` backward + Adam update.

train_step(params, opt_state, batch) -> (new_params, new_opt_state, loss)

In mixed precision (`precision.Precision`) the loss function sees the parameters and
the batch's float inputs cast to the compute dtype; the loss is returned in float32, and
gradients, parameters and the Adam state are float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp

from alpa_mlir.models.adam import AdamConfig, AdamState, adam_update
from alpa_mlir.models.params import Params
from alpa_mlir.models.precision import Precision

# A batch: a dict of arrays (inputs and labels), flattened in sorted key order.
Batch: TypeAlias = dict[str, Any]
# loss(params, batch) -> scalar
LossFn: TypeAlias = Callable[[Params, Batch], jax.Array]
TrainStep: TypeAlias = Callable[[Params, AdamState, Batch], tuple[Params, AdamState, jax.Array]]


def make_train_step(loss_fn: LossFn, adam: AdamConfig, precision: Precision | None = None) -> TrainStep:
    """The training step of `loss_fn` with Adam, in `precision` (default fp32)."""
    precision = precision or Precision()
    scale = precision.scale

    def scaled_loss(params: Params, batch: Batch) -> tuple[jax.Array, jax.Array]:
        loss = loss_fn(precision.cast(params), precision.cast(batch)).astype(jnp.float32)
        return (loss * scale if scale != 1.0 else loss), loss

    def train_step(
        params: Params, opt_state: AdamState, batch: Batch
    ) -> tuple[Params, AdamState, jax.Array]:
        (_, loss), grads = jax.value_and_grad(scaled_loss, has_aux=True)(params, batch)
        if scale != 1.0:
            grads = jax.tree.map(lambda g: g / scale, grads)
        new_params, new_opt_state = adam_update(adam, grads, opt_state, params)
        return new_params, new_opt_state, loss

    return train_step
