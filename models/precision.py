"""Mixed precision of a training step: the compute dtype, and a static loss scale.

    fp32  everything in float32 (the default)
    bf16  parameters cast to bfloat16 for the forward and backward passes, float inputs
          of the batch too, so matmuls, convolutions and stashed activations are bf16;
          the loss, the gradients (as they leave the cast), the master parameters and the
          Adam state stay float32
    fp16  the same in float16, with the loss multiplied by a static loss scale before
          differentiation and the gradients divided by it afterwards (keeps small
          gradients above fp16's underflow; Micikevicius et al., "Mixed Precision
          Training", ICLR'18)

This is how Alpa's benchmarks ran GPT, MoE and Wide-ResNet (fp16 compute, fp32 optimizer
state). Reads: a name (`fp32`, `bf16`, `fp16`); writes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from alpa_mlir.models.errors import ModelConfigError

COMPUTE_DTYPES: dict[str, Any] = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}
DEFAULT_LOSS_SCALE = {"fp32": 1.0, "bf16": 1.0, "fp16": 1024.0}


@dataclass(frozen=True)
class Precision:
    """The compute dtype of a training step (`COMPUTE_DTYPES` key) and its loss scale."""

    name: str = "fp32"
    loss_scale: float | None = None  # None: DEFAULT_LOSS_SCALE[name]

    def __post_init__(self) -> None:
        if self.name not in COMPUTE_DTYPES:
            raise ModelConfigError(f"unknown precision {self.name!r}; valid: {', '.join(COMPUTE_DTYPES)}")
        if self.loss_scale is not None and not (math.isfinite(self.loss_scale) and self.loss_scale > 0):
            raise ModelConfigError(f"loss scale must be a positive finite number, got {self.loss_scale!r}")

    @property
    def dtype(self) -> Any:
        return COMPUTE_DTYPES[self.name]

    @property
    def scale(self) -> float:
        return DEFAULT_LOSS_SCALE[self.name] if self.loss_scale is None else float(self.loss_scale)

    def cast(self, tree: Any) -> Any:
        """`tree` with its floating-point leaves in the compute dtype (others unchanged)."""
        if self.name == "fp32":
            return tree
        return jax.tree.map(
            lambda x: x.astype(self.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def in_float32(x: jax.Array) -> jax.Array:
    """`x` as float32 (no op when it is): normalizations, softmaxes and the loss compute in
    float32 whatever the compute dtype, as mixed-precision training does (their
    reciprocals and exponentials overflow fp16: the backward of a layer norm's rsqrt
    alone does at a variance of 4e-4)."""
    return x.astype(jnp.float32)
