"""alpa_mlir.models: the JAX model zoo (plain JAX, no Flax) behind `alpa-export`.

Models (one module each): `mlp`, `gpt`, `bert`, `moe`, `wide_resnet`; each has a frozen
config dataclass, `PRESETS`, `param_specs(config)` (shapes and initializers),
`batch_shapes(config)`, `example_batch(config, rng)`, `loss(config, params, batch)` and
`make_train_step(config, optimizer, precision)` -> `train_step(params, opt_state, batch)`.

Shared pieces: `optimizer` (`adam`, `adafactor`), `training` (the step), `params` (parameter specs),
`layers` / `transformer` / `losses` (building blocks), `registry` (name -> model),
`export` (StableHLO text, example inputs, argument names).
"""

from __future__ import annotations

from alpa_mlir.models.adafactor import AdafactorConfig, AdafactorState
from alpa_mlir.models.adam import AdamConfig, AdamState
from alpa_mlir.models.errors import ModelConfigError
from alpa_mlir.models.export import (
    TrainStepSetup,
    argument_names,
    example_inputs,
    export_train_step,
    num_params,
    result_names,
    train_step_setup,
)
from alpa_mlir.models.optimizer import Optimizer, get_optimizer
from alpa_mlir.models.registry import ModelSpec, all_models, get_model, model_names

__all__ = [
    "AdafactorConfig",
    "AdafactorState",
    "AdamConfig",
    "AdamState",
    "ModelConfigError",
    "ModelSpec",
    "Optimizer",
    "TrainStepSetup",
    "all_models",
    "argument_names",
    "example_inputs",
    "export_train_step",
    "get_model",
    "get_optimizer",
    "model_names",
    "num_params",
    "result_names",
    "train_step_setup",
]
