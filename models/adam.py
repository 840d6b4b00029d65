"""A hand-written Adam optimizer (fp32): state = (first moment, second moment, step count).

The state is a `NamedTuple`, so it flattens as `mu` leaves, then `nu` leaves, then `step`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from alpa_mlir.models.params import Params


@dataclass(frozen=True)
class AdamConfig:
    """Adam hyperparameters (Kingma & Ba, with bias correction)."""

    learning_rate: float = 1e-3  # step size
    beta1: float = 0.9  # decay of the first-moment estimate
    beta2: float = 0.999  # decay of the second-moment estimate
    eps: float = 1e-8  # added to the denominator for stability


class AdamState(NamedTuple):
    """Optimizer state; `mu` and `nu` have the structure of the parameters."""

    mu: Params  # running mean of gradients
    nu: Params  # running mean of squared gradients
    step: jax.Array  # int32 scalar: steps taken so far


def adam_state_shapes(param_shapes: Params) -> AdamState:
    """Abstract Adam state for abstract (or concrete) parameters."""

    def like(p: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(p.shape, jnp.float32)

    return AdamState(
        mu=jax.tree.map(like, param_shapes),
        nu=jax.tree.map(like, param_shapes),
        step=jax.ShapeDtypeStruct((), jnp.int32),  # type: ignore[arg-type]
    )


def adam_init(params: Params) -> AdamState:
    """Zero moments and a zero step count."""
    return AdamState(
        mu=jax.tree.map(jnp.zeros_like, params),
        nu=jax.tree.map(jnp.zeros_like, params),
        step=jnp.zeros((), jnp.int32),
    )


def adam_update(
    config: AdamConfig, grads: Params, state: AdamState, params: Params
) -> tuple[Params, AdamState]:
    """One Adam step: returns the new parameters and the new state."""
    b1, b2 = config.beta1, config.beta2
    step = state.step + 1
    t = step.astype(jnp.float32)
    mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, grads)
    nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * (g * g), state.nu, grads)
    step_mu = config.learning_rate / (1.0 - jnp.power(b1, t))
    corr_nu = 1.0 - jnp.power(b2, t)

    def apply(p: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
        return p - step_mu * m / (jnp.sqrt(v / corr_nu) + config.eps)

    new_params = jax.tree.map(apply, params, mu, nu)
    return new_params, AdamState(mu=mu, nu=nu, step=step)
