"""Transformer building blocks shared by GPT, BERT and MoE: specs and forward functions.

Each block has a `*_spec` function (its parameters as a `ParamSpec` tree) and a function
that applies it. Shapes: activations are (batch, seq, hidden); attention heads split the
hidden dim as (num_heads, head_dim).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from alpa_mlir.models.layers import dense, dense_spec
from alpa_mlir.models.params import Params, SpecTree
from alpa_mlir.models.precision import in_float32

# Added to masked attention scores: exp() of it underflows to 0 without producing inf - inf.
MASKED_SCORE = -1e9


def attention_spec(hidden: int) -> SpecTree:
    """Separate query/key/value/output projections, each (hidden, hidden) with bias."""
    return {name: dense_spec(hidden, hidden) for name in ("key", "out", "query", "value")}


def attention(p: Params, x: jax.Array, num_heads: int, *, causal: bool) -> jax.Array:
    """Multi-head self-attention; `causal` masks keys after the query position."""
    batch, seq, hidden = x.shape
    head_dim = hidden // num_heads

    def split_heads(y: jax.Array) -> jax.Array:
        return y.reshape(batch, seq, num_heads, head_dim)

    q = split_heads(dense(p["query"], x))
    k = split_heads(dense(p["key"], x))
    v = split_heads(dense(p["value"], x))
    scores = jnp.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(head_dim)
    if causal:
        q_pos = lax.broadcasted_iota(jnp.int32, (seq, seq), 0)
        k_pos = lax.broadcasted_iota(jnp.int32, (seq, seq), 1)
        scores = jnp.where(k_pos <= q_pos, scores, MASKED_SCORE)
    probs = jax.nn.softmax(in_float32(scores), axis=-1).astype(x.dtype)
    context = jnp.einsum("bnqk,bknd->bqnd", probs, v).reshape(batch, seq, hidden)
    return dense(p["out"], context)


def mlp_spec(hidden: int, intermediate: int) -> SpecTree:
    """The position-wise feed-forward block: hidden -> intermediate -> hidden."""
    return {"fc_in": dense_spec(hidden, intermediate), "fc_out": dense_spec(intermediate, hidden)}


def mlp(p: Params, x: jax.Array) -> jax.Array:
    """dense -> gelu (tanh approximation) -> dense."""
    return dense(p["fc_out"], jax.nn.gelu(dense(p["fc_in"], x), approximate=True))


def lm_batch_shapes(batch_size: int, seq_len: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Abstract language-model batch: input token ids and next-token labels (B, S)."""
    shape = (batch_size, seq_len)
    return {
        "input_ids": jax.ShapeDtypeStruct(shape, jnp.int32),
        "labels": jax.ShapeDtypeStruct(shape, jnp.int32),
    }


def lm_example_batch(
    batch_size: int, seq_len: int, vocab_size: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random token sequences; labels are the inputs shifted by one."""
    tokens = rng.integers(0, vocab_size, (batch_size, seq_len + 1), dtype=np.int32)
    return {"input_ids": tokens[:, :-1].copy(), "labels": tokens[:, 1:].copy()}
