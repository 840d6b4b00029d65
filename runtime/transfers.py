"""Moving an array from one device mesh to another, with the bytes each move costs.

```
 source mesh (devices 0-3)                      destination mesh (devices 4-7)
 array, NamedSharding over 0-3  ──Transfer.move(array, dst)──►  array with sharding == dst
                                   │
   DevicePutTransfer               └ jax.device_put(array, dst)
   LocalAllGatherTransfer            (dst replicated over k > 1 devices)
      1. scatter: each destination device gets a distinct 1/k slice of its region,
         copied device to device from the source shards holding it
         -> jax.make_array_from_single_device_arrays (sharded over the destination)
      2. all-gather inside the destination: jit(identity, out_shardings=dst)
```

Every implementation satisfies `Transfer` (a Protocol), so a multi-host one (over
`jax.distributed`) can replace these without touching the pipeline runtime.

Byte accounting. A move is planned as pieces: for each destination device d and its
region R_d (`dst.devices_indices_map(shape)`), the source shards (one per distinct
source region, `src.devices_indices_map(shape)`) are intersected with R_d; each nonempty
intersection is a piece sent from one holder of that source region, chosen as d itself
if it holds it, else a holder inside the destination device set, else one outside it
(round robin over the destination devices). Then, over all pieces p:

    bytes_crossed = sum |p| for pieces whose holder is outside the destination set
    bytes_inside  = sum |p| for pieces whose holder is another device of the set

(|p| = elements x itemsize; a piece already on d costs nothing). Device_put to a
destination replicated over k devices, disjoint from the source: bytes_crossed =
k * nbytes. The local all-gather is two such plans: source -> scatter sharding (the
destination sharding with its replicated axes added to one dimension), then scatter ->
destination, which stays inside: per group of k devices replicating a region R,
bytes_crossed = |R| and bytes_inside = (k-1)/k * |R| * k. A fully sharded destination
needs only its slices: bytes_crossed = nbytes either way.

Measured on CPU devices (jax 0.10.2): `jax.device_put` between two different shardings
fetches the whole array to the host and puts slices back, also for step 2 on the
destination's own devices; the jitted identity compiles to one XLA `all-gather` and
never touches the host, so step 2 uses it (compiled once per destination sharding,
shape and dtype). Step 1 copies only the pieces, device to device.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec, Sharding

Shape = tuple[int, ...]
Box = tuple[tuple[int, int], ...]  # (start, stop) per dimension, global coordinates


class TransferKind(enum.Enum):
    DEVICE_PUT = "device-put"
    LOCAL_ALL_GATHER = "local-all-gather"


@dataclass(frozen=True)
class TransferBytes:
    """Bytes a move sends across into the destination set, and within it."""

    crossed: int = 0
    inside: int = 0

    def __add__(self, other: TransferBytes) -> TransferBytes:
        return TransferBytes(self.crossed + other.crossed, self.inside + other.inside)


@dataclass(frozen=True)
class TransferRecord:
    """One move: what ran (a local all-gather may have fallen back to device_put)."""

    kind: TransferKind
    shape: Shape
    dtype: str
    src_device_ids: tuple[int, ...]
    dst_device_ids: tuple[int, ...]
    global_bytes: int  # the array's bytes (shape x itemsize)
    bytes_crossed: int  # arrived at destination devices from outside the destination set
    bytes_inside: int  # moved between destination devices
    seconds: float  # wall time of `move` (up to the result being ready, when waiting)


@dataclass
class TransferStats:
    """The records of every move a `Transfer` made, with totals."""

    records: list[TransferRecord] = field(default_factory=list)

    def add(self, record: TransferRecord) -> None:
        self.records.append(record)

    def clear(self) -> None:
        self.records.clear()

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def global_bytes(self) -> int:
        return sum(r.global_bytes for r in self.records)

    @property
    def bytes_crossed(self) -> int:
        return sum(r.bytes_crossed for r in self.records)

    @property
    def bytes_inside(self) -> int:
        return sum(r.bytes_inside for r in self.records)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def count_by_kind(self) -> dict[TransferKind, int]:
        counts: dict[TransferKind, int] = {}
        for r in self.records:
            counts[r.kind] = counts.get(r.kind, 0) + 1
        return counts


@runtime_checkable
class Transfer(Protocol):
    """Moves arrays between meshes; `move(array, dst).sharding == dst`, values unchanged."""

    @property
    def kind(self) -> TransferKind: ...

    @property
    def stats(self) -> TransferStats: ...

    def move(self, array: jax.Array, dst: NamedSharding) -> jax.Array: ...

    def move_many(self, arrays: Sequence[jax.Array], dsts: Sequence[NamedSharding]) -> list[jax.Array]:
        """`[move(a, d) for a, d in zip(arrays, dsts)]`, in as few calls as the
        implementation can batch them into (one record per array all the same)."""
        ...

    def estimate(self, shape: Shape, dtype: jnp.dtype, src: Sharding,
                 dst: NamedSharding) -> TransferBytes:
        """The bytes `move` would count, without moving anything."""
        ...


# --- planning: pure functions over shardings ----------------------------------------


@dataclass(frozen=True)
class Piece:
    """A box of the array that `dst` receives from `src` (the same device: no copy)."""

    src: jax.Device
    dst: jax.Device
    box: Box


def _box(index: tuple[slice, ...], shape: Shape) -> Box:
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
        holders.setdefault(_box(index, shape), []).append(device)
    dst_map: Mapping[jax.Device, tuple[slice, ...]] = dst.devices_indices_map(shape)
    dst_set = set(dst_map)
    pieces: list[Piece] = []
    for position, (device, index) in enumerate(dst_map.items()):
        region = _box(index, shape)
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
    return TransferBytes(crossed * itemsize, inside * itemsize)


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


def _device_ids(sharding: Sharding) -> tuple[int, ...]:
    devices: set[jax.Device] = sharding.device_set
    return tuple(sorted(d.id for d in devices))


# --- implementations ---------------------------------------------------------------


@dataclass(eq=False)
class DevicePutTransfer:
    """`jax.device_put(array, dst)`; bytes counted by `plan_pieces(src, dst)`.

    wait: block until the result is ready, so `seconds` is the copy's time (False keeps
    the move asynchronous; `seconds` then counts the dispatch only).
    """

    wait: bool = True
    stats: TransferStats = field(default_factory=TransferStats)
    _estimates: dict[tuple[Any, ...], TransferBytes] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> TransferKind:
        return TransferKind.DEVICE_PUT

    def estimate(self, shape: Shape, dtype: jnp.dtype, src: Sharding,
                 dst: NamedSharding) -> TransferBytes:
        key = (tuple(shape), str(dtype), src, dst)
        found = self._estimates.get(key)
        if found is None:
            pieces = plan_pieces(shape, src, dst)
            found = self._estimates[key] = count_bytes(pieces, jnp.dtype(dtype).itemsize, set(dst.device_set))
        return found

    def move(self, array: jax.Array, dst: NamedSharding) -> jax.Array:
        start = time.perf_counter()
        out = jax.device_put(array, dst)
        if self.wait:
            out.block_until_ready()
        seconds = time.perf_counter() - start
        counted = self.estimate(array.shape, array.dtype, array.sharding, dst)
        self.stats.add(_record(self.kind, array, dst, counted, seconds))
        return out

    def move_many(self, arrays: Sequence[jax.Array], dsts: Sequence[NamedSharding]) -> list[jax.Array]:
        """One batched `jax.device_put` (JAX copies all arrays whose layout matches
        their destination's in one device-to-device call); each record gets an equal
        share of the wall time."""
        return _put_batch(self, self.kind, arrays, dsts)


def _put_batch(transfer: DevicePutTransfer | LocalAllGatherTransfer, kind: TransferKind,
               arrays: Sequence[jax.Array], dsts: Sequence[NamedSharding]) -> list[jax.Array]:
    if not arrays:
        return []
    start = time.perf_counter()
    outs: list[jax.Array] = jax.device_put(list(arrays), list(dsts))
    if transfer.wait:
        jax.block_until_ready(outs)
    seconds = (time.perf_counter() - start) / len(arrays)
    for array, dst in zip(arrays, dsts, strict=True):
        counted = transfer.estimate(array.shape, array.dtype, array.sharding, dst)
        transfer.stats.add(_record(kind, array, dst, counted, seconds))
    return outs


@dataclass(eq=False)
class LocalAllGatherTransfer:
    """Alpa's local all-gather for destinations replicated over k > 1 devices: send each
    destination device a distinct 1/k slice, then all-gather among them. Falls back to
    `jax.device_put` (recorded as DEVICE_PUT) when `scatter_sharding` finds no split.

    wait: as for `DevicePutTransfer`.
    """

    wait: bool = True
    stats: TransferStats = field(default_factory=TransferStats)
    _gathers: dict[NamedSharding, Callable[[jax.Array], jax.Array]] = field(
        default_factory=dict, repr=False)
    _estimates: dict[tuple[Any, ...], TransferBytes] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> TransferKind:
        return TransferKind.LOCAL_ALL_GATHER

    def estimate(self, shape: Shape, dtype: jnp.dtype, src: Sharding,
                 dst: NamedSharding) -> TransferBytes:
        key = (tuple(shape), str(dtype), src, dst)
        found = self._estimates.get(key)
        if found is not None:
            return found
        itemsize, dst_set = jnp.dtype(dtype).itemsize, set(dst.device_set)
        mid = scatter_sharding(dst, shape)
        if mid is None:
            found = count_bytes(plan_pieces(shape, src, dst), itemsize, dst_set)
        else:
            found = (count_bytes(plan_pieces(shape, src, mid), itemsize, dst_set)
                     + count_bytes(plan_pieces(shape, mid, dst), itemsize, dst_set))
        self._estimates[key] = found
        return found

    def move(self, array: jax.Array, dst: NamedSharding) -> jax.Array:
        start = time.perf_counter()
        mid = scatter_sharding(dst, array.shape)
        if mid is None:
            kind, out = TransferKind.DEVICE_PUT, jax.device_put(array, dst)
        else:
            kind, out = self.kind, self._gather(dst)(_scatter(array, mid))
        if self.wait:
            out.block_until_ready()
        seconds = time.perf_counter() - start
        counted = self.estimate(array.shape, array.dtype, array.sharding, dst)
        self.stats.add(_record(kind, array, dst, counted, seconds))
        return out

    def move_many(self, arrays: Sequence[jax.Array], dsts: Sequence[NamedSharding]) -> list[jax.Array]:
        """The moves without a split as one batched `jax.device_put`; the others one by one."""
        plain = [k for k, (a, d) in enumerate(zip(arrays, dsts, strict=True))
                 if scatter_sharding(d, a.shape) is None]
        outs: list[jax.Array | None] = [None] * len(arrays)
        put = _put_batch(self, TransferKind.DEVICE_PUT, [arrays[k] for k in plain], [dsts[k] for k in plain])
        for k, out in zip(plain, put, strict=True):
            outs[k] = out
        for k, (array, dst) in enumerate(zip(arrays, dsts, strict=True)):
            if outs[k] is None:
                outs[k] = self.move(array, dst)
        return [o for o in outs if o is not None]

    def _gather(self, dst: NamedSharding) -> Callable[[jax.Array], jax.Array]:
        if dst not in self._gathers:
            self._gathers[dst] = jax.jit(_identity, out_shardings=dst)
        return self._gathers[dst]


def _identity(x: jax.Array) -> jax.Array:
    return x


def _scatter(array: jax.Array, mid: NamedSharding) -> jax.Array:
    """`array` resharded to `mid` by copying only each device's pieces, device to device."""
    shards = {s.device: (s.data, _box(s.index, array.shape)) for s in array.addressable_shards}
    by_device: dict[jax.Device, list[Piece]] = {}
    for piece in plan_pieces(array.shape, array.sharding, mid):
        by_device.setdefault(piece.dst, []).append(piece)
    arrays = []
    for device, pieces in by_device.items():
        parts = []
        for p in pieces:
            data, origin = shards[p.src]
            piece = data if p.box == origin else data[_local(p.box, origin)]
            parts.append((p.box, jax.device_put(piece, device)))
        arrays.append(_assemble(parts, 0))
    return jax.make_array_from_single_device_arrays(array.shape, mid, arrays)


def _local(box: Box, origin: Box) -> tuple[slice, ...]:
    return tuple(slice(lo - o, hi - o) for (lo, hi), (o, _) in zip(box, origin, strict=True))


def _assemble(parts: list[tuple[Box, jax.Array]], dim: int) -> jax.Array:
    """One array from pieces that tile a box as a grid (slabs along `dim`, then inside)."""
    if len(parts) == 1:
        return parts[0][1]
    slabs: dict[int, list[tuple[Box, jax.Array]]] = {}
    for box, data in sorted(parts, key=lambda p: p[0][dim][0]):
        slabs.setdefault(box[dim][0], []).append((box, data))
    return jnp.concatenate([_assemble(slab, dim + 1) for slab in slabs.values()], axis=dim)


def _record(kind: TransferKind, array: jax.Array, dst: NamedSharding, counted: TransferBytes,
            seconds: float) -> TransferRecord:
    return TransferRecord(
        kind=kind,
        shape=tuple(array.shape),
        dtype=str(array.dtype),
        src_device_ids=_device_ids(array.sharding),
        dst_device_ids=_device_ids(dst),
        global_bytes=math.prod(array.shape) * array.dtype.itemsize,
        bytes_crossed=counted.crossed,
        bytes_inside=counted.inside,
        seconds=seconds,
    )


def transfer_for(kind: str | TransferKind = TransferKind.LOCAL_ALL_GATHER,
                 *, wait: bool = True) -> Transfer:
    """A fresh `Transfer` by name: "device-put" or "local-all-gather" (the default,
    which falls back to device_put where no split applies)."""
    try:
        chosen = TransferKind(kind)
    except ValueError:
        valid = ", ".join(repr(k.value) for k in TransferKind)
        raise ValueError(f"unknown transfer kind {kind!r}; expected one of {valid}") from None
    if chosen is TransferKind.DEVICE_PUT:
        return DevicePutTransfer(wait=wait)
    return LocalAllGatherTransfer(wait=wait)
