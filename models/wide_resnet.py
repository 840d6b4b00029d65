"""Wide-ResNet: a bottleneck ResNet whose 3x3 convolutions are widened, for classification.

    images (B, I, I, 3) NHWC -> conv7x7/2 -> BN -> relu -> maxpool3x3/2
      -> stages of bottleneck blocks (filters C, 2C, 4C, 8C; stride 2 entering stages 2-4):
           y = relu(BN(conv1x1 -> F)(x)); y = relu(BN(conv3x3 -> F*W, stride)(y))
           y = BN(conv1x1 -> 4F)(y);      out = relu(y + shortcut(x))
         shortcut = BN(conv1x1 -> 4F, stride)(x) when the shape changes, else x
      -> global average pool -> dense -> logits -> mean cross-entropy

Batch norm runs in training mode with the statistics of the current batch (no running
averages are kept, so the step's state is just params + Adam state). Note that these
statistics mix examples across the batch: splitting the batch into microbatches changes
the result.

The batch is {"images": (B, I, I, 3) float32, "labels": (B,) int32}.

Presets follow the Wide-ResNet suite of the Alpa paper (OSDI'22; `wresnet_specs` in
alpa-projects/alpa benchmark/alpa/suite_wresnet.py and benchmark_one_case_wresnet.py):
224x224 images, 1024 classes, global batch 1536, depth 50 or 101.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import alpa_mlir.models.layers as L
import alpa_mlir.models.params as P
from alpa_mlir.models.losses import cross_entropy
from alpa_mlir.models.optimizer import Optimizer
from alpa_mlir.models.precision import Precision, in_float32
from alpa_mlir.models.training import Batch, TrainStep
from alpa_mlir.models.training import make_train_step as _make_train_step
from alpa_mlir.models.validation import require_choice, require_positive

# Bottleneck blocks per stage for each supported depth (3 convs per block + stem + head).
STAGE_SIZES: dict[int, tuple[int, ...]] = {
    14: (1, 1, 1, 1),
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
BATCH_NORM_EPS = 1e-5


@dataclass(frozen=True)
class WideResNetConfig:
    """Sizes of a Wide-ResNet and its training batch."""

    batch_size: int  # images per training step (global batch)
    image_size: int  # input height = width, in pixels
    num_layers: int  # ResNet depth: one of STAGE_SIZES (50, 101, ...)
    num_channels: int  # base filter count C of the first stage
    width_factor: int  # widening W of each bottleneck's 3x3 convolution
    num_classes: int = 1024  # classifier outputs
    stem_max_pool: bool = True  # 3x3/2 max pool after the stem (its gradient is
    #                             stablehlo.select_and_scatter)

    def __post_init__(self) -> None:
        require_positive(
            self,
            "batch_size",
            "image_size",
            "num_layers",
            "num_channels",
            "width_factor",
            "num_classes",
        )
        require_choice(self, "num_layers", tuple(STAGE_SIZES))

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        """Bottleneck blocks per stage."""
        return STAGE_SIZES[self.num_layers]


def _paper(channels: int, width: int, layers: int = 50) -> WideResNetConfig:
    return WideResNetConfig(
        batch_size=1536,
        image_size=224,
        num_layers=layers,
        num_channels=channels,
        width_factor=width,
    )


PRESETS: dict[str, WideResNetConfig] = {
    "tiny": WideResNetConfig(
        batch_size=8,
        image_size=32,
        num_layers=14,
        num_channels=8,
        width_factor=2,
        num_classes=16,
    ),
    "250M": _paper(160, 2),
    "500M": _paper(224, 2),
    "1B": _paper(320, 2),
    "2B": _paper(448, 2),
    "4B": _paper(640, 2),
    "6.8B": _paper(320, 16),
    "13B": _paper(320, 16, layers=101),
}


@dataclass(frozen=True)
class BlockShape:
    """Static layout of one bottleneck block."""

    in_channels: int  # channels entering the block
    filters: int  # F: width of the first 1x1 conv; the block outputs 4F
    stride: int  # stride of the 3x3 conv (and of the projection)

    @property
    def needs_projection(self) -> bool:
        """Whether the shortcut needs a 1x1 conv to match the output shape."""
        return self.stride != 1 or self.in_channels != 4 * self.filters


def block_shapes(config: WideResNetConfig) -> list[BlockShape]:
    """The bottleneck blocks in order."""
    shapes = []
    channels = config.num_channels
    for stage, size in enumerate(config.stage_sizes):
        filters = config.num_channels * 2**stage
        for j in range(size):
            stride = 2 if stage > 0 and j == 0 else 1
            shapes.append(BlockShape(channels, filters, stride))
            channels = 4 * filters
    return shapes


def _bn_spec(channels: int, *, zero_scale: bool = False) -> P.SpecTree:
    return {
        "bias": P.zeros(channels),
        "scale": P.zeros(channels) if zero_scale else P.ones(channels),
    }


def block_spec(config: WideResNetConfig, shape: BlockShape) -> P.SpecTree:
    """Parameters of one bottleneck block (convolution kernels are HWIO)."""
    f, wide = shape.filters, shape.filters * config.width_factor
    spec: dict[str, Any] = {
        "bn1": _bn_spec(f),
        "bn2": _bn_spec(wide),
        "bn3": _bn_spec(4 * f, zero_scale=True),
        "conv1": P.fan_in_normal(1, 1, shape.in_channels, f),
        "conv2": P.fan_in_normal(3, 3, f, wide),
        "conv3": P.fan_in_normal(1, 1, wide, 4 * f),
    }
    if shape.needs_projection:
        spec["proj_bn"] = _bn_spec(4 * f)
        spec["proj_conv"] = P.fan_in_normal(1, 1, shape.in_channels, 4 * f)
    return spec


def param_specs(config: WideResNetConfig) -> P.SpecTree:
    """All parameters, as a `ParamSpec` tree."""
    shapes = block_shapes(config)
    out_channels = 4 * shapes[-1].filters
    return {
        "blocks": [block_spec(config, s) for s in shapes],
        "head": L.dense_spec(out_channels, config.num_classes),
        "stem": {
            "bn": _bn_spec(config.num_channels),
            "conv": P.fan_in_normal(7, 7, 3, config.num_channels),
        },
    }


def batch_shapes(config: WideResNetConfig) -> Batch:
    """Abstract training batch."""
    size = config.image_size
    return {
        "images": jax.ShapeDtypeStruct((config.batch_size, size, size, 3), jnp.float32),
        "labels": jax.ShapeDtypeStruct((config.batch_size,), jnp.int32),
    }


def example_batch(config: WideResNetConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Gaussian-noise images and random labels."""
    size = config.image_size
    images = rng.standard_normal((config.batch_size, size, size, 3), dtype=np.float32)
    labels = rng.integers(0, config.num_classes, (config.batch_size,), dtype=np.int32)
    return {"images": images, "labels": labels}


def conv(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Any = "SAME") -> jax.Array:
    """2-D convolution, NHWC input, HWIO kernel, no bias."""
    return lax.conv_general_dilated(
        x, kernel, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def batch_norm(p: P.Params, x: jax.Array) -> jax.Array:
    """Batch norm with the current batch's statistics over (N, H, W) (computed in
    float32, returned in x's dtype)."""
    x32 = in_float32(x)
    mean = jnp.mean(x32, axis=(0, 1, 2))
    centered = x32 - mean
    var = jnp.mean(centered * centered, axis=(0, 1, 2))
    normed = centered * lax.rsqrt(var + BATCH_NORM_EPS)
    return normed.astype(x.dtype) * p["scale"] + p["bias"]


def bottleneck(p: P.Params, x: jax.Array, shape: BlockShape) -> jax.Array:
    """One bottleneck block."""
    y = jax.nn.relu(batch_norm(p["bn1"], conv(x, p["conv1"])))
    y = jax.nn.relu(batch_norm(p["bn2"], conv(y, p["conv2"], shape.stride)))
    y = batch_norm(p["bn3"], conv(y, p["conv3"]))
    shortcut = x
    if shape.needs_projection:
        shortcut = batch_norm(p["proj_bn"], conv(x, p["proj_conv"], shape.stride))
    return jax.nn.relu(y + shortcut)


def logits(config: WideResNetConfig, params: P.Params, images: jax.Array) -> jax.Array:
    """Class logits, shape (B, num_classes)."""
    stem = params["stem"]
    x = conv(images, stem["conv"], 2, ((3, 3), (3, 3)))
    x = jax.nn.relu(batch_norm(stem["bn"], x))
    if config.stem_max_pool:
        x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
    for p, shape in zip(params["blocks"], block_shapes(config), strict=True):
        x = bottleneck(p, x, shape)
    return L.dense(params["head"], jnp.mean(x, axis=(1, 2)))


def loss(config: WideResNetConfig, params: P.Params, batch: Batch) -> jax.Array:
    """Mean classification cross-entropy."""
    return jnp.mean(cross_entropy(logits(config, params, batch["images"]), batch["labels"]))


def make_train_step(config: WideResNetConfig, optimizer: Optimizer | None = None,
                    precision: Precision | None = None) -> TrainStep:
    """`train_step(params, opt_state, batch) -> (new_params, new_opt_state, loss)`."""
    return _make_train_step(lambda p, b: loss(config, p, b), optimizer, precision)
