"""Parameter declarations: one spec tree gives both abstract shapes and initial values.

A model describes its parameters once, as a pytree (nested dicts and lists) whose leaves
are `ParamSpec`s. `abstract_params` turns it into `jax.ShapeDtypeStruct`s (no memory: a 39B
model's shapes cost nothing), `init_params` into random numpy arrays for small sizes, and
`count_params` counts elements of either. Initialization uses numpy, not `jax.random`:
eager `jax.random` compiles one kernel per distinct shape (15 s for a tiny Wide-ResNet).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

# A pytree of arrays (or of `jax.ShapeDtypeStruct`s) keyed by parameter name.
Params: TypeAlias = Any
# A pytree whose leaves are `ParamSpec`s.
SpecTree: TypeAlias = Any


class Init(enum.Enum):
    """How a parameter's initial value is drawn."""

    NORMAL = "normal"  # N(0, scale^2)
    ZEROS = "zeros"
    ONES = "ones"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor: its shape and initializer (always float32)."""

    shape: tuple[int, ...]  # tensor shape
    init: Init = Init.NORMAL  # initializer kind
    scale: float = 0.02  # standard deviation for Init.NORMAL


def normal(*shape: int, scale: float = 0.02) -> ParamSpec:
    """A weight drawn from N(0, scale^2)."""
    return ParamSpec(tuple(shape), Init.NORMAL, scale)


def fan_in_normal(*shape: int) -> ParamSpec:
    """A weight with std 1/sqrt(fan_in), fan_in = product of all but the last dim."""
    fan_in = math.prod(shape[:-1]) if len(shape) > 1 else 1
    return ParamSpec(tuple(shape), Init.NORMAL, 1.0 / math.sqrt(fan_in))


def zeros(*shape: int) -> ParamSpec:
    """A parameter initialized to 0 (biases, norm offsets)."""
    return ParamSpec(tuple(shape), Init.ZEROS)


def ones(*shape: int) -> ParamSpec:
    """A parameter initialized to 1 (norm scales)."""
    return ParamSpec(tuple(shape), Init.ONES)


def _is_spec(x: Any) -> bool:
    return isinstance(x, ParamSpec)


def abstract_params(specs: SpecTree) -> Params:
    """The `jax.ShapeDtypeStruct` tree for `specs` (float32)."""
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, jnp.float32), specs, is_leaf=_is_spec
    )


def _init_one(spec: ParamSpec, rng: np.random.Generator) -> np.ndarray:
    if spec.init is Init.ZEROS:
        return np.zeros(spec.shape, np.float32)
    if spec.init is Init.ONES:
        return np.ones(spec.shape, np.float32)
    return (spec.scale * rng.standard_normal(spec.shape, dtype=np.float32)).astype(np.float32)


def init_params(specs: SpecTree, seed: int = 0) -> Params:
    """Random float32 numpy values for `specs`, drawn in leaf order from `seed`."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: _init_one(s, rng), specs, is_leaf=_is_spec)


def count_params(tree: Params) -> int:
    """Total number of elements over the leaves (arrays, ShapeDtypeStructs or ParamSpecs)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree, is_leaf=_is_spec))
