"""Helpers shared by the corpus builders: cheap initialization and numpy example data.

Not part of any user's training step: this is the harness around it. Initializers
run once, so their XLA compile dominates a case's build time on a small CPU machine;
:func:`jit_init` compiles them at backend optimization level 0 (same values, a third
of the compile time). Example batches come from a seeded numpy generator, the way a
data loader hands numpy arrays to a jitted step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def jit_init(
    fn: Callable[..., Any], *args: Any, static_argnames: tuple[str, ...] = (), **kwargs: Any
) -> Any:
    """``jax.jit(fn)(*args, **kwargs)`` compiled at XLA backend optimization level 0."""
    jitted = jax.jit(fn, static_argnames=static_argnames)
    compiled = jitted.lower(*args, **kwargs).compile(
        compiler_options={"xla_backend_optimization_level": "0"}
    )
    dynamic = {k: v for k, v in kwargs.items() if k not in static_argnames}
    return compiled(*args, **dynamic)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def token_batch(batch: int, seq: int, vocab: int, seed: int) -> dict[str, jax.Array]:
    """Next-token batch: ``inputs``/``targets`` int32 [batch, seq], targets shifted by one."""
    tokens = rng(seed).integers(0, vocab, size=(batch, seq + 1), dtype=np.int32)
    return {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}


def normal(shape: tuple[int, ...], seed: int) -> jax.Array:
    return jnp.asarray(rng(seed).standard_normal(shape, dtype=np.float32))


def uniform(shape: tuple[int, ...], seed: int) -> jax.Array:
    return jnp.asarray(rng(seed).random(shape, dtype=np.float32))


def labels(shape: tuple[int, ...], num_classes: int, seed: int) -> jax.Array:
    return jnp.asarray(rng(seed).integers(0, num_classes, size=shape, dtype=np.int32))
