"""The optimizers a zoo training step can use, by name: `adam` (default) and `adafactor`.

An optimizer is a frozen config object with three methods:

    state_shapes(params)     the abstract optimizer state for abstract parameters
    update(grads, state, params) -> (new_params, new_state)
    warm_state(params, rng)  a concrete state of a run in progress (for example inputs)

Alpa's benchmarks trained GPT and Wide-ResNet with Adam and MoE with Adafactor (no
momentum, factored second moments), which is what lets MoE 70B fit 16 GB devices: Adam
keeps 8 bytes of state per parameter, Adafactor about none for matrices.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from alpa_mlir.models.adafactor import AdafactorConfig
from alpa_mlir.models.adam import AdamConfig
from alpa_mlir.models.errors import ModelConfigError
from alpa_mlir.models.params import Params


class Optimizer(Protocol):
    """What the training step and the export need of an optimizer."""

    def state_shapes(self, param_shapes: Params) -> Any: ...

    def update(self, grads: Params, state: Any, params: Params) -> tuple[Params, Any]: ...

    def warm_state(self, params: Params, rng: np.random.Generator) -> Any: ...


# name (as typed on the command line) -> the optimizer with its default hyperparameters
OPTIMIZERS: dict[str, Optimizer] = {"adam": AdamConfig(), "adafactor": AdafactorConfig()}


def get_optimizer(name: str) -> Optimizer:
    """The optimizer called `name`, with default hyperparameters."""
    if name not in OPTIMIZERS:
        raise ModelConfigError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]
