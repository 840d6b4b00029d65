"""A hand-written Adafactor optimizer (fp32), without momentum, as Alpa's MoE benchmark ran.

Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost" (ICML'18),
with the defaults optax uses: per parameter the second moment of the gradient is kept

- *factored* when the parameter has rank >= 2 and its second-largest dim has at least
  `min_dim_size_to_factor` elements: a row statistic (the mean of g^2 over the largest
  dim) and a column statistic (the mean over the second-largest), each stored with the
  reduced dim kept as size 1; the estimate is row * col / mean(row);
- *full* (an array like the parameter) otherwise.

One step, t = step + 1: decay = 1 - t^-decay_rate; each statistic becomes
decay * old + (1 - decay) * mean(g^2 + eps1); u = g / sqrt(estimate); u is divided by
max(1, rms(u) / clipping_threshold); the parameter moves by -learning_rate * u *
max(rms(param), eps2). The state is (the statistics per parameter, the step count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from alpa_mlir.models.params import Params


class Factored(NamedTuple):
    """The factored second moment of one parameter (the reduced dim kept, size 1)."""

    row: jax.Array  # mean of g^2 over the largest dim
    col: jax.Array  # mean of g^2 over the second-largest dim


class AdafactorState(NamedTuple):
    """Optimizer state; `nu` has the structure of the parameters, each leaf an array like
    the parameter or a `Factored` pair."""

    nu: Params
    step: jax.Array  # int32 scalar: steps taken so far


@dataclass(frozen=True)
class AdafactorConfig:
    """Adafactor hyperparameters (optax's defaults; Alpa's MoE learning rate)."""

    learning_rate: float = 1e-2  # relative step size (scaled by the parameter's rms)
    decay_rate: float = 0.8  # second-moment decay 1 - t^-decay_rate
    min_dim_size_to_factor: int = 128  # factor only when the second-largest dim is this big
    clipping_threshold: float = 1.0  # the update's rms is clipped to this
    eps1: float = 1e-30  # added to g^2
    eps2: float = 1e-3  # floor of the parameter's rms

    def factored_dims(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        """(largest dim, second-largest dim) when a parameter of `shape` is factored."""
        if len(shape) < 2:
            return None
        order = sorted(range(len(shape)), key=lambda d: shape[d])
        largest, second = order[-1], order[-2]
        if shape[second] < self.min_dim_size_to_factor:
            return None
        return largest, second

    def _moment_like(self, p: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct | Factored:
        dims = self.factored_dims(tuple(p.shape))
        if dims is None:
            return jax.ShapeDtypeStruct(p.shape, jnp.float32)
        largest, second = dims
        return Factored(
            row=jax.ShapeDtypeStruct(_reduced(p.shape, largest), jnp.float32),  # type: ignore[arg-type]
            col=jax.ShapeDtypeStruct(_reduced(p.shape, second), jnp.float32),  # type: ignore[arg-type]
        )

    def state_shapes(self, param_shapes: Params) -> AdafactorState:
        return AdafactorState(
            nu=jax.tree.map(self._moment_like, param_shapes),
            step=jax.ShapeDtypeStruct((), jnp.int32),  # type: ignore[arg-type]
        )

    def warm_state(self, params: Params, rng: np.random.Generator) -> AdafactorState:
        """A run in progress: step 10, small positive statistics."""
        shapes = self.state_shapes(jax.tree.map(lambda p: jax.ShapeDtypeStruct(np.shape(p), np.float32), params))
        nu = jax.tree.map(lambda s: rng.uniform(1e-6, 1e-5, s.shape).astype(np.float32), shapes.nu)
        return AdafactorState(nu=nu, step=np.asarray(10, np.int32))  # type: ignore[arg-type]

    def update(self, grads: Params, state: AdafactorState, params: Params) -> tuple[Params, AdafactorState]:
        step = state.step + 1
        decay = 1.0 - jnp.power(step.astype(jnp.float32), -self.decay_rate)
        # `params` is a prefix of `state.nu` (a factored leaf is a `Factored` pair there)
        pairs = jax.tree.map(lambda p, g, v: self._update_one(p, g, v, decay), params, grads, state.nu)
        new_params = jax.tree.map(lambda _, pair: pair[0], params, pairs)
        new_nu = jax.tree.map(lambda _, pair: pair[1], params, pairs)
        return new_params, AdafactorState(nu=new_nu, step=step)

    def _update_one(
        self, p: jax.Array, g: jax.Array, v: jax.Array | Factored, decay: jax.Array
    ) -> tuple[jax.Array, jax.Array | Factored]:
        g2 = g * g + self.eps1
        new_v: jax.Array | Factored
        if isinstance(v, Factored):
            largest, second = self.factored_dims(tuple(p.shape))  # type: ignore[misc]
            row = decay * v.row + (1.0 - decay) * jnp.mean(g2, axis=largest, keepdims=True)
            col = decay * v.col + (1.0 - decay) * jnp.mean(g2, axis=second, keepdims=True)
            estimate = row * col / jnp.mean(row, axis=second, keepdims=True)
            new_v = Factored(row=row, col=col)
        else:
            estimate = new_v = decay * v + (1.0 - decay) * g2
        u = g * jax.lax.rsqrt(estimate)
        u = u / jnp.maximum(1.0, _rms(u) / self.clipping_threshold)
        return p - self.learning_rate * jnp.maximum(_rms(p), self.eps2) * u, new_v


def _reduced(shape: tuple[int, ...], dim: int) -> tuple[int, ...]:
    return tuple(1 if d == dim else n for d, n in enumerate(shape))


def _rms(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(x * x))
