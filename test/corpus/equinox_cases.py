"""Equinox case of the corpus: a small causal transformer LM written the equinox way.

The model is a tree of ``eqx.Module``s that handles ONE sequence (per-token layers are
``jax.vmap``-ed inside, the batch is ``jax.vmap``-ed in the loss). The training step is
the usual ``eqx.partition(model, eqx.is_array)`` split: the jitted function takes the
array leaves (``params``), the optax state and the batch, and closes over the static
part, recombining with ``eqx.combine`` inside the loss.

The split is produced without running the constructor eagerly (which compiles one
small XLA program per random initializer shape): the static part comes from
``eqx.filter_eval_shape`` and the arrays from one jitted constructor call -- the same
pytrees ``eqx.partition(TransformerLM(..., key=key), eqx.is_array)`` returns.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from . import Built
from ._common import jit_init, token_batch

PyTree = Any


class TransformerBlock(eqx.Module):
    ln_1: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    ln_2: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP

    def __init__(self, d_model: int, num_heads: int, *, key: jax.Array):
        attn_key, mlp_key = jax.random.split(key)
        self.ln_1 = eqx.nn.LayerNorm(d_model)
        self.attn = eqx.nn.MultiheadAttention(
            num_heads, d_model, use_query_bias=True, use_output_bias=True, key=attn_key
        )
        self.ln_2 = eqx.nn.LayerNorm(d_model)
        self.mlp = eqx.nn.MLP(
            d_model, d_model, width_size=4 * d_model, depth=1, activation=jax.nn.gelu, key=mlp_key
        )

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        h = jax.vmap(self.ln_1)(x)
        x = x + self.attn(h, h, h, mask=mask)
        h = jax.vmap(self.ln_2)(x)
        return x + jax.vmap(self.mlp)(h)


class TransformerLM(eqx.Module):
    embed: eqx.nn.Embedding
    pos_embed: jax.Array
    blocks: list[TransformerBlock]
    ln_f: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        *,
        key: jax.Array,
    ):
        keys = jax.random.split(key, num_layers + 3)
        self.embed = eqx.nn.Embedding(vocab_size, d_model, key=keys[0])
        self.pos_embed = 0.02 * jax.random.normal(keys[1], (seq_len, d_model))
        self.blocks = [TransformerBlock(d_model, num_heads, key=k) for k in keys[3:]]
        self.ln_f = eqx.nn.LayerNorm(d_model)
        self.head = eqx.nn.Linear(d_model, vocab_size, use_bias=False, key=keys[2])

    def __call__(self, tokens: jax.Array) -> jax.Array:
        seq_len = tokens.shape[0]
        x = jax.vmap(self.embed)(tokens) + self.pos_embed[:seq_len]
        mask = jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))
        for block in self.blocks:
            x = block(x, mask)
        x = jax.vmap(self.ln_f)(x)
        return jax.vmap(self.head)(x)


def equinox_transformer() -> Built:
    vocab, seq, batch_size = 64, 16, 8
    make_model = functools.partial(TransformerLM, vocab, seq, 64, 4, 2)
    key = jax.random.PRNGKey(0)
    params = jit_init(lambda k: eqx.filter(make_model(key=k), eqx.is_array), key)
    abstract = eqx.filter_eval_shape(make_model, key=key)
    _, static = eqx.partition(abstract, lambda x: isinstance(x, jax.ShapeDtypeStruct))
    optim = optax.adamw(learning_rate=3e-4, weight_decay=1e-2)
    opt_state = optim.init(params)

    def loss_fn(params: PyTree, inputs: jax.Array, targets: jax.Array) -> jax.Array:
        model = eqx.combine(params, static)
        logits = jax.vmap(model)(inputs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    def train_step(
        params: PyTree, opt_state: optax.OptState, batch: tuple[jax.Array, jax.Array]
    ) -> tuple[PyTree, optax.OptState, jax.Array]:
        inputs, targets = batch
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs, targets)
        updates, opt_state = optim.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        return params, opt_state, loss

    tokens = token_batch(batch_size, seq, vocab, seed=1)
    batch = (tokens["inputs"], tokens["targets"])
    return Built(train_step, (params, opt_state, batch), donate_argnums=(0, 1))
