"""Moving an array between two disjoint meshes with one XLA program over their union,
so that the move works across processes (multi-controller `jax.distributed`).

```
 source devices S (stage k)                          destination devices D (stage k+1)
 array, any Sharding over S ──UnionMover.move(array, dst)──► array, sharding == dst over D
        │ rows of this process's S devices: its shards, [None]-expanded;
        │ rows of its D devices: zeros
        ▼
 stacked [|U|, *src_shard] over Mesh(U, "u") ── jit(shard_map(rounds of ppermute)) ──►
 stacked [|U|, *dst_shard] over Mesh(U, "u") ── this process's rows of D ──► result
```

Reads: the array's addressable shards (a process holds only its own) and the two
shardings. Writes: a `jax.Array` with sharding `dst` whose addressable shards (this
process's devices of D) hold the array's values; a process owning no device of D gets a
placeholder with no addressable shards.

Why one program. `jax.device_put` cannot move data between processes on CPU, and in
multi-controller JAX every process owning a device of a program must call it, in the
same order. So a move is one compiled program over U = S then D (each sorted by device
id), a 1-D mesh with axis "u", called by exactly the processes owning a device of U; XLA's
collectives carry the bytes. A process owning no device of U calls nothing.

Algorithm. `pieces.plan_pieces(shape, src, dst)` gives, for each destination device,
the boxes it needs and the source device sending each. The pieces are grouped into
rounds (greedily, in plan order): in a round every device sends at most one piece and
receives at most one, and all pieces have one box shape. A round is one
`jax.lax.ppermute` over "u": each sender slices its piece out of its row at an offset
read from a static per-row table (indexed by `jax.lax.axis_index("u")`), and each
receiver writes what arrives into its output row at its offset, masked per row so that
a device receiving nothing in that round keeps its data. Rows hold whole shards, so every
shard of a sharding has one shape (`Sharding.shard_shape`; jax refuses uneven tilings
with a ValueError).

Cost: the program is compiled once per (shape, dtype, source sharding, destination
sharding) and cached in the `UnionMover`. `pieces.count_bytes` counts the part of the
plan's bytes whose sender sits on another process than its receiver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding
from jax.typing import DTypeLike

from alpa_mlir.runtime.pieces import Box, Piece, Shape, plan_pieces
from alpa_mlir.runtime.process_order import chained

AXIS = "u"  # the union mesh's one axis: one row per device of S then D

# --- planning: pure functions over shardings ----------------------------------------


@dataclass(frozen=True)
class Round:
    """Pieces sent by one `ppermute`: each row sends at most one, receives at most one.

    Rows are positions in the union mesh. A row that sends nothing has send start
    zeros; a row that receives nothing has `receives` False (its recv start is zeros).
    """

    piece_shape: Shape
    perm: tuple[tuple[int, int], ...]  # (sending row, receiving row)
    send_starts: tuple[tuple[int, ...], ...]  # per row: piece offset in its source shard
    recv_starts: tuple[tuple[int, ...], ...]  # per row: piece offset in its destination shard
    receives: tuple[bool, ...]  # per row


@dataclass(frozen=True)
class UnionPlan:
    """The union mesh and the rounds of a move from `src` to `dst` for one shape."""

    devices: tuple[jax.Device, ...]  # S sorted by id, then D sorted by id
    src_devices: frozenset[jax.Device]
    dst_devices: frozenset[jax.Device]
    src_shard_shape: Shape
    dst_shard_shape: Shape
    rounds: tuple[Round, ...]


def union_devices(src: Sharding, dst: Sharding) -> tuple[jax.Device, ...]:
    """S then D, each sorted by device id; ValueError when they share a device."""
    src_set: set[jax.Device] = src.device_set
    dst_set: set[jax.Device] = dst.device_set
    if src_set & dst_set:
        raise ValueError(
            f"union move needs disjoint meshes; source devices {_ids(src_set)} and "
            f"destination devices {_ids(dst_set)} share {_ids(src_set & dst_set)}"
        )
    return (*sorted(src_set, key=_id), *sorted(dst_set, key=_id))


def plan_union(shape: Shape, src: Sharding, dst: Sharding) -> UnionPlan:
    """The rounds moving an array of `shape` from `src` to `dst` (module docstring)."""
    shape = tuple(shape)
    devices = union_devices(src, dst)
    src_origins = _origins(shape, src)
    dst_origins = _origins(shape, dst)
    src_shard, dst_shard = tuple(src.shard_shape(shape)), tuple(dst.shard_shape(shape))
    row = {d: k for k, d in enumerate(devices)}
    rounds = [
        _round(pieces, row, src_origins, dst_origins, len(devices), len(shape))
        for pieces in _group_rounds(plan_pieces(shape, src, dst))
    ]
    return UnionPlan(devices, frozenset(src.device_set), frozenset(dst.device_set),
                     src_shard, dst_shard, tuple(rounds))


def _group_rounds(pieces: Sequence[Piece]) -> list[list[Piece]]:
    """Greedy first fit: a piece joins the first round of its box shape where neither
    its sender sends nor its receiver receives yet."""
    rounds: list[list[Piece]] = []
    used: list[tuple[Shape, set[jax.Device], set[jax.Device]]] = []  # shape, senders, receivers
    for piece in pieces:
        box_shape = _box_shape(piece.box)
        k = next((k for k, (shape, senders, receivers) in enumerate(used)
                  if shape == box_shape and piece.src not in senders
                  and piece.dst not in receivers), None)
        if k is None:
            k = len(rounds)
            rounds.append([])
            used.append((box_shape, set(), set()))
        rounds[k].append(piece)
        used[k][1].add(piece.src)
        used[k][2].add(piece.dst)
    return rounds


def _round(pieces: Sequence[Piece], row: Mapping[jax.Device, int],
           src_origins: Mapping[jax.Device, tuple[int, ...]],
           dst_origins: Mapping[jax.Device, tuple[int, ...]], n: int, ndim: int) -> Round:
    zero = (0,) * ndim
    send, recv, receives = [zero] * n, [zero] * n, [False] * n
    perm = []
    for p in pieces:
        s, d = row[p.src], row[p.dst]  # never equal: S and D are disjoint
        perm.append((s, d))
        send[s] = _offset(p.box, src_origins[p.src])
        recv[d] = _offset(p.box, dst_origins[p.dst])
        receives[d] = True
    return Round(_box_shape(pieces[0].box), tuple(perm), tuple(send), tuple(recv), tuple(receives))


def _origins(shape: Shape, sharding: Sharding) -> dict[jax.Device, tuple[int, ...]]:
    return {d: tuple(s.indices(n)[0] for s, n in zip(index, shape, strict=True))
            for d, index in sharding.devices_indices_map(shape).items()}


def _offset(box: Box, origin: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(lo - o for (lo, _), o in zip(box, origin, strict=True))


def _box_shape(box: Box) -> Shape:
    return tuple(hi - lo for lo, hi in box)


# --- the program ---------------------------------------------------------------------


def union_rows(plan: UnionPlan) -> NamedSharding:
    """One row per device of the union: `PartitionSpec("u")` over Mesh(plan.devices, "u")."""
    return NamedSharding(Mesh(np.array(plan.devices, dtype=object), (AXIS,)), PartitionSpec(AXIS))


def build_program(plan: UnionPlan) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """jit(shard_map) over Mesh(plan.devices, "u"): ([|U|, *src_shard], token [|U|]) ->
    ([|U|, *dst_shard], token + 1): the token orders the moves (`process_order.chained`)."""
    rows = union_rows(plan)
    ndim = len(plan.dst_shard_shape)

    def body(block: jax.Array, token: jax.Array) -> tuple[jax.Array, jax.Array]:
        me = jax.lax.axis_index(AXIS)
        local = block[0]
        out = jnp.zeros(plan.dst_shard_shape, block.dtype)
        for r in plan.rounds:
            send = _starts(r.send_starts, me, ndim)
            piece = jax.lax.dynamic_slice(local, send, r.piece_shape)
            arrived = jax.lax.ppermute(piece, AXIS, r.perm)
            recv = _starts(r.recv_starts, me, ndim)
            kept = jax.lax.dynamic_slice(out, recv, r.piece_shape)
            mine = jnp.asarray(np.array(r.receives))[me]
            out = jax.lax.dynamic_update_slice(out, jnp.where(mine, arrived, kept), recv)
        return out[None], token + 1

    spec = PartitionSpec(AXIS)
    moved = jax.shard_map(body, mesh=rows.mesh, in_specs=(spec, spec), out_specs=(spec, spec), check_vma=False)
    return jax.jit(moved, in_shardings=(rows, rows), out_shardings=(rows, rows))


def _starts(table: tuple[tuple[int, ...], ...], me: jax.Array, ndim: int) -> list[jax.Array]:
    entry = jnp.asarray(np.array(table, dtype=np.int32).reshape(len(table), ndim))[me]
    return [entry[k] for k in range(ndim)]


def build_zeros(devices: Sequence[jax.Device], row_shape: Shape,
                dtype: DTypeLike) -> Callable[[], jax.Array]:
    """jit: zeros [len(devices), *row_shape], one row per device (filled on the device)."""
    mesh = Mesh(np.array(devices, dtype=object), ("rows",))
    shape = (len(devices), *row_shape)
    return jax.jit(lambda: jnp.zeros(shape, dtype),
                   out_shardings=NamedSharding(mesh, PartitionSpec("rows")))


# --- the mover -----------------------------------------------------------------------


@dataclass(frozen=True)
class UnionProgram:
    """One cache entry: the plan, its compiled move, and this process's zero rows."""

    plan: UnionPlan
    rows: NamedSharding  # the program's input and output sharding (`union_rows`)
    program: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
    # This process's rows for its devices of D (made once: the program does not consume
    # its input); empty when it owns no device of D.
    zero_rows: Mapping[jax.Device, jax.Array]


CacheKey = tuple[Shape, str, Sharding, Sharding]


@dataclass(eq=False)
class UnionMover:
    """Moves arrays between disjoint meshes with one program over their union (module
    docstring); programs cached per (shape, dtype, source sharding, destination sharding).

    Every process owning a device of S or D must call `move` for the same arrays in the
    same order; the others may call it too (they get a placeholder and run nothing).
    Moves are ordered with every other program spanning processes
    (`process_order.chained`): `move` returns once the program is dispatched.
    """

    _cache: dict[CacheKey, UnionProgram] = field(default_factory=dict, repr=False)

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def entries(self) -> tuple[UnionProgram, ...]:
        return tuple(self._cache.values())

    def move(self, array: jax.Array, dst: NamedSharding) -> jax.Array:
        """`array` with sharding `dst`; this process's shards of `dst` filled."""
        shape, dtype, src = tuple(array.shape), array.dtype, array.sharding
        devices = union_devices(src, dst)
        me = jax.process_index()
        if all(d.process_index != me for d in devices):
            return placeholder(shape, dtype, dst)
        entry = self._entry(shape, dtype, src, dst)
        stacked = self._stack(array, entry, me)
        moved = chained(entry.rows, lambda token: entry.program(stacked, token))
        out_rows = {s.device: s.data for s in moved.addressable_shards}
        plan = entry.plan
        mine = [out_rows[d].reshape(plan.dst_shard_shape)
                for d in plan.devices if d in plan.dst_devices and d.process_index == me]
        return jax.make_array_from_single_device_arrays(shape, dst, mine, dtype=dtype)

    def _entry(self, shape: Shape, dtype: DTypeLike, src: Sharding,
               dst: NamedSharding) -> UnionProgram:
        key: CacheKey = (shape, str(dtype), src, dst)
        found = self._cache.get(key)
        if found is None:
            plan = plan_union(shape, src, dst)
            me = jax.process_index()
            local_dst = [d for d in plan.devices if d in plan.dst_devices and d.process_index == me]
            zeros = {} if not local_dst else {
                s.device: s.data for s in build_zeros(local_dst, plan.src_shard_shape, dtype)().addressable_shards}
            found = UnionProgram(plan, union_rows(plan), build_program(plan), zeros)
            self._cache[key] = found
        return found

    @staticmethod
    def _stack(array: jax.Array, entry: UnionProgram, me: int) -> jax.Array:
        """The program's input: this process's rows of [|U|, *src_shard] over "u"."""
        plan = entry.plan
        shards = {s.device: s.data for s in array.addressable_shards}
        row_shape = (1, *plan.src_shard_shape)
        rows = [shards[d].reshape(row_shape) if d in plan.src_devices else entry.zero_rows[d]
                for d in plan.devices if d.process_index == me]
        return jax.make_array_from_single_device_arrays(
            (len(plan.devices), *plan.src_shard_shape), entry.rows, rows, dtype=array.dtype)


def union_move(array: jax.Array, dst: NamedSharding) -> jax.Array:
    """`UnionMover().move(array, dst)`: one move, nothing cached (compiles every call)."""
    return UnionMover().move(array, dst)


def placeholder(shape: Shape, dtype: DTypeLike, dst: NamedSharding) -> jax.Array:
    """A global array with sharding `dst` and no addressable shards (this process owns
    no device of `dst`; jax refuses it when it does)."""
    return jax.make_array_from_single_device_arrays(shape, dst, [], dtype=dtype)


def _id(device: jax.Device) -> int:
    return int(device.id)


def _ids(devices: set[jax.Device] | frozenset[jax.Device]) -> list[int]:
    return sorted(d.id for d in devices)
