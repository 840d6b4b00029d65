"""XLA's compiled shardings (`OpSharding` protos) as `jax.sharding.NamedSharding`s.

An executable reports how it expects each parameter and produces each result
(`get_parameter_shardings()`, `get_output_shardings()`), including values the module left
unannotated and Shardy's propagation inside XLA decided. `execute_sharded` takes arrays
whose per-device buffers come in the executable's device order, so the sharding built
here always lives on a mesh whose flat device order is that order.

An OTHER (tiled) sharding with the iota tile assignment
`arange(n).reshape(R).transpose(perm).reshape(tile_dims)` becomes a mesh of shape R
(axes split where a tile dimension takes part of one), with tensor dim j split over the
axes whose transposed sizes multiply to tile_dims[j]. Trailing tile dims (replication
subgroups) are left out of the PartitionSpec, i.e. replicated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh as JaxMesh
from jax.sharding import NamedSharding, PartitionSpec

from .errors import UnsupportedModuleError

OpSharding = Any  # jaxlib's OpSharding proto object (no public type name)


def _enum_name(value: Any) -> str:
    """`OpSharding_Type.OTHER` -> `OTHER`."""
    return str(value).rsplit(".", 1)[-1]


def tile_assignment(op: OpSharding) -> np.ndarray:
    """The partition ids of a tiled sharding, shaped as its tile dimensions."""
    dims = [int(d) for d in op.tile_assignment_dimensions]
    explicit = [int(d) for d in op.tile_assignment_devices]
    if explicit:
        return np.array(explicit, dtype=np.int64).reshape(dims)
    reshape = [int(d) for d in op.iota_reshape_dims] or [math.prod(dims)]
    perm = [int(p) for p in op.iota_transpose_perm] or list(range(len(reshape)))
    return np.arange(math.prod(reshape)).reshape(reshape).transpose(perm).reshape(dims)


def _iota_form(op: OpSharding) -> tuple[list[int], list[int]] | None:
    """(reshape dims, transpose perm) of the tile assignment, if it is an iota one."""
    dims = [int(d) for d in op.tile_assignment_dimensions]
    if not list(op.tile_assignment_devices):
        reshape = [int(d) for d in op.iota_reshape_dims] or [math.prod(dims)]
        perm = [int(p) for p in op.iota_transpose_perm] or list(range(len(reshape)))
        return reshape, perm
    ids = tile_assignment(op)
    if np.array_equal(ids.reshape(-1), np.arange(ids.size)):
        return [ids.size], [0]
    return None


def _split_axes(
    reshape: list[int], perm: list[int], tile_dims: list[int]
) -> tuple[list[list[int]], list[list[tuple[int, int]]]] | None:
    """Refine the iota axes so that each tile dim is a run of whole pieces.

    Returns (pieces per original axis, major first) and, per tile dim, the
    (axis, piece) pairs it is split over, major first; None when sizes do not nest.
    """
    pieces: list[list[int]] = [[] for _ in reshape]
    groups: list[list[tuple[int, int]]] = [[] for _ in tile_dims]
    t = 0
    remaining_tile = tile_dims[0] if tile_dims else 1
    for axis in perm:
        remaining_axis = reshape[axis]
        while remaining_axis > 1:
            while remaining_tile == 1 and t + 1 < len(tile_dims):
                t += 1
                remaining_tile = tile_dims[t]
            piece = math.gcd(remaining_axis, remaining_tile)
            if piece == 1:
                return None
            pieces[axis].append(piece)
            groups[t].append((axis, len(pieces[axis]) - 1))
            remaining_axis //= piece
            remaining_tile //= piece
    if remaining_tile != 1 or any(d != 1 for d in tile_dims[t + 1:]):
        return None
    return pieces, groups


def named_sharding(
    op: OpSharding, rank: int, devices: Sequence[jax.Device], what: str
) -> NamedSharding:
    """`op` (for a tensor of `rank`) over `devices` (the executable's device order)."""
    kind = _enum_name(op.type)
    if kind == "REPLICATED":
        grid = np.empty(len(devices), dtype=object)
        grid[:] = list(devices)
        return NamedSharding(JaxMesh(grid, ("devices",)), PartitionSpec())
    if kind != "OTHER":
        raise UnsupportedModuleError(f"{what}: compiled sharding of type {kind} is not supported")
    subgroups = [_enum_name(t) for t in op.last_tile_dims]
    if any(s != "REPLICATED" for s in subgroups):
        raise UnsupportedModuleError(f"{what}: compiled sharding with {subgroups} subgroups is not supported")
    tile_dims = [int(d) for d in op.tile_assignment_dimensions]
    iota = _iota_form(op)
    split = None if iota is None else _split_axes(iota[0], iota[1], tile_dims)
    if iota is None or split is None:
        raise UnsupportedModuleError(
            f"{what}: compiled sharding with tile assignment {tile_assignment(op).tolist()} "
            "cannot be expressed over the executable's device order"
        )
    pieces, groups = split
    names = [[f"d{axis}_{k}" for k in range(len(p))] for axis, p in enumerate(pieces)]
    mesh_shape = [size for p in pieces for size in p]
    grid = np.empty(len(devices), dtype=object)
    grid[:] = list(devices)
    mesh = JaxMesh(grid.reshape(mesh_shape), tuple(n for axis in names for n in axis))
    spec: list[Any] = []
    for group in groups[:rank]:
        axes = tuple(names[axis][k] for axis, k in group)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return NamedSharding(mesh, PartitionSpec(*spec))


def describe(op: OpSharding) -> str:
    """A short text for summaries: `replicated`, `tiles 4x1 (x2 replicated)`."""
    kind = _enum_name(op.type)
    if kind != "OTHER":
        return kind.lower()
    dims = [int(d) for d in op.tile_assignment_dimensions]
    extra = len(op.last_tile_dims) + (1 if op.replicate_on_last_tile_dim else 0)
    tiles = dims[: len(dims) - extra] if extra else dims
    text = "tiles " + "x".join(map(str, tiles))
    if extra:
        text += f" (x{math.prod(dims[len(dims) - extra:])} replicated)"
    return text
