"""The training step every model shares: forward + `jax.grad` backward + Adam update.

train_step(params, opt_state, batch) -> (new_params, new_opt_state, loss)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax

from alpa_mlir.models.adam import AdamConfig, AdamState, adam_update
from alpa_mlir.models.params import Params

# A batch: a dict of arrays (inputs and labels), flattened in sorted key order.
Batch: TypeAlias = dict[str, Any]
# loss(params, batch) -> scalar
LossFn: TypeAlias = Callable[[Params, Batch], jax.Array]
TrainStep: TypeAlias = Callable[[Params, AdamState, Batch], tuple[Params, AdamState, jax.Array]]


def make_train_step(loss_fn: LossFn, adam: AdamConfig) -> TrainStep:
    """The training step of `loss_fn` with Adam."""

    def train_step(
        params: Params, opt_state: AdamState, batch: Batch
    ) -> tuple[Params, AdamState, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        new_params, new_opt_state = adam_update(adam, grads, opt_state, params)
        return new_params, new_opt_state, loss

    return train_step
