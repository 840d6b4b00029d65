"""GPT: a decoder-only transformer language model (pre-layer-norm, GPT-2 style).

    tokens -> token emb + learned position emb -> L x [x + attn(LN(x)); x + mlp(LN(x))]
           -> LN -> logits (tied to the token embedding, or a separate head) -> CE loss

The batch is {"input_ids": (B, S) int32, "labels": (B, S) int32}: labels are the next
tokens. The loss is the mean cross-entropy over all B*S positions (a constant
denominator, so the step splits into microbatches by summation).

Presets follow the GPT suite of the Alpa paper (OSDI'22; `gpt_specs` in
alpa-projects/alpa benchmark/alpa/suite_manual_gpt.py): seq 1024, vocab 51200, global
batch 1024, tied embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import alpa_mlir.models.layers as L
import alpa_mlir.models.params as P
import alpa_mlir.models.transformer as T
from alpa_mlir.models.losses import cross_entropy
from alpa_mlir.models.optimizer import Optimizer
from alpa_mlir.models.precision import Precision
from alpa_mlir.models.training import Batch, TrainStep
from alpa_mlir.models.training import make_train_step as _make_train_step
from alpa_mlir.models.validation import require_transformer_sizes


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of a GPT model and its training batch."""

    batch_size: int  # sequences per training step (global batch)
    seq_len: int  # tokens per sequence; also the number of learned positions
    hidden_size: int  # model width H
    num_layers: int  # transformer blocks L
    num_heads: int  # attention heads (must divide hidden_size)
    vocab_size: int  # token vocabulary V
    mlp_ratio: int = 4  # feed-forward width = mlp_ratio * hidden_size
    tie_embeddings: bool = True  # LM head reuses the token embedding (as Alpa's GPT does)
    one_hot_embedding: bool = False  # token lookup as one-hot matmul instead of gather

    def __post_init__(self) -> None:
        require_transformer_sizes(self)


def _paper(hidden: int, layers: int, heads: int) -> GPTConfig:
    return GPTConfig(
        batch_size=1024,
        seq_len=1024,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        vocab_size=51200,
    )


PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(
        batch_size=8, seq_len=16, hidden_size=32, num_layers=2, num_heads=4, vocab_size=64
    ),
    "125M": _paper(768, 12, 12),
    "350M": _paper(1024, 24, 16),
    "760M": _paper(1536, 24, 16),
    "1.3B": _paper(2048, 24, 32),
    "2.6B": _paper(2560, 32, 32),
    "6.7B": _paper(4096, 32, 32),
    "15B": _paper(5120, 48, 40),
    "39B": _paper(8192, 48, 64),
}


def block_spec(config: GPTConfig) -> P.SpecTree:
    """One pre-LN decoder block."""
    h = config.hidden_size
    return {
        "attn": T.attention_spec(h),
        "ln_attn": L.layer_norm_spec(h),
        "ln_mlp": L.layer_norm_spec(h),
        "mlp": T.mlp_spec(h, config.mlp_ratio * h),
    }


def param_specs(config: GPTConfig) -> P.SpecTree:
    """All parameters, as a `ParamSpec` tree."""
    h, v = config.hidden_size, config.vocab_size
    spec: dict[str, Any] = {
        "embed": {"position": P.normal(config.seq_len, h), "token": P.normal(v, h)},
        "final_ln": L.layer_norm_spec(h),
        "layers": [block_spec(config) for _ in range(config.num_layers)],
    }
    if not config.tie_embeddings:
        spec["lm_head"] = P.normal(h, v)
    return spec


def batch_shapes(config: GPTConfig) -> Batch:
    """Abstract training batch."""
    return T.lm_batch_shapes(config.batch_size, config.seq_len)


def example_batch(config: GPTConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random token sequences; labels are the inputs shifted by one."""
    return T.lm_example_batch(config.batch_size, config.seq_len, config.vocab_size, rng)


def logits(config: GPTConfig, params: P.Params, input_ids: jax.Array) -> jax.Array:
    """Next-token logits, shape (B, S, V)."""
    embed = params["embed"]
    x = L.embedding_lookup(embed["token"], input_ids, one_hot=config.one_hot_embedding)
    x = x + embed["position"]
    for layer in params["layers"]:
        x = x + T.attention(
            layer["attn"], L.layer_norm(layer["ln_attn"], x), config.num_heads, causal=True
        )
        x = x + T.mlp(layer["mlp"], L.layer_norm(layer["ln_mlp"], x))
    x = L.layer_norm(params["final_ln"], x)
    if config.tie_embeddings:
        return jnp.einsum("bsh,vh->bsv", x, embed["token"])
    return jnp.einsum("bsh,hv->bsv", x, params["lm_head"])


def loss(config: GPTConfig, params: P.Params, batch: Batch) -> jax.Array:
    """Mean next-token cross-entropy over all positions."""
    return jnp.mean(cross_entropy(logits(config, params, batch["input_ids"]), batch["labels"]))


def make_train_step(config: GPTConfig, optimizer: Optimizer | None = None,
                    precision: Precision | None = None) -> TrainStep:
    """`train_step(params, opt_state, batch) -> (new_params, new_opt_state, loss)`."""
    return _make_train_step(lambda p, b: loss(config, p, b), optimizer, precision)
