"""Checks shared by the model configs' `__post_init__`.

Each check raises `ModelConfigError` with the config class, the field, the value received
and what was expected.
"""

from __future__ import annotations

from typing import Any

from alpa_mlir.models.errors import ModelConfigError


def require_positive(config: Any, *fields: str) -> None:
    """Every named field of `config` is an int >= 1."""
    for name in fields:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelConfigError(
                f"{type(config).__name__}.{name} must be a positive integer, got {value!r}"
            )


def require_divisible(config: Any, numerator: str, denominator: str) -> None:
    """Field `numerator` is a multiple of field `denominator`."""
    num = getattr(config, numerator)
    den = getattr(config, denominator)
    if num % den != 0:
        raise ModelConfigError(
            f"{type(config).__name__}.{numerator}={num} must be divisible by {denominator}={den}"
        )


def require_choice(config: Any, field: str, choices: tuple[Any, ...]) -> None:
    """Field `field` is one of `choices`."""
    value = getattr(config, field)
    if value not in choices:
        valid = ", ".join(str(c) for c in choices)
        raise ModelConfigError(
            f"{type(config).__name__}.{field} must be one of {valid}; got {value!r}"
        )


# The sizes every transformer config of the zoo has; all must be positive integers.
TRANSFORMER_SIZES = (
    "batch_size", "seq_len", "hidden_size", "num_layers", "num_heads", "vocab_size", "mlp_ratio",
)


def require_transformer_sizes(config: Any, *extra: str) -> None:
    """The transformer sizes (and `extra` fields) are positive; heads divide the width."""
    require_positive(config, *TRANSFORMER_SIZES, *extra)
    require_divisible(config, "hidden_size", "num_heads")
