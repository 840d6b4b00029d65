"""Basic layers shared by the models: dense, layer norm, embedding lookup.

Each layer with parameters has a `*_spec` function (its parameters as a `ParamSpec` tree)
and a function that applies it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from alpa_mlir.models.params import Params, SpecTree, normal, ones, zeros
from alpa_mlir.models.precision import in_float32

LAYER_NORM_EPS = 1e-5


def dense_spec(d_in: int, d_out: int, *, bias: bool = True) -> SpecTree:
    """A (d_in, d_out) kernel and optionally a (d_out,) bias."""
    spec: dict[str, object] = {"kernel": normal(d_in, d_out)}
    if bias:
        spec["bias"] = zeros(d_out)
    return spec


def dense(p: Params, x: jax.Array) -> jax.Array:
    """x @ kernel (+ bias) over the last dim of x."""
    y = jnp.einsum("...i,io->...o", x, p["kernel"])
    if "bias" in p:
        y = y + p["bias"]
    return y


def layer_norm_spec(hidden: int) -> SpecTree:
    """Scale (ones) and offset (zeros) of a layer norm."""
    return {"bias": zeros(hidden), "scale": ones(hidden)}


def layer_norm(p: Params, x: jax.Array) -> jax.Array:
    """Layer norm over the last dim (computed in float32, returned in x's dtype)."""
    x32 = in_float32(x)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    centered = x32 - mean
    var = jnp.mean(centered * centered, axis=-1, keepdims=True)
    normed = centered * lax.rsqrt(var + LAYER_NORM_EPS)
    return normed.astype(x.dtype) * p["scale"] + p["bias"]


def embedding_lookup(table: jax.Array, ids: jax.Array, *, one_hot: bool) -> jax.Array:
    """Rows of `table` (vocab, hidden) at int `ids`.

    With `one_hot=False` this is one `stablehlo.gather` (its gradient a scatter-add);
    with `one_hot=True` it is a one-hot matmul, which is all dot_general but costs
    2*tokens*vocab*hidden FLOPs.
    """
    if one_hot:
        mask = jax.nn.one_hot(ids, table.shape[0], dtype=table.dtype)
        return jnp.einsum("...v,vh->...h", mask, table)
    dnums = lax.GatherDimensionNumbers(
        offset_dims=(ids.ndim,), collapsed_slice_dims=(0,), start_index_map=(0,)
    )
    return lax.gather(
        table,
        ids[..., None],
        dnums,
        slice_sizes=(1, table.shape[1]),
        mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )
