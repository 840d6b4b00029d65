"""A hand-written Adam optimizer (fp32): state = (first moment, second moment, step count).

The state is a `NamedTuple`, so it flattens as `mu` leaves, then `nu` leaves, then `step`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from alpa_mlir.models.params import Params


@dataclass(frozen=True)
class AdamConfig:
    """Adam hyperparameters (Kingma & Ba, with bias correction)."""

    learning_rate: float = 1e-3  # step size
    beta1: float = 0.9  # decay of the first-moment estimate
    beta2: float = 0.999  # decay of the second-moment estimate
    eps: float = 1e-8  # added to the denominator for stability

    def state_shapes(self, param_shapes: Params) -> AdamState:
        return adam_state_shapes(param_shapes)

    def update(self, grads: Params, state: AdamState, params: Params) -> tuple[Params, AdamState]:
        return adam_update(self, grads, state, params)

    def warm_state(self, params: Params, rng: np.random.Generator) -> AdamState:
        """A run in progress: step 10, small moments. Adam's first step divides each
        gradient by its own magnitude, so float noise in a near-zero gradient becomes a
        full +-lr update and two correct executions (sharded and not) would differ by
        that much; a warm state keeps equivalence checks well conditioned."""

        def moment(p: np.ndarray, low: float, high: float) -> np.ndarray:
            return rng.uniform(low, high, np.shape(p)).astype(np.float32)

        return AdamState(
            mu=jax.tree.map(lambda p: moment(p, -1e-3, 1e-3), params),
            nu=jax.tree.map(lambda p: moment(p, 1e-6, 1e-5), params),
            step=np.asarray(10, np.int32),  # type: ignore[arg-type]
        )


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
