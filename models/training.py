"""The training step every model shares: forward + `jax.grad` backward + optimizer update.

train_step(params, opt_state, batch) -> (new_params, new_opt_state, loss)

In mixed precision (`precision.Precision`) the loss function sees the parameters and
the batch's float inputs cast to the compute dtype; the loss is returned in float32, and
gradients, parameters and the optimizer state are float32. The optimizer
(`optimizer.Optimizer`) defaults to Adam.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp

from alpa_mlir.models.adam import AdamConfig
from alpa_mlir.models.optimizer import Optimizer
from alpa_mlir.models.params import Params
from alpa_mlir.models.precision import Precision

# A batch: a dict of arrays (inputs and labels), flattened in sorted key order.
Batch: TypeAlias = dict[str, Any]
# loss(params, batch) -> scalar
LossFn: TypeAlias = Callable[[Params, Batch], jax.Array]
TrainStep: TypeAlias = Callable[[Params, Any, Batch], tuple[Params, Any, jax.Array]]


def make_train_step(
    loss_fn: LossFn, optimizer: Optimizer | None = None, precision: Precision | None = None
) -> TrainStep:
    """The training step of `loss_fn` with `optimizer` (default Adam), in `precision`
    (default fp32)."""
    optimizer = optimizer or AdamConfig()
    precision = precision or Precision()
    scale = precision.scale

    def scaled_loss(params: Params, batch: Batch) -> tuple[jax.Array, jax.Array]:
        loss = loss_fn(precision.cast(params), precision.cast(batch)).astype(jnp.float32)
        return (loss * scale if scale != 1.0 else loss), loss

    def train_step(
        params: Params, opt_state: Any, batch: Batch
    ) -> tuple[Params, Any, jax.Array]:
        (_, loss), grads = jax.value_and_grad(scaled_loss, has_aux=True)(params, batch)
        if scale != 1.0:
            grads = jax.tree.map(lambda g: g / scale, grads)
        new_params, new_opt_state = optimizer.update(grads, opt_state, params)
        return new_params, new_opt_state, loss

    return train_step
