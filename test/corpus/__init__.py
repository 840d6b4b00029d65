"""A corpus of real-world-style JAX training steps (flax.linen, flax.nnx, equinox + optax).

Each case is written the way library users write a training step -- ``model.apply``,
``jax.value_and_grad``, ``optax`` chains and schedules, flax ``TrainState``,
``eqx.partition`` -- not the way ``models/`` (our own zoo) is written, so that the
compiler can be tested on StableHLO it did not shape itself.

Import it with ``test/`` on ``sys.path`` as ``corpus`` (the standard library owns the
top-level name ``test``)::

    sys.path.insert(0, str(REPO / "test"))
    from corpus import CASES, export_text, flat_inputs, reference_outputs

``CASES`` maps a case name to a :class:`Case`; ``case.build()`` imports the library
(flax, optax, equinox) lazily and returns a :class:`Built`: the step function, concrete
example arguments and the ``donate_argnums`` the user would pass to ``jax.jit``.
Importing this package imports only numpy; the builders import jax and the libraries.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CASES",
    "Built",
    "Case",
    "export_text",
    "flat_inputs",
    "main_signature",
    "reference_outputs",
]


@dataclass(frozen=True)
class Built:
    """A built case: what the user hands to ``jax.jit``."""

    step: Callable[..., Any]  # the training step: pytrees in, pytrees out
    args: tuple[Any, ...]  # concrete example arguments (jax arrays, fixed seeds)
    donate_argnums: tuple[int, ...]  # how the user jits it; () for no donation


@dataclass(frozen=True)
class Case:
    """One corpus entry; ``build`` is lazy (imports flax/optax/equinox when called)."""

    name: str
    description: str
    build: Callable[[], Built]
    rtol: float  # tolerance for a sharded run against jax.jit on one device
    atol: float


def _lazy(module: str, function: str) -> Callable[[], Built]:
    """A builder that imports ``module`` (a sibling of this package) only when called."""

    def build() -> Built:
        mod = importlib.import_module(f"{__name__}.{module}")
        built: Built = getattr(mod, function)()
        return built

    build.__name__ = function
    build.__qualname__ = f"{module}.{function}"
    return build


# f32 cases: the same program on one device and on a mesh differ only in the order of
# floating-point reductions (all-reduce, partial dot products), a few ulps relative to
# the sum of magnitudes. One trap: Adam's first update is lr*g/(|g|+eps), so a
# parameter whose exact gradient is zero -- an attention *key* bias, since softmax is
# invariant to a per-row shift -- gets rounding noise g ~ eps = 1e-8 and moves by an
# arbitrary amount in [-lr, lr]: two runs differ by up to 2*lr. The cases therefore
# either have no key bias (flax_moe, flax_sdpa, equinox's default) or take a first step
# with lr <= 3e-5 (warmup schedules of flax_gpt*, flax_nnx_vit). Measured with
# `export.py --shard-check` (8 CPU devices, every leaf split along a dim divisible by
# 8): the worst f32 output is within 0.15x of this tolerance.
_F32 = {"rtol": 1e-4, "atol": 1e-4}

_CASE_LIST = [
    Case(
        "flax_gpt",
        "flax.linen GPT (einsum causal attention, LayerNorm, GELU MLP, tied nn.Embed.attend), "
        "flax TrainState, optax clip_by_global_norm + masked adamw + warmup_cosine_decay; no donation",
        _lazy("flax_gpt_cases", "flax_gpt"),
        **_F32,
    ),
    Case(
        "flax_gpt_scan",
        "the flax_gpt model with the block stack as nn.scan (stacked params, stablehlo.while); "
        "step(params, opt_state, batch) donating params and opt_state",
        _lazy("flax_gpt_cases", "flax_gpt_scan"),
        **_F32,
    ),
    Case(
        "flax_gpt_unrolled",
        "unrolled twin of flax_gpt_scan: same config, a Python loop over blocks, params equal "
        "to the scanned ones unstacked; donating params and opt_state",
        _lazy("flax_gpt_cases", "flax_gpt_unrolled"),
        **_F32,
    ),
    Case(
        "flax_gpt_remat",
        "the flax_gpt model with nn.remat blocks (stablehlo.optimization_barrier under grad); "
        "donating params and opt_state",
        _lazy("flax_gpt_cases", "flax_gpt_remat"),
        **_F32,
    ),
    Case(
        "flax_dropout",
        "flax.linen MLP classifier with nn.Dropout in training; raw uint32 PRNGKey argument "
        "split inside the step (threefry), the new key returned; adamw; no donation",
        _lazy("flax_cases", "flax_dropout"),
        **_F32,
    ),
    Case(
        "flax_moe",
        "flax.linen LM: bias-free nn.MultiHeadDotProductAttention + top-2-of-8 mixture of "
        "experts (lax.top_k, cumsum capacity dispatch, einsums), aux loss via sow; adam",
        _lazy("flax_cases", "flax_moe"),
        **_F32,
    ),
    Case(
        "flax_cnn_bn",
        "flax.linen CNN (nn.Conv, nn.BatchNorm with mutable batch_stats, max/avg pool) on "
        "NHWC images, TrainState with batch_stats, sgd momentum, loss+accuracy; state donated",
        _lazy("flax_cases", "flax_cnn_bn"),
        **_F32,
    ),
    Case(
        "flax_bf16",
        "flax.linen LLaMA-style LM in bf16 compute with f32 params/Adam state (nn.RMSNorm, "
        "RoPE, SwiGLU, f32 softmax and loss); adamw + cosine decay; params/opt_state donated",
        _lazy("flax_cases", "flax_bf16"),
        # bf16 compute: every matmul/elementwise op rounds to 8 mantissa bits (rel. 2^-9),
        # and a sharded run reduces partial sums in another order, so activations and
        # gradients differ by ~1e-2 relative -> rtol 2e-2. Adam's first step is
        # lr*g/(|g|+eps) ~ lr*sign(g): a gradient that is ~0 up to bf16 noise can flip
        # sign and move a parameter by up to 2*lr = 6e-4 -> atol 1e-3. (--shard-check:
        # worst output at 0.48x this tolerance, all from such sign flips.)
        rtol=2e-2,
        atol=1e-3,
    ),
]
_CASE_LIST += [
    Case(
        "flax_sdpa",
        "flax.linen LM whose attention is jax.nn.dot_product_attention(is_causal=True, "
        "implementation=None) on bias-free nn.DenseGeneral q/k/v heads; adam; no donation",
        _lazy("flax_cases", "flax_sdpa"),
        **_F32,
    ),
    Case(
        "flax_multisteps",
        "flax.linen MLP regressor with optax.MultiSteps gradient accumulation (lax.cond -> "
        "stablehlo.case) around adam; MSE loss; params/opt_state donated",
        _lazy("flax_cases", "flax_multisteps"),
        **_F32,
    ),
    Case(
        "equinox_transformer",
        "equinox LM (eqx.nn.Embedding, MultiheadAttention, LayerNorm, MLP) vmapped over the "
        "batch, eqx.partition(model, eqx.is_array) + closed-over static part, adamw; donated",
        _lazy("equinox_cases", "equinox_transformer"),
        **_F32,
    ),
    Case(
        "flax_nnx_vit",
        "flax.nnx ViT (patchify nnx.Conv, nnx.MultiHeadAttention, LayerNorm, MLP, mean pool) "
        "as a pure function via nnx.split/nnx.merge, adamw + warmup cosine; no donation",
        _lazy("nnx_cases", "flax_nnx_vit"),
        **_F32,
    ),
]

CASES: dict[str, Case] = {case.name: case for case in _CASE_LIST}


def _host(leaf: Any) -> np.ndarray:
    """A leaf as numpy; a typed PRNG key array becomes its raw uint32 key data."""
    import jax

    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


def flat_inputs(built: Built) -> list[np.ndarray]:
    """The leaves of ``built.args`` in the order of the exported ``@main``'s arguments.

    ``jax.jit`` flattens its positional arguments with ``tree_leaves`` of the argument
    tuple; no case has an unused argument leaf, so jit prunes none (export.py --check
    verifies that the counts and shapes agree).
    """
    import jax

    return [_host(leaf) for leaf in jax.tree_util.tree_leaves(built.args)]


def reference_outputs(built: Built) -> list[np.ndarray]:
    """``jax.jit(step)(*args)`` on the default device, no donation; flattened outputs."""
    import jax

    out = jax.jit(built.step)(*built.args)
    return [_host(leaf) for leaf in jax.tree_util.tree_leaves(out)]


def export_text(built: Built) -> str:
    """The StableHLO text of ``jax.jit(step, donate_argnums=...)``, lowered as users do."""
    import jax

    lowered = jax.jit(built.step, donate_argnums=built.donate_argnums).lower(*built.args)
    text: str = lowered.as_text()
    return text


def _split_top_level(text: str) -> list[str]:
    """Split a parenthesized list body on commas outside (), <>, [], {} and strings."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            i = text.index('"', i + 1)
            while text[i - 1] == "\\":
                i = text.index('"', i + 1)
        elif ch in "(<[{":
            depth += 1
        elif ch in ")>]}" and not (ch == ">" and text[i - 1] == "-"):
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if text[start:].strip():
        parts.append(text[start:])
    return [p.strip() for p in parts]


def _matching(text: str, open_at: int) -> int:
    """Index of the bracket that closes the one at ``open_at`` (strings skipped)."""
    pairs = {"(": ")", "{": "}", "[": "]", "<": ">"}
    stack = [pairs[text[open_at]]]
    i = open_at + 1
    while stack:
        ch = text[i]
        if ch == '"':
            i = text.index('"', i + 1)
            while text[i - 1] == "\\":
                i = text.index('"', i + 1)
        elif ch in pairs:
            stack.append(pairs[ch])
        elif ch == stack[-1] and not (ch == ">" and text[i - 1] == "-"):
            stack.pop()
        i += 1
    return i - 1


def main_signature(text: str) -> tuple[list[str], list[str]]:
    """The argument and result types of ``@main`` in a module's text (attributes dropped)."""
    head = text.index("@main(")
    args_open = head + len("@main")
    args_close = _matching(text, args_open)
    args = _split_top_level(text[args_open + 1 : args_close])
    rest = text[args_close + 1 :].lstrip()
    results: list[str] = []
    if rest.startswith("->"):
        rest = rest[2:].lstrip()
        if rest.startswith("("):
            results = _split_top_level(rest[1 : _matching(rest, 0)])
        else:  # a single result without parentheses
            results = [rest.split("{", 1)[0].strip()]

    return [_type_of(a) for a in args], [_type_of(r) for r in results]


def _type_of(entry: str) -> str:
    """``%arg0: tensor<8xf32> {attrs}`` or ``tensor<8xf32> {attrs}`` -> ``tensor<8xf32>``."""
    if entry.startswith("%"):
        entry = entry.split(":", 1)[1]
    depth = 0
    for i, ch in enumerate(entry):
        if ch == "<":
            depth += 1
        elif ch == ">" and entry[i - 1] != "-":
            depth -= 1
        elif ch == "{" and depth == 0:
            return entry[:i].strip()
    return entry.strip()
