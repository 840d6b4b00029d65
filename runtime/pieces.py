"""How a value moves between two shardings, as pieces: which device sends which box of
the array to which device, and the bytes that costs (pure functions over shardings; the
`transfers` and `union_transfer` modules execute the plans).

A move is planned as pieces: for each destination device d and its region R_d
(`dst.devices_indices_map(shape)`), the source shards (one per distinct source region,
`src.devices_indices_map(shape)`) are intersected with R_d; each nonempty intersection
is a piece sent from one holder of that source region, chosen as d itself if it holds
it, else a holder inside the destination device set, else one outside it (round robin
over the destination devices). `count_bytes` sums the pieces by where their holder sits
(`runtime/transfers.py` states the formulas).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jax
from jax.sharding import NamedSharding, PartitionSpec, Sharding

Shape = tuple[int, ...]
Box = tuple[tuple[int, int], ...]  # (start, stop) per dimension, global coordinates


@dataclass(frozen=True)
class TransferBytes:
    """Bytes a move sends across into the destination set, within it, and (a part of
    either) between devices of different processes."""

    crossed: int = 0
    inside: int = 0
    across_processes: int = 0

    def __add__(self, other: TransferBytes) -> TransferBytes:
        return TransferBytes(self.crossed + other.crossed, self.inside + other.inside,
                             self.across_processes + other.across_processes)


@dataclass(frozen=True)
class Piece:
    """A box of the array that `dst` receives from `src` (the same device: no copy)."""

    src: jax.Device
    dst: jax.Device
    box: Box


def box_of(index: tuple[slice, ...], shape: Shape) -> Box:
    """The box a shard's index (slices) covers in an array of `shape`."""
    return tuple((s.indices(n)[0], s.indices(n)[1]) for s, n in zip(index, shape, strict=True))


def _intersect(a: Box, b: Box) -> Box | None:
    out = tuple((max(a0, b0), min(a1, b1)) for (a0, a1), (b0, b1) in zip(a, b, strict=True))
    return None if any(lo >= hi for lo, hi in out) else out


def _size(box: Box) -> int:
    return math.prod(hi - lo for lo, hi in box)


def plan_pieces(shape: Shape, src: Sharding, dst: Sharding) -> tuple[Piece, ...]:
    """The pieces each destination device receives (see the module docstring)."""
    holders: dict[Box, list[jax.Device]] = {}
    for device, index in src.devices_indices_map(shape).items():
        holders.setdefault(box_of(index, shape), []).append(device)
    dst_map: Mapping[jax.Device, tuple[slice, ...]] = dst.devices_indices_map(shape)
    dst_set = set(dst_map)
    pieces: list[Piece] = []
    for position, (device, index) in enumerate(dst_map.items()):
        region = box_of(index, shape)
        covered = 0
        for src_box, devices in holders.items():
            part = _intersect(src_box, region)
            if part is None:
                continue
            pieces.append(Piece(_holder(devices, device, dst_set, position), device, part))
            covered += _size(part)
        if covered != _size(region):
            raise ValueError(
                f"source sharding {src} covers {covered} of the {_size(region)} elements "
                f"device {device.id} needs under {dst}; expected a tiling of shape {shape}"
            )
    return tuple(pieces)


def _holder(devices: Sequence[jax.Device], target: jax.Device, dst_set: set[jax.Device],
            position: int) -> jax.Device:
    if target in devices:
        return target
    inside = [d for d in devices if d in dst_set]
    if inside:
        return inside[position % len(inside)]
    return devices[position % len(devices)]


def count_bytes(pieces: Sequence[Piece], itemsize: int, dst_devices: set[jax.Device]) -> TransferBytes:
    """bytes_crossed / bytes_inside of a plan, from where each piece's holder sits."""
    crossed = sum(_size(p.box) for p in pieces if p.src not in dst_devices)
    inside = sum(_size(p.box) for p in pieces if p.src in dst_devices and p.src != p.dst)
    across = sum(_size(p.box) for p in pieces if p.src.process_index != p.dst.process_index)
    return TransferBytes(crossed * itemsize, inside * itemsize, across * itemsize)


def scatter_sharding(dst: NamedSharding, shape: Shape) -> NamedSharding | None:
    """The step-1 sharding of a local all-gather: `dst` with its replicated mesh axes
    (size > 1) added to the dimension with the largest shard that they divide evenly.
    None when `dst` replicates over no axis, or no dimension divides."""
    if getattr(dst.spec, "unreduced", None) or getattr(dst.spec, "reduced", None):
        return None
    entries = list(dst.spec) + [None] * (len(shape) - len(dst.spec))
    used = {a for e in entries if e is not None for a in ((e,) if isinstance(e, str) else e)}
    axis_sizes: Mapping[str, int] = dst.mesh.shape
    replicated = tuple(a for a in dst.mesh.axis_names if a not in used and axis_sizes[a] > 1)
    k = math.prod(axis_sizes[a] for a in replicated)
    if k == 1:
        return None
    best: tuple[int, int] | None = None  # (shard size, dim)
    for dim, entry in enumerate(entries):
        axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        factor = math.prod(axis_sizes[a] for a in axes)
        if shape[dim] % (factor * k) == 0 and (best is None or shape[dim] // factor > best[0]):
            best = (shape[dim] // factor, dim)
    if best is None:
        return None
    dim = best[1]
    entry = entries[dim]
    axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    entries[dim] = (*axes, *replicated)
    return NamedSharding(dst.mesh, PartitionSpec(*entries), memory_kind=dst.memory_kind)
