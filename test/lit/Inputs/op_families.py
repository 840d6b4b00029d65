"""Small JAX programs whose exports exercise one op family each, for the lit tests of
the sharding rules (`regenerate.py` writes `<name>.mlir` next to this file).

Each is written the way JAX users write such code (`lax.scan`, `jax.checkpoint`,
`jax.random`, `jnp.square`, `lax.top_k`, `jax.scipy.linalg`), small enough to read, with
dims divisible by 8 so that a 2x4 mesh can split them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Program = tuple[Callable[..., Any], tuple[jax.ShapeDtypeStruct, ...], tuple[int, ...]]


def _sgd(loss: Callable[..., jax.Array]) -> Callable[..., tuple[jax.Array, jax.Array]]:
    def step(w: jax.Array, *batch: jax.Array) -> tuple[jax.Array, jax.Array]:
        value, grad = jax.value_and_grad(loss)(w, *batch)
        return w - 0.1 * grad, value

    return step


def _f32(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def while_scan() -> Program:
    """A layer stack as `lax.scan` over stacked weights [4, 512, 512] (forward and
    backward are while loops), a small batch: the weights are worth splitting."""

    def loss(ws: jax.Array, x: jax.Array) -> jax.Array:
        def layer(h: jax.Array, w: jax.Array) -> tuple[jax.Array, None]:
            return jnp.tanh(h @ w), None

        h, _ = lax.scan(layer, x, ws)
        return jnp.mean(h**2)

    return _sgd(loss), (_f32(4, 512, 512), _f32(8, 512)), (0,)


def optimization_barrier() -> Program:
    """An MLP whose blocks are `jax.checkpoint`ed: the backward recomputes them behind
    `stablehlo.optimization_barrier`."""

    def loss(w: jax.Array, x: jax.Array) -> jax.Array:
        @jax.checkpoint
        def block(h: jax.Array, w: jax.Array) -> jax.Array:
            return jnp.tanh(h @ w)

        h = x
        for i in range(w.shape[0]):
            h = block(h, w[i])
        return jnp.mean(h**2)

    return _sgd(loss), (_f32(2, 256, 256), _f32(512, 256)), (0,)


def rng() -> Program:
    """Dropout with a key passed in (threefry: shifts, xors, `bitcast_convert`, while
    loops) and noise from `lax.rng_bit_generator`."""

    def loss(w: jax.Array, x: jax.Array, key_data: jax.Array, state: jax.Array) -> jax.Array:
        key = jax.random.wrap_key_data(key_data)
        h = jnp.tanh(x @ w)
        keep = jax.random.bernoulli(key, 0.9, h.shape)
        h = jnp.where(keep, h / 0.9, 0.0)
        _, bits = lax.rng_bit_generator(state, h.shape, dtype=jnp.uint32)
        noise = (bits >> 9).astype(jnp.float32) * (1.0 / (1 << 23))
        return jnp.mean((h + 0.01 * noise) ** 2)

    def step(w: jax.Array, x: jax.Array, key_data: jax.Array, state: jax.Array) -> tuple[jax.Array, jax.Array]:
        value, grad = jax.value_and_grad(loss)(w, x, key_data, state)
        return w - 0.1 * grad, value

    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    state = jax.ShapeDtypeStruct((4,), jnp.uint32)
    return step, (_f32(128, 128), _f32(256, 128), key, state), (0,)


def chlo() -> Program:
    """`chlo` ops: `jnp.square` (chlo.square), `lax.erf_inv`, `lax.lgamma`, `lax.top_k`
    routing over the last dim."""

    def loss(w: jax.Array, x: jax.Array) -> jax.Array:
        h = x @ w
        sq = jnp.square(h)
        e = lax.erf_inv(jnp.tanh(h) * 0.5)
        g = lax.lgamma(sq + 1.0)
        top, _ = lax.top_k(h, 4)
        return jnp.mean(sq) + jnp.mean(e * g) + jnp.mean(top)

    return _sgd(loss), (_f32(128, 128), _f32(512, 128)), (0,)


def custom_call() -> Program:
    """A LAPACK `custom_call` (Cholesky: no sharding rule) next to ordinary work."""

    def step(a: jax.Array, w: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        c = jax.scipy.linalg.cholesky(a @ a.T + a.shape[0] * jnp.eye(a.shape[0]))
        return c, jnp.tanh(x @ w)

    return step, (_f32(16, 16), _f32(128, 128), _f32(512, 128)), ()


PROGRAMS: dict[str, Callable[[], Program]] = {
    "while_scan": while_scan,
    "optimization_barrier": optimization_barrier,
    "rng": rng,
    "chlo": chlo,
    "custom_call": custom_call,
}


def export(name: str) -> str:
    """The StableHLO text of one program, as `jax.jit(...).lower(...).as_text()` gives it."""
    fn, args, donate = PROGRAMS[name]()
    return str(jax.jit(fn, donate_argnums=donate).lower(*args).as_text())
