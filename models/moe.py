"""MoE: a GShard-style mixture-of-experts decoder language model.

Every other block (indices 0, 2, 4, ... as in Alpa's MoE) replaces the dense feed-forward
layer with E experts and top-2 gating:

    x (B, S, H) -> groups (G, s, H) of `expert_group_size` tokens
    gates = softmax(x @ w_gate)                                  (G, s, E)
    combine (G, s, E, C), dispatch = top-2 routing with capacity C = ceil(f * 2s / E)
    expert_in  = einsum("gsec,gsh->egch", dispatch, x)           one-hot, no gather
    expert_out = einsum(relu(einsum("egch,ehf->egcf", expert_in, wi)), wo)
    y          = einsum("gsec,egch->gsh", combine, expert_out)

The loss is the mean next-token cross-entropy plus `aux_loss_weight` times GShard's
load-balancing loss (per group, averaged over groups, summed over MoE layers). The batch
is {"input_ids", "labels"} as in `gpt`.

Presets follow the MoE suite of the Alpa paper (OSDI'22; `moe_specs` in
alpa-projects/alpa benchmark/alpa/suite_manual_moe.py and benchmark_one_case_moe.py):
seq 1024, vocab 32000, 16 heads, expert group size 2048, FFN width 8*H for both dense and
expert layers, untied LM head, global batch 1024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import alpa_mlir.models.layers as L
import alpa_mlir.models.params as P
import alpa_mlir.models.transformer as T
from alpa_mlir.models.errors import ModelConfigError
from alpa_mlir.models.losses import cross_entropy
from alpa_mlir.models.optimizer import Optimizer
from alpa_mlir.models.precision import Precision, in_float32
from alpa_mlir.models.training import Batch, TrainStep
from alpa_mlir.models.training import make_train_step as _make_train_step
from alpa_mlir.models.validation import require_transformer_sizes


@dataclass(frozen=True)
class MoEConfig:
    """Sizes of a mixture-of-experts LM and its training batch."""

    batch_size: int  # sequences per training step (global batch)
    seq_len: int  # tokens per sequence; also the number of learned positions
    hidden_size: int  # model width H
    num_layers: int  # transformer blocks L; blocks 0, 2, 4, ... are MoE blocks
    num_heads: int  # attention heads (must divide hidden_size)
    vocab_size: int  # token vocabulary V
    num_experts: int  # experts E per MoE block
    expert_group_size: int  # tokens per routing group (GShard's S); capped at B*S tokens
    mlp_ratio: int = 8  # dense and expert FFN width = mlp_ratio * hidden_size
    capacity_factor: float = 1.0  # expert capacity C = ceil(capacity_factor * 2 * s / E)
    aux_loss_weight: float = 0.01  # weight of the load-balancing loss
    tie_embeddings: bool = False  # LM head reuses the token embedding
    one_hot_embedding: bool = False  # token lookup as one-hot matmul instead of gather

    def __post_init__(self) -> None:
        require_transformer_sizes(self, "num_experts", "expert_group_size")
        if self.capacity_factor <= 0:
            raise ModelConfigError(
                f"MoEConfig.capacity_factor must be > 0, got {self.capacity_factor!r}"
            )
        tokens = self.batch_size * self.seq_len
        if tokens % self.group_size != 0:
            raise ModelConfigError(
                f"MoEConfig: batch_size*seq_len={tokens} tokens must split into groups of "
                f"expert_group_size={self.group_size}"
            )

    @property
    def group_size(self) -> int:
        """Tokens per routing group: expert_group_size, at most all tokens of the batch."""
        return min(self.expert_group_size, self.batch_size * self.seq_len)

    @property
    def capacity(self) -> int:
        """Slots per expert and group."""
        return max(1, math.ceil(self.capacity_factor * 2 * self.group_size / self.num_experts))


def _paper(hidden: int, layers: int, experts: int) -> MoEConfig:
    return MoEConfig(
        batch_size=1024,
        seq_len=1024,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=16,
        vocab_size=32000,
        num_experts=experts,
        expert_group_size=2048,
    )


PRESETS: dict[str, MoEConfig] = {
    "tiny": MoEConfig(
        batch_size=8,
        seq_len=16,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        vocab_size=64,
        num_experts=4,
        expert_group_size=16,
        mlp_ratio=4,
    ),
    "380M": _paper(768, 8, 8),
    "690M": _paper(768, 8, 16),
    "1.3B": _paper(768, 16, 16),
    "2.4B": _paper(1024, 16, 16),
    "10B": _paper(1536, 16, 32),
}


def is_moe_layer(index: int) -> bool:
    """Whether block `index` has an MoE feed-forward layer."""
    return index % 2 == 0


def moe_ffn_spec(config: MoEConfig) -> P.SpecTree:
    """Gate and stacked expert weights (no biases)."""
    h, e = config.hidden_size, config.num_experts
    f = config.mlp_ratio * h
    return {"gate": P.normal(h, e), "wi": P.normal(e, h, f), "wo": P.normal(e, f, h)}


def block_spec(config: MoEConfig, index: int) -> P.SpecTree:
    """One pre-LN decoder block, dense or MoE."""
    h = config.hidden_size
    spec: dict[str, Any] = {
        "attn": T.attention_spec(h),
        "ln_attn": L.layer_norm_spec(h),
        "ln_mlp": L.layer_norm_spec(h),
    }
    if is_moe_layer(index):
        spec["moe"] = moe_ffn_spec(config)
    else:
        spec["mlp"] = T.mlp_spec(h, config.mlp_ratio * h)
    return spec


def param_specs(config: MoEConfig) -> P.SpecTree:
    """All parameters, as a `ParamSpec` tree."""
    h, v = config.hidden_size, config.vocab_size
    spec: dict[str, Any] = {
        "embed": {"position": P.normal(config.seq_len, h), "token": P.normal(v, h)},
        "final_ln": L.layer_norm_spec(h),
        "layers": [block_spec(config, i) for i in range(config.num_layers)],
    }
    if not config.tie_embeddings:
        spec["lm_head"] = P.normal(h, v)
    return spec


def batch_shapes(config: MoEConfig) -> Batch:
    """Abstract training batch."""
    return T.lm_batch_shapes(config.batch_size, config.seq_len)


def example_batch(config: MoEConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random token sequences; labels are the inputs shifted by one."""
    return T.lm_example_batch(config.batch_size, config.seq_len, config.vocab_size, rng)


def top2_routing(gates: jax.Array, capacity: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """GShard top-2 gating over `gates` (G, s, E) softmax probabilities.

    Returns (combine (G, s, E, C) weights, dispatch (G, s, E, C) 0/1 mask, load-balancing
    loss). First choices take expert slots before second choices; tokens beyond an
    expert's capacity are dropped for that expert.
    """
    num_experts = gates.shape[-1]
    dtype = gates.dtype
    first = jax.nn.one_hot(jnp.argmax(gates, axis=-1), num_experts, dtype=dtype)
    second = jax.nn.one_hot(jnp.argmax(gates * (1.0 - first), axis=-1), num_experts, dtype=dtype)
    # Load balancing (GShard): fraction of tokens whose first choice is e, times the mean
    # gate of e, per group; averaged over groups.
    aux = num_experts * jnp.mean(
        jnp.sum(jnp.mean(first, axis=1) * jnp.mean(gates, axis=1), axis=-1)
    )
    # Slot of each token in its expert's buffer: a running count along the group.
    pos_first = jnp.cumsum(first, axis=1) - first
    first = first * (pos_first < capacity)
    pos_second = jnp.cumsum(second, axis=1) - second + jnp.sum(first, axis=1, keepdims=True)
    second = second * (pos_second < capacity)
    gate_first = jnp.sum(gates * first, axis=-1)
    gate_second = jnp.sum(gates * second, axis=-1)
    denom = gate_first + gate_second
    denom = jnp.where(denom > 0, denom, 1.0)
    slot_first = jax.nn.one_hot(
        jnp.sum(pos_first * first, axis=-1).astype(jnp.int32), capacity, dtype=dtype
    )
    slot_second = jax.nn.one_hot(
        jnp.sum(pos_second * second, axis=-1).astype(jnp.int32), capacity, dtype=dtype
    )
    dispatch_first = first[..., None] * slot_first[..., None, :]
    dispatch_second = second[..., None] * slot_second[..., None, :]
    combine = (gate_first / denom)[..., None, None] * dispatch_first + (gate_second / denom)[
        ..., None, None
    ] * dispatch_second
    return combine, dispatch_first + dispatch_second, aux


def moe_ffn(config: MoEConfig, p: P.Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The MoE feed-forward layer on x (B, S, H); returns (output, load-balancing loss)."""
    batch, seq, hidden = x.shape
    group = config.group_size
    xs = x.reshape(batch * seq // group, group, hidden)
    gates = jax.nn.softmax(in_float32(jnp.einsum("gsh,he->gse", xs, p["gate"])), axis=-1).astype(xs.dtype)
    combine, dispatch, aux = top2_routing(gates, config.capacity)
    expert_in = jnp.einsum("gsec,gsh->egch", dispatch, xs)
    expert_hidden = jax.nn.relu(jnp.einsum("egch,ehf->egcf", expert_in, p["wi"]))
    expert_out = jnp.einsum("egcf,efh->egch", expert_hidden, p["wo"])
    y = jnp.einsum("gsec,egch->gsh", combine, expert_out)
    return y.reshape(batch, seq, hidden), aux


def forward(
    config: MoEConfig, params: P.Params, input_ids: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(logits (B, S, V), summed load-balancing loss)."""
    embed = params["embed"]
    x = L.embedding_lookup(embed["token"], input_ids, one_hot=config.one_hot_embedding)
    x = x + embed["position"]
    aux_total = jnp.zeros((), x.dtype)
    for layer in params["layers"]:
        x = x + T.attention(
            layer["attn"], L.layer_norm(layer["ln_attn"], x), config.num_heads, causal=True
        )
        normed = L.layer_norm(layer["ln_mlp"], x)
        if "moe" in layer:
            y, aux = moe_ffn(config, layer["moe"], normed)
            aux_total = aux_total + aux
        else:
            y = T.mlp(layer["mlp"], normed)
        x = x + y
    x = L.layer_norm(params["final_ln"], x)
    if config.tie_embeddings:
        return jnp.einsum("bsh,vh->bsv", x, embed["token"]), aux_total
    return jnp.einsum("bsh,hv->bsv", x, params["lm_head"]), aux_total


def loss(config: MoEConfig, params: P.Params, batch: Batch) -> jax.Array:
    """Mean next-token cross-entropy + aux_loss_weight * load-balancing loss."""
    logits, aux = forward(config, params, batch["input_ids"])
    return jnp.mean(cross_entropy(logits, batch["labels"])) + config.aux_loss_weight * aux


def make_train_step(config: MoEConfig, optimizer: Optimizer | None = None,
                    precision: Precision | None = None) -> TrainStep:
    """`train_step(params, opt_state, batch) -> (new_params, new_opt_state, loss)`."""
    return _make_train_step(lambda p, b: loss(config, p, b), optimizer, precision)
