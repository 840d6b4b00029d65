"""flax.nnx case of the corpus: a small ViT trained through nnx's functional API.

The model is built as stateful ``nnx.Module`` objects; the training step is a pure
function over the ``nnx.State`` of its parameters (``nnx.split`` once outside,
``nnx.merge`` inside the loss), so plain ``jax.jit`` can lower it. (The split is taken from ``nnx.eval_shape`` for the
graphdef and one jitted constructor call for the parameter values, rather than an eager
constructor that compiles a small XLA program per initializer shape.)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from . import Built
from ._common import jit_init, labels, uniform


class EncoderBlock(nnx.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=num_heads, in_features=dim, decode=False, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.fc1 = nnx.Linear(dim, mlp_dim, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(nnx.gelu(self.fc1(self.norm2(x))))


class ViT(nnx.Module):
    def __init__(
        self,
        *,
        image_size: int = 16,
        patch: int = 4,
        channels: int = 3,
        dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        num_classes: int = 16,
        rngs: nnx.Rngs,
    ):
        num_patches = (image_size // patch) ** 2
        self.patch_embed = nnx.Conv(
            channels, dim, kernel_size=(patch, patch), strides=(patch, patch), rngs=rngs
        )
        self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, num_patches, dim)))
        self.blocks = nnx.List(
            [EncoderBlock(dim, num_heads, 2 * dim, rngs=rngs) for _ in range(depth)]
        )
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        x = self.patch_embed(images)  # [B, H/p, W/p, dim]
        x = x.reshape(x.shape[0], -1, x.shape[-1]) + self.pos_embed[...]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(axis=1))


def flax_nnx_vit() -> Built:
    def create_model() -> ViT:
        return ViT(rngs=nnx.Rngs(0))

    graphdef, _ = nnx.split(nnx.eval_shape(create_model), nnx.Param)
    params = jit_init(lambda: nnx.split(create_model(), nnx.Param)[1])
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=1e-5, peak_value=1e-3, warmup_steps=50, decay_steps=1000
    )
    tx = optax.adamw(schedule, weight_decay=0.05)
    opt_state = tx.init(params)

    def train_step(
        params: nnx.State, opt_state: optax.OptState, batch: dict[str, jax.Array]
    ) -> tuple[nnx.State, optax.OptState, dict[str, jax.Array]]:
        def loss_fn(params: nnx.State) -> tuple[jax.Array, jax.Array]:
            model = nnx.merge(graphdef, params)
            logits = model(batch["image"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            return loss, logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == batch["label"])
        return params, opt_state, {"loss": loss, "accuracy": accuracy}

    batch: dict[str, Any] = {
        "image": uniform((8, 16, 16, 3), seed=1),
        "label": labels((8,), 16, seed=2),
    }
    return Built(train_step, (params, opt_state, batch), donate_argnums=())
