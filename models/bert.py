"""BERT: a bidirectional transformer encoder trained with a masked-LM loss.

    tokens -> token emb + position emb -> LN -> L x [LN(x + attn(x)); LN(x + mlp(x))]
           -> MLM head (dense, gelu, LN) -> logits over the vocab (tied, + bias)

The batch is {"input_ids": (B, S) int32 (masked positions already replaced),
"labels": (B, S) int32 (the original tokens), "label_weights": (B, S) float32 (1 at the
positions to predict, 0 elsewhere)}. The loss is sum(weights * CE) / (B * S): a constant
denominator rather than sum(weights), so the step splits into microbatches by summation.

Presets: BERT-base and BERT-large sizes (Devlin et al.), plus `tiny`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
class BertConfig:
    """Sizes of a BERT encoder and its training batch."""

    batch_size: int  # sequences per training step (global batch)
    seq_len: int  # tokens per sequence; also the number of learned positions
    hidden_size: int  # model width H
    num_layers: int  # encoder blocks L
    num_heads: int  # attention heads (must divide hidden_size)
    vocab_size: int  # token vocabulary V
    mlp_ratio: int = 4  # feed-forward width = mlp_ratio * hidden_size
    mask_rate: float = 0.15  # fraction of positions `example_batch` masks for prediction
    one_hot_embedding: bool = False  # token lookup as one-hot matmul instead of gather

    def __post_init__(self) -> None:
        require_transformer_sizes(self)


PRESETS: dict[str, BertConfig] = {
    "tiny": BertConfig(
        batch_size=8, seq_len=16, hidden_size=32, num_layers=2, num_heads=4, vocab_size=64
    ),
    "110M": BertConfig(
        batch_size=256,
        seq_len=512,
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        vocab_size=30522,
    ),
    "340M": BertConfig(
        batch_size=256,
        seq_len=512,
        hidden_size=1024,
        num_layers=24,
        num_heads=16,
        vocab_size=30522,
    ),
}

# Token id written over the masked input positions by `example_batch`.
MASK_TOKEN = 0


def block_spec(config: BertConfig) -> P.SpecTree:
    """One post-LN encoder block."""
    h = config.hidden_size
    return {
        "attn": T.attention_spec(h),
        "ln_attn": L.layer_norm_spec(h),
        "ln_mlp": L.layer_norm_spec(h),
        "mlp": T.mlp_spec(h, config.mlp_ratio * h),
    }


def param_specs(config: BertConfig) -> P.SpecTree:
    """All parameters, as a `ParamSpec` tree."""
    h, v = config.hidden_size, config.vocab_size
    return {
        "embed": {
            "ln": L.layer_norm_spec(h),
            "position": P.normal(config.seq_len, h),
            "token": P.normal(v, h),
        },
        "layers": [block_spec(config) for _ in range(config.num_layers)],
        "mlm_head": {
            "bias": P.zeros(v),
            "ln": L.layer_norm_spec(h),
            "transform": L.dense_spec(h, h),
        },
    }


def batch_shapes(config: BertConfig) -> Batch:
    """Abstract training batch."""
    shape = (config.batch_size, config.seq_len)
    return {
        "input_ids": jax.ShapeDtypeStruct(shape, jnp.int32),
        "label_weights": jax.ShapeDtypeStruct(shape, jnp.float32),
        "labels": jax.ShapeDtypeStruct(shape, jnp.int32),
    }


def example_batch(config: BertConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random tokens with `mask_rate` of the positions masked (at least one per sequence)."""
    shape = (config.batch_size, config.seq_len)
    labels = rng.integers(0, config.vocab_size, shape, dtype=np.int32)
    masked = rng.random(shape) < config.mask_rate
    masked[:, 0] = True
    input_ids = np.where(masked, MASK_TOKEN, labels).astype(np.int32)
    return {
        "input_ids": input_ids,
        "label_weights": masked.astype(np.float32),
        "labels": labels,
    }


def logits(config: BertConfig, params: P.Params, input_ids: jax.Array) -> jax.Array:
    """Masked-LM logits, shape (B, S, V)."""
    embed = params["embed"]
    x = L.embedding_lookup(embed["token"], input_ids, one_hot=config.one_hot_embedding)
    x = L.layer_norm(embed["ln"], x + embed["position"])
    for layer in params["layers"]:
        x = L.layer_norm(
            layer["ln_attn"], x + T.attention(layer["attn"], x, config.num_heads, causal=False)
        )
        x = L.layer_norm(layer["ln_mlp"], x + T.mlp(layer["mlp"], x))
    head = params["mlm_head"]
    x = L.layer_norm(head["ln"], jax.nn.gelu(L.dense(head["transform"], x), approximate=True))
    return jnp.einsum("bsh,vh->bsv", x, embed["token"]) + head["bias"]


def loss(config: BertConfig, params: P.Params, batch: Batch) -> jax.Array:
    """Weighted cross-entropy at the masked positions, divided by B * S."""
    ce = cross_entropy(logits(config, params, batch["input_ids"]), batch["labels"])
    return jnp.sum(ce * batch["label_weights"]) / (config.batch_size * config.seq_len)


def make_train_step(config: BertConfig, optimizer: Optimizer | None = None,
                    precision: Precision | None = None) -> TrainStep:
    """`train_step(params, opt_state, batch) -> (new_params, new_opt_state, loss)`."""
    return _make_train_step(lambda p, b: loss(config, p, b), optimizer, precision)
