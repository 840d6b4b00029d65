"""The flax.linen GPT family of the corpus: plain, nn.scan, unrolled twin, nn.remat.

One decoder-only model (``GPT``) configured four ways, written the way flax users write
a nanoGPT: einsum causal attention, pre-LayerNorm blocks, GELU MLP, learned positions,
input/output embeddings tied through ``nn.Embed.attend``, integer-label cross-entropy,
and the usual optax recipe -- global-norm clipping, AdamW with weight decay masked off
biases and norms, warmup + cosine decay.

* ``flax_gpt``: a flax ``TrainState`` step, ``jax.jit`` without donation.
* ``flax_gpt_scan``: the block stack is ``nn.scan`` (params stacked on a leading layer
  axis); ``step(params, opt_state, batch)`` donating params and opt_state.
* ``flax_gpt_unrolled`` (also :func:`unrolled_twin`): the scan case's twin -- same
  config, same step and donation, a Python loop over blocks.
* ``flax_gpt_remat``: blocks wrapped in ``nn.remat``.

All four share one initialization: the scanned params, unstacked along the layer axis
(:func:`unstack_params`) for the unrolled models, so all four compute the same loss and
the scanned parameter shapes are the unrolled ones with a leading ``n_layer`` axis.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from . import Built
from ._common import jit_init, token_batch


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 128
    block_size: int = 16
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    batch_size: int = 8


class CausalSelfAttention(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        B, T, C = x.shape
        head_dim = C // cfg.n_head
        qkv = nn.Dense(3 * C, name="c_attn")(x)
        q, k, v = jnp.split(qkv, 3, axis=-1)
        q = q.reshape(B, T, cfg.n_head, head_dim)
        k = k.reshape(B, T, cfg.n_head, head_dim)
        v = v.reshape(B, T, cfg.n_head, head_dim)
        att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head_dim).astype(x.dtype)
        causal = jnp.tril(jnp.ones((T, T), dtype=bool))
        att = jnp.where(causal[None, None], att, jnp.finfo(att.dtype).min)
        att = jax.nn.softmax(att, axis=-1)
        y = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(B, T, C)
        return nn.Dense(C, name="c_proj")(y)


class MLP(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        C = self.config.n_embd
        x = nn.Dense(4 * C, name="c_fc")(x)
        x = nn.gelu(x)
        return nn.Dense(C, name="c_proj")(x)


class Block(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + CausalSelfAttention(self.config, name="attn")(nn.LayerNorm(name="ln_1")(x))
        x = x + MLP(self.config, name="mlp")(nn.LayerNorm(name="ln_2")(x))
        return x


class ScanBlock(nn.Module):
    """``Block`` with the (carry, x) -> (carry, y) signature nn.scan wants."""

    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        return Block(self.config, name="block")(x), None


class GPT(nn.Module):
    config: GPTConfig
    scan_layers: bool = False
    remat_blocks: bool = False

    @nn.compact
    def __call__(self, idx: jax.Array) -> jax.Array:
        cfg = self.config
        T = idx.shape[1]
        wte = nn.Embed(
            cfg.vocab_size, cfg.n_embd, embedding_init=nn.initializers.normal(0.02), name="wte"
        )
        wpe = self.param("wpe", nn.initializers.normal(0.02), (cfg.block_size, cfg.n_embd))
        x = wte(idx) + wpe[:T]
        if self.scan_layers:
            blocks = nn.scan(
                ScanBlock,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                length=cfg.n_layer,
            )
            x, _ = blocks(cfg, name="blocks")(x, None)
        else:
            block_cls = nn.remat(Block) if self.remat_blocks else Block
            for i in range(cfg.n_layer):
                x = block_cls(cfg, name=f"block_{i}")(x)
        x = nn.LayerNorm(name="ln_f")(x)
        return wte.attend(x)  # tied output projection


def make_optimizer(
    peak_lr: float = 3e-4, warmup_steps: int = 100, total_steps: int = 2000
) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=peak_lr / 10,
        peak_value=peak_lr,
        warmup_steps=warmup_steps,
        decay_steps=total_steps,
        end_value=peak_lr / 100,
    )

    # no weight decay on biases, LayerNorm scales (rank-1 leaves)
    def decay_mask(params: Any) -> Any:
        return jax.tree.map(lambda p: p.ndim > 1, params)

    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=0.01, mask=decay_mask),
    )


def make_batch(cfg: GPTConfig, seed: int = 1) -> dict[str, jax.Array]:
    return token_batch(cfg.batch_size, cfg.block_size, cfg.vocab_size, seed)


def init_params(model: GPT, cfg: GPTConfig, seed: int = 0) -> Any:
    dummy = jnp.zeros((cfg.batch_size, cfg.block_size), jnp.int32)
    return jit_init(model.init, jax.random.PRNGKey(seed), dummy)["params"]


def unstack_params(scanned: Any, n_layer: int) -> Any:
    """Params of ``GPT(scan_layers=True)`` -> params of the unrolled ``GPT`` (same values)."""
    params = {k: v for k, v in scanned.items() if k != "blocks"}
    for i in range(n_layer):
        params[f"block_{i}"] = jax.tree.map(lambda a, i=i: a[i], scanned["blocks"]["block"])
    return params


def lm_loss(logits: Any, targets: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


@functools.cache
def _scanned_params_host(cfg: GPTConfig) -> Any:
    """One initialization for the whole family, kept as numpy (see _scanned_params)."""
    return jax.tree.map(np.asarray, init_params(GPT(cfg, scan_layers=True), cfg))


def _scanned_params(cfg: GPTConfig) -> Any:
    # fresh device buffers per build: a donating caller may delete the previous ones
    return jax.tree.map(jnp.asarray, _scanned_params_host(cfg))


def _unrolled_params(cfg: GPTConfig) -> Any:
    """The scanned params unstacked: every GPT case computes the same loss."""
    return unstack_params(_scanned_params(cfg), cfg.n_layer)


# ---------------------------------------------------------------------------------------
# flax_gpt: TrainState


def flax_gpt() -> Built:
    cfg = GPTConfig()
    model = GPT(cfg)
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=_unrolled_params(cfg), tx=make_optimizer()
    )
    state = state.replace(step=jnp.zeros((), jnp.int32))  # a device array, not a Python 0

    def train_step(
        state: train_state.TrainState, batch: dict[str, jax.Array]
    ) -> tuple[train_state.TrainState, jax.Array]:
        def loss_fn(params: Any) -> jax.Array:
            logits = state.apply_fn({"params": params}, batch["inputs"])
            return lm_loss(logits, batch["targets"])

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        state = state.apply_gradients(grads=grads)
        return state, loss

    return Built(step=train_step, args=(state, make_batch(cfg)), donate_argnums=())


# ---------------------------------------------------------------------------------------
# params/opt_state steps: scan, unrolled twin, remat


def _functional_step(model: GPT, tx: optax.GradientTransformation) -> Any:
    def train_step(
        params: Any, opt_state: optax.OptState, batch: dict[str, jax.Array]
    ) -> tuple[Any, optax.OptState, jax.Array]:
        def loss_fn(p: Any) -> jax.Array:
            logits = model.apply({"params": p}, batch["inputs"])
            return lm_loss(logits, batch["targets"])

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss

    return train_step


def _donated(model: GPT, params: Any, cfg: GPTConfig) -> Built:
    tx = make_optimizer()
    opt_state = tx.init(params)
    return Built(
        step=_functional_step(model, tx),
        args=(params, opt_state, make_batch(cfg)),
        donate_argnums=(0, 1),
    )


def flax_gpt_scan() -> Built:
    cfg = GPTConfig()
    return _donated(GPT(cfg, scan_layers=True), _scanned_params(cfg), cfg)


def flax_gpt_unrolled() -> Built:
    """The scan case's twin: same config and parameter values, blocks in a Python loop."""
    cfg = GPTConfig()
    return _donated(GPT(cfg), _unrolled_params(cfg), cfg)


def scan_twins(cfg: GPTConfig) -> tuple[Built, Built]:
    """The scanned model and its unrolled twin for any config (same parameter values)."""
    return (
        _donated(GPT(cfg, scan_layers=True), _scanned_params(cfg), cfg),
        _donated(GPT(cfg), _unrolled_params(cfg), cfg),
    )


def unrolled_twin() -> Built:
    """Alias of :func:`flax_gpt_unrolled` (the twin of ``flax_gpt_scan``)."""
    return flax_gpt_unrolled()


def flax_gpt_remat() -> Built:
    cfg = GPTConfig()
    return _donated(GPT(cfg, remat_blocks=True), _unrolled_params(cfg), cfg)
