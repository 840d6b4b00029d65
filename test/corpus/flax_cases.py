"""flax.linen cases of the corpus other than the GPT family.

* ``flax_dropout``: MLP classifier with ``nn.Dropout``; the step takes a raw
  ``jax.random.PRNGKey`` (uint32[2]), splits it, and returns the new key.
* ``flax_moe``: LM with ``nn.MultiHeadDotProductAttention`` and a GShard/Switch-style
  top-2 mixture-of-experts MLP (capacity via cumsum, one-hot dispatch/combine einsums),
  the load-balancing loss collected with ``sow``.
* ``flax_cnn_bn``: conv net with ``nn.BatchNorm`` (mutable ``batch_stats``) trained with
  a ``TrainState`` subclass carrying ``batch_stats``; returns loss and accuracy.
* ``flax_bf16``: LLaMA-style LM, bf16 compute over f32 parameters (``nn.RMSNorm``, RoPE,
  SwiGLU), f32 softmax and loss.
* ``flax_sdpa``: LM whose attention is ``jax.nn.dot_product_attention``.
* ``flax_multisteps``: MLP regressor with ``optax.MultiSteps`` gradient accumulation; the
  example state is three micro-steps in, so the next step applies the update.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from . import Built
from ._common import jit_init, labels, normal, token_batch, uniform

PyTree = Any


def _sgd_like_step(
    model: nn.Module, tx: optax.GradientTransformation, loss_of_logits: Any, input_key: str
) -> Any:
    """``step(params, opt_state, batch) -> (params, opt_state, loss)`` as users write it."""

    def train_step(
        params: PyTree, opt_state: optax.OptState, batch: dict[str, jax.Array]
    ) -> tuple[PyTree, optax.OptState, jax.Array]:
        def loss_fn(params: PyTree) -> jax.Array:
            out = model.apply({"params": params}, batch[input_key])
            return loss_of_logits(out, batch)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss

    return train_step


def _next_token_loss(logits: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
    logits = logits.astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()


# ---------------------------------------------------------------------------------------
# flax_dropout


class DropoutMLP(nn.Module):
    hidden: int = 128
    num_classes: int = 16
    dropout_rate: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = nn.Dropout(0.1, deterministic=not train)(x)  # input dropout
        for _ in range(2):
            x = nn.Dense(self.hidden)(x)
            x = nn.relu(x)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


def flax_dropout() -> Built:
    model = DropoutMLP()
    x = normal((16, 64), seed=1)
    y = labels((16,), model.num_classes, seed=2)
    init = jit_init(model.init, jax.random.PRNGKey(0), x, train=False, static_argnames=("train",))
    params = init["params"]
    tx = optax.adamw(learning_rate=3e-4, weight_decay=1e-4)
    opt_state = tx.init(params)

    def train_step(
        params: PyTree, opt_state: optax.OptState, batch: dict[str, jax.Array], rng: jax.Array
    ) -> tuple[PyTree, optax.OptState, jax.Array, jax.Array]:
        rng, dropout_rng = jax.random.split(rng)

        def loss_fn(params: PyTree) -> jax.Array:
            logits = model.apply(
                {"params": params}, batch["x"], train=True, rngs={"dropout": dropout_rng}
            )
            labels = jax.nn.one_hot(batch["y"], model.num_classes)
            return optax.softmax_cross_entropy(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss, rng

    rng = jax.random.PRNGKey(42)  # legacy raw key: uint32[2]
    assert rng.dtype == jnp.uint32
    return Built(train_step, (params, opt_state, {"x": x, "y": y}, rng), donate_argnums=())


# ---------------------------------------------------------------------------------------
# flax_moe


class MoEMLP(nn.Module):
    """Top-k routed experts with a fixed capacity (tokens over capacity are dropped)."""

    num_experts: int = 8
    top_k: int = 2
    d_ff: int = 128
    capacity_factor: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        B, T, C = x.shape
        n_tok, n_exp, k = B * T, self.num_experts, self.top_k
        capacity = math.ceil(k * n_tok / n_exp * self.capacity_factor)
        tokens = x.reshape(n_tok, C)

        router_logits = nn.Dense(n_exp, use_bias=False, name="router")(tokens)
        router_probs = jax.nn.softmax(router_logits, axis=-1)
        gates, expert_index = jax.lax.top_k(router_probs, k)  # [N, k]
        gates = gates / gates.sum(axis=-1, keepdims=True)

        # slot of each (token, choice) in its expert's buffer; first choices go first
        expert_mask = jax.nn.one_hot(expert_index, n_exp, dtype=jnp.int32)  # [N, k, E]
        by_priority = expert_mask.transpose(1, 0, 2).reshape(k * n_tok, n_exp)
        position = jnp.cumsum(by_priority, axis=0) * by_priority - 1
        position = position.reshape(k, n_tok, n_exp).transpose(1, 0, 2)  # -1: not routed
        position = jnp.where(position < capacity, position, -1)
        slots = jax.nn.one_hot(position, capacity, dtype=x.dtype)  # [N, k, E, cap]
        dispatch = slots.sum(axis=1)  # [N, E, cap]
        combine = jnp.einsum("nk,nkec->nec", gates, slots)

        init = nn.initializers.lecun_normal(batch_axis=(0,))
        w_in = self.param("w_in", init, (n_exp, C, self.d_ff))
        w_out = self.param("w_out", init, (n_exp, self.d_ff, C))
        expert_in = jnp.einsum("nec,nd->ecd", dispatch, tokens)
        hidden = nn.gelu(jnp.einsum("ecd,edf->ecf", expert_in, w_in))
        expert_out = jnp.einsum("ecf,efd->ecd", hidden, w_out)
        out = jnp.einsum("nec,ecd->nd", combine, expert_out)

        # Switch Transformer load-balancing loss on the top-1 choice
        density = expert_mask[:, 0, :].astype(jnp.float32).mean(axis=0)
        density_proxy = router_probs.mean(axis=0)
        self.sow("intermediates", "aux_loss", jnp.sum(density * density_proxy) * n_exp)
        return out.reshape(B, T, C)


class MoELM(nn.Module):
    vocab_size: int = 128
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    max_len: int = 16

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = nn.Embed(self.vocab_size, self.d_model)(tokens)
        pos = self.param(
            "pos_embedding", nn.initializers.normal(0.02), (self.max_len, self.d_model)
        )
        x = x + pos[None, : tokens.shape[1]]
        mask = nn.make_causal_mask(tokens)
        for i in range(self.num_layers):
            h = nn.LayerNorm(name=f"ln_attn_{i}")(x)
            x = x + nn.MultiHeadDotProductAttention(
                num_heads=self.num_heads,
                qkv_features=self.d_model,
                use_bias=False,  # T5/Switch style: no biases in attention
                name=f"attn_{i}",
            )(h, mask=mask, deterministic=True)
            x = x + MoEMLP(name=f"moe_{i}")(nn.LayerNorm(name=f"ln_moe_{i}")(x))
        x = nn.LayerNorm(name="ln_f")(x)
        return nn.Dense(self.vocab_size, name="lm_head")(x)


def flax_moe() -> Built:
    model = MoELM()
    batch = token_batch(8, model.max_len, model.vocab_size, seed=1)
    params = jit_init(model.init, jax.random.PRNGKey(0), batch["inputs"])["params"]
    tx = optax.adam(3e-4)
    opt_state = tx.init(params)
    aux_weight = 0.01

    def train_step(
        params: PyTree, opt_state: optax.OptState, batch: dict[str, jax.Array]
    ) -> tuple[PyTree, optax.OptState, dict[str, jax.Array]]:
        def loss_fn(params: PyTree) -> tuple[jax.Array, tuple[jax.Array, Any]]:
            logits, state = model.apply(
                {"params": params}, batch["inputs"], mutable=["intermediates"]
            )
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()
            aux = sum(jax.tree.leaves(state["intermediates"]))
            return ce + aux_weight * aux, (ce, aux)

        (loss, (ce, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": loss, "ce": ce, "aux_loss": aux}

    return Built(train_step, (params, opt_state, batch), donate_argnums=())


# ---------------------------------------------------------------------------------------
# flax_cnn_bn


class CNN(nn.Module):
    num_classes: int = 16

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Conv(32, kernel_size=(3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = nn.Conv(64, kernel_size=(3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(128)(x)
        x = nn.relu(x)
        return nn.Dense(self.num_classes)(x)


class BNTrainState(train_state.TrainState):
    batch_stats: PyTree


def flax_cnn_bn() -> Built:
    model = CNN()
    images = uniform((8, 16, 16, 3), seed=1)
    image_labels = labels((8,), model.num_classes, seed=2)
    variables = jit_init(
        model.init, jax.random.PRNGKey(0), images, train=False, static_argnames=("train",)
    )
    state = BNTrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=optax.sgd(learning_rate=0.05, momentum=0.9),
    )
    state = state.replace(step=jnp.zeros((), jnp.int32))

    def train_step(
        state: BNTrainState, batch: dict[str, jax.Array]
    ) -> tuple[BNTrainState, dict[str, jax.Array]]:
        def loss_fn(params: PyTree) -> tuple[jax.Array, tuple[jax.Array, PyTree]]:
            logits, updates = state.apply_fn(
                {"params": params, "batch_stats": state.batch_stats},
                batch["image"],
                train=True,
                mutable=["batch_stats"],
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            return loss, (logits, updates)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (logits, updates)), grads = grad_fn(state.params)
        state = state.apply_gradients(grads=grads)
        state = state.replace(batch_stats=updates["batch_stats"])
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return state, {"loss": loss, "accuracy": accuracy}

    batch = {"image": images, "label": image_labels}
    return Built(train_step, (state, batch), donate_argnums=(0,))


# ---------------------------------------------------------------------------------------
# flax_bf16


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = 128
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    ffn_hidden: int = 128
    max_seq_len: int = 16
    dtype: Any = jnp.bfloat16  # compute
    param_dtype: Any = jnp.float32  # master weights


def apply_rope(x: jax.Array, theta: float = 10000.0) -> jax.Array:
    """Rotary position embedding on [batch, seq, heads, head_dim], computed in f32."""
    seq, head_dim = x.shape[1], x.shape[-1]
    freqs = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = jnp.outer(jnp.arange(seq, dtype=jnp.float32), freqs)  # [seq, head_dim/2]
    sin, cos = jnp.sin(angles)[None, :, None, :], jnp.cos(angles)[None, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return rotated.astype(x.dtype)


class LlamaAttention(nn.Module):
    cfg: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        B, T, _ = x.shape
        head_dim = cfg.dim // cfg.n_heads

        def dense(features: int, name: str) -> nn.Dense:
            return nn.Dense(
                features, use_bias=False, dtype=cfg.dtype, param_dtype=cfg.param_dtype, name=name
            )

        q = dense(cfg.dim, "wq")(x).reshape(B, T, cfg.n_heads, head_dim)
        k = dense(cfg.dim, "wk")(x).reshape(B, T, cfg.n_heads, head_dim)
        v = dense(cfg.dim, "wv")(x).reshape(B, T, cfg.n_heads, head_dim)
        q, k = apply_rope(q), apply_rope(k)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(head_dim)
        scores = jnp.where(jnp.tril(jnp.ones((T, T), bool)), scores, -1e9)
        probs = jax.nn.softmax(scores, axis=-1).astype(cfg.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(B, T, cfg.dim)
        return dense(cfg.dim, "wo")(out)


class SwiGLU(nn.Module):
    cfg: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        kw = {"use_bias": False, "dtype": cfg.dtype, "param_dtype": cfg.param_dtype}
        gate = nn.Dense(cfg.ffn_hidden, name="w1", **kw)(x)
        up = nn.Dense(cfg.ffn_hidden, name="w3", **kw)(x)
        return nn.Dense(cfg.dim, name="w2", **kw)(nn.silu(gate) * up)


class LlamaBlock(nn.Module):
    cfg: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        norm = {"dtype": self.cfg.dtype, "param_dtype": self.cfg.param_dtype, "epsilon": 1e-5}
        x = x + LlamaAttention(self.cfg, name="attention")(
            nn.RMSNorm(name="attention_norm", **norm)(x)
        )
        x = x + SwiGLU(self.cfg, name="feed_forward")(nn.RMSNorm(name="ffn_norm", **norm)(x))
        return x


class Llama(nn.Module):
    cfg: LlamaConfig

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        cfg = self.cfg
        x = nn.Embed(
            cfg.vocab_size,
            cfg.dim,
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
            name="tok_embeddings",
        )(tokens)
        for i in range(cfg.n_layers):
            x = LlamaBlock(cfg, name=f"layers_{i}")(x)
        x = nn.RMSNorm(dtype=cfg.dtype, param_dtype=cfg.param_dtype, name="norm")(x)
        logits = nn.Dense(
            cfg.vocab_size,
            use_bias=False,
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
            name="output",
        )(x)
        return logits.astype(jnp.float32)


def flax_bf16() -> Built:
    cfg = LlamaConfig()
    model = Llama(cfg)
    batch = token_batch(8, cfg.max_seq_len, cfg.vocab_size, seed=1)
    params = jit_init(model.init, jax.random.PRNGKey(0), batch["inputs"])["params"]
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    schedule = optax.cosine_decay_schedule(init_value=3e-4, decay_steps=1000, alpha=0.1)
    tx = optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=0.1)
    opt_state = tx.init(params)
    step = _sgd_like_step(model, tx, _next_token_loss, "inputs")
    return Built(step, (params, opt_state, batch), donate_argnums=(0, 1))


# ---------------------------------------------------------------------------------------
# flax_sdpa


class SDPASelfAttention(nn.Module):
    num_heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        head_dim = features // self.num_heads
        heads = (self.num_heads, head_dim)
        q = nn.DenseGeneral(heads, use_bias=False, name="query")(x)  # [B, T, H, D]
        k = nn.DenseGeneral(heads, use_bias=False, name="key")(x)
        v = nn.DenseGeneral(heads, use_bias=False, name="value")(x)
        y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=None)
        return nn.DenseGeneral(features, axis=(-2, -1), name="out")(y)


class SDPALM(nn.Module):
    vocab_size: int = 96
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    max_len: int = 16

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = nn.Embed(self.vocab_size, self.d_model)(tokens)
        x = x + nn.Embed(self.max_len, self.d_model, name="pos_embed")(jnp.arange(tokens.shape[1]))
        for _ in range(self.num_layers):
            x = x + SDPASelfAttention(self.num_heads)(nn.LayerNorm()(x))
            h = nn.Dense(4 * self.d_model)(nn.LayerNorm()(x))
            x = x + nn.Dense(self.d_model)(nn.silu(h))
        return nn.Dense(self.vocab_size)(nn.LayerNorm()(x))


def flax_sdpa() -> Built:
    model = SDPALM()
    batch = token_batch(8, model.max_len, model.vocab_size, seed=3)
    params = jit_init(model.init, jax.random.PRNGKey(0), batch["inputs"])["params"]
    tx = optax.adam(learning_rate=3e-4)
    opt_state = tx.init(params)
    step = _sgd_like_step(model, tx, _next_token_loss, "inputs")
    return Built(step, (params, opt_state, batch), donate_argnums=())


# ---------------------------------------------------------------------------------------
# flax_multisteps


class Regressor(nn.Module):
    features: tuple[int, ...] = (128, 128, 8)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.features[:-1]:
            x = nn.tanh(nn.Dense(width)(x))
        return nn.Dense(self.features[-1])(x)


def flax_multisteps() -> Built:
    model = Regressor()
    x = normal((16, 64), seed=1)
    y = normal((16, 8), seed=2)
    params = jit_init(model.init, jax.random.PRNGKey(0), x)["params"]
    tx = optax.MultiSteps(optax.adam(3e-4), every_k_schedule=4)
    opt_state = tx.init(params)

    def mse(pred: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
        return jnp.mean(optax.l2_loss(pred, batch["y"]))

    step = _sgd_like_step(model, tx, mse, "x")
    # three micro-batches in: the exported step is the one that applies the update
    jitted = jax.jit(step)
    for i in range(3):
        noise = 0.1 * normal(x.shape, seed=10 + i)
        params, opt_state, _ = jitted(params, opt_state, {"x": x + noise, "y": y})
    assert int(opt_state.mini_step) == 3
    return Built(step, (params, opt_state, {"x": x, "y": y}), donate_argnums=(0, 1))
