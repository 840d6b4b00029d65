"""Loss functions, written without gather (labels enter as one-hot masks).

Squares are written `x * x`: `jnp.square` lowers to `chlo.square`, and the zoo's modules
otherwise use only `func` and `stablehlo` ops.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alpa_mlir.models.precision import in_float32


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy; `labels` are int class ids of shape logits[:-1]."""
    log_probs = jax.nn.log_softmax(in_float32(logits), axis=-1)  # float32 whatever the compute dtype
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=log_probs.dtype)
    return -jnp.sum(log_probs * one_hot, axis=-1)


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean over all elements of the squared difference."""
    diff = predictions - targets
    return jnp.mean(diff * diff)
