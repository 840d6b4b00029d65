"""The model table: name -> `ModelSpec` (presets + functions of the model's module).

get_model("gpt").config("125M", batch_size=8)   # a validated GPTConfig
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

import alpa_mlir.models.bert as bert
import alpa_mlir.models.gpt as gpt
import alpa_mlir.models.mlp as mlp
import alpa_mlir.models.moe as moe
import alpa_mlir.models.wide_resnet as wide_resnet
from alpa_mlir.models.errors import ModelConfigError
from alpa_mlir.models.optimizer import Optimizer
from alpa_mlir.models.params import Params, SpecTree, abstract_params, count_params, init_params
from alpa_mlir.models.precision import Precision
from alpa_mlir.models.training import Batch, TrainStep

C = TypeVar("C")


@dataclass(frozen=True)
class ModelSpec(Generic[C]):
    """One model of the zoo: its presets and the functions that build and train it."""

    name: str  # registered name, as typed on the command line
    summary: str  # one line for listings
    presets: Mapping[str, C]  # preset name -> config
    param_specs: Callable[[C], SpecTree]  # parameter shapes and initializers
    batch_shapes: Callable[[C], Batch]  # abstract batch
    example_batch: Callable[[C, np.random.Generator], dict[str, np.ndarray]]  # random batch
    make_train_step: Callable[[C, Optimizer | None, Precision | None], TrainStep]  # the training step

    def config(self, preset: str = "tiny", **overrides: Any) -> C:
        """The preset's config with `overrides` (config field -> value) applied."""
        if preset not in self.presets:
            valid = ", ".join(self.presets)
            raise ModelConfigError(
                f"unknown preset {preset!r} for model {self.name!r}; valid presets: {valid}"
            )
        return apply_overrides(self.presets[preset], overrides)

    def param_shapes(self, config: C) -> Params:
        """Abstract parameters (`jax.ShapeDtypeStruct` tree); allocates nothing."""
        return abstract_params(self.param_specs(config))

    def init_params(self, config: C, seed: int = 0) -> Params:
        """Random parameters as numpy arrays (small configs only)."""
        return init_params(self.param_specs(config), seed)

    def num_params(self, config: C) -> int:
        """Parameter count, computed from the abstract shapes."""
        return count_params(self.param_shapes(config))


def config_fields(config: Any) -> dict[str, dataclasses.Field[Any]]:
    """The overridable fields of a config dataclass, by name."""
    return {f.name: f for f in dataclasses.fields(config)}


def apply_overrides(config: C, overrides: Mapping[str, Any]) -> C:
    """`config` with fields replaced; unknown fields and wrong types raise ModelConfigError."""
    fields = config_fields(config)
    for name, value in overrides.items():
        if name not in fields:
            valid = ", ".join(sorted(fields))
            raise ModelConfigError(
                f"{type(config).__name__} has no option {name!r}; valid options: {valid}"
            )
        expected = type(getattr(config, name))
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ModelConfigError(
                f"option {name!r} of {type(config).__name__} expects {expected.__name__}, "
                f"got {value!r}"
            )
    return dataclasses.replace(config, **overrides)  # type: ignore[type-var]


def parse_override(config: Any, name: str, text: str) -> Any:
    """Convert command-line text to the type of config field `name`."""
    fields = config_fields(config)
    if name not in fields:
        valid = ", ".join(sorted(fields))
        raise ModelConfigError(
            f"{type(config).__name__} has no option {name!r}; valid options: {valid}"
        )
    expected = type(getattr(config, name))
    if expected is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    else:
        try:
            return expected(text)
        except ValueError:
            pass
    raise ModelConfigError(f"option {name!r} expects {expected.__name__}, got {text!r}")


def _spec(module: Any, name: str, summary: str) -> ModelSpec[Any]:
    return ModelSpec(
        name=name,
        summary=summary,
        presets=module.PRESETS,
        param_specs=module.param_specs,
        batch_shapes=module.batch_shapes,
        example_batch=module.example_batch,
        make_train_step=module.make_train_step,
    )


def all_models() -> tuple[ModelSpec[Any], ...]:
    """Every model of the zoo, in listing order."""
    return (
        _spec(mlp, "mlp", "dense + relu stack, MSE regression"),
        _spec(gpt, "gpt", "decoder-only transformer LM (Alpa paper GPT suite)"),
        _spec(bert, "bert", "bidirectional transformer encoder, masked-LM loss"),
        _spec(moe, "moe", "GShard mixture-of-experts LM (Alpa paper MoE suite)"),
        _spec(wide_resnet, "wide-resnet", "Wide-ResNet classifier (Alpa paper suite)"),
    )


def model_names() -> tuple[str, ...]:
    """Registered model names."""
    return tuple(m.name for m in all_models())


def get_model(name: str) -> ModelSpec[Any]:
    """The model called `name` (`wide_resnet` is accepted for `wide-resnet`)."""
    wanted = name.replace("_", "-")
    for model in all_models():
        if model.name == wanted:
            return model
    raise ModelConfigError(f"unknown model {name!r}; valid models: {', '.join(model_names())}")
