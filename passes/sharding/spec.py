"""A tensor's sharding over a logical mesh as a plain value, and resharding costs.

`TensorSpec` = per tensor dimension, the mesh axes (indices) that split it, major first:
`((0,), ())` splits dim 0 over mesh axis 0 and keeps dim 1 whole; `((), ())` is
replicated. Every mesh axis splits at most one dimension; split dims must divide.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

from alpa_mlir.dialect_utils.collective_kind import CollectiveKind

from .mesh import Axes, LogicalMesh

TensorSpec = tuple[Axes, ...]


def replicated(rank: int) -> TensorSpec:
    return tuple(() for _ in range(rank))


def used_axes(spec: TensorSpec) -> Axes:
    return tuple(a for dim in spec for a in dim)


def dim_factor(axes: Axes, mesh: LogicalMesh) -> int:
    return math.prod(mesh.shape[a] for a in axes)


def shard_count(spec: TensorSpec, mesh: LogicalMesh) -> int:
    """Into how many distinct pieces the tensor is split (the rest is replication)."""
    return math.prod(dim_factor(d, mesh) for d in spec)


def is_valid(spec: TensorSpec, shape: tuple[int, ...], mesh: LogicalMesh) -> bool:
    if len(spec) != len(shape):
        return False
    axes = used_axes(spec)
    if len(set(axes)) != len(axes) or any(a < 0 or a >= mesh.ndim for a in axes):
        return False
    return all(size % dim_factor(d, mesh) == 0 for d, size in zip(spec, shape, strict=True))


def enumerate_specs(shape: tuple[int, ...], mesh: LogicalMesh, max_axes_per_dim: int = 2) -> Iterator[TensorSpec]:
    """Every valid spec, in a fixed order (replicated first). Each mesh axis of size > 1
    is either unused or placed on one dim; a dim holding several axes takes them in mesh
    order (major axis first), as a device-contiguous split."""
    axes = [a for a in range(mesh.ndim) if mesh.shape[a] > 1]
    rank = len(shape)
    seen: set[TensorSpec] = set()
    for placement in itertools.product(range(-1, rank), repeat=len(axes)):
        dims: list[list[int]] = [[] for _ in range(rank)]
        for axis, d in zip(axes, placement, strict=True):
            if d >= 0:
                dims[d].append(axis)
        if any(len(d) > max_axes_per_dim for d in dims):
            continue
        spec = tuple(tuple(d) for d in dims)
        if spec not in seen and is_valid(spec, shape, mesh):
            seen.add(spec)
            yield spec


def resharding_steps(
    src: TensorSpec, dst: TensorSpec, nbytes: float, mesh: LogicalMesh, allow_all_to_all: bool = True
) -> list[tuple[CollectiveKind, Axes, float]]:
    """The collectives turning a tensor of `nbytes` (full size) laid out as `src` into
    `dst`: (kind, mesh axes of its group, bytes of the gathered / exchanged tensor) each.

    Per mesh axis: kept (in the common major prefix of its dim in both layouts) or newly
    splitting a dim (a local slice) is free; moving to another dim is an all-to-all (an
    all-gather, then a free slice, when all-to-all is not allowed); anything else leaving
    its place is gathered. As XLA does it, the axes one dim gives up make one all-gather
    over all of them, and the axes moving from one dim to another one all-to-all. The bytes are the tensor's size on the group: the full size divided by the
    kept axes.
    """
    if src == dst:
        return []
    where_dst = {a: i for i, dim in enumerate(dst) for a in dim}
    # An axis keeps its data only inside the common major prefix of its dim's axes in
    # both layouts: [{"y"}] -> [{"x", "y"}] keeps nothing (y's blocks change).
    kept: set[int] = set()
    for s_dim, d_dim in zip(src, dst, strict=True):
        for a, b in zip(s_dim, d_dim, strict=False):
            if a != b:
                break
            kept.add(a)
    local = nbytes / dim_factor(tuple(sorted(kept)), mesh)
    steps: list[tuple[CollectiveKind, Axes, float]] = []
    for i, dim in enumerate(src):
        gathered: list[int] = []
        moved: dict[int, list[int]] = {}  # destination dim -> axes moving there
        for a in dim:
            if a in kept:
                continue
            j = where_dst.get(a)
            if j is None or j == i or not allow_all_to_all:
                gathered.append(a)
            else:
                moved.setdefault(j, []).append(a)
        steps.extend((CollectiveKind.ALL_TO_ALL, tuple(axes), local) for _, axes in sorted(moved.items()))
        if gathered:
            steps.append((CollectiveKind.ALL_GATHER, tuple(gathered), local))
    return steps


def resharding_cost(
    src: TensorSpec, dst: TensorSpec, nbytes: float, mesh: LogicalMesh, allow_all_to_all: bool = True
) -> float:
    cost = 0.0
    for kind, axes, size in resharding_steps(src, dst, nbytes, mesh, allow_all_to_all):
        if kind is CollectiveKind.ALL_GATHER:
            cost += mesh.all_gather_cost(size, axes)
        else:
            cost += mesh.all_to_all_cost(size, axes)
    return cost
