"""Arrays moved between the memories of their own devices (offloaded activations).

An `mpmd.transfer` that changes only a value's memory kind (`dialect_utils.mpmd.MemoryKind`:
device memory <-> pinned host memory, same mesh, same sharding) copies each shard from
one memory of its device to another: `jax.device_put(array,
array.sharding.with_memory_kind(kind))`, batched. An array over the devices of several
processes is copied shard by shard by each process, for its own shards, and assembled
again: no collective, nothing crosses processes.

`check_memories` fails early, naming the device, where a device of this process has no
memory of a kind the program uses (JAX's CPU, GPU and TPU devices have "pinned_host").
`host_bytes` is what an array holds in host memory on this process's devices, read from
the array itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
from jax.sharding import Sharding, SingleDeviceSharding

from alpa_mlir.dialect_utils.mpmd import MemoryKind

from .errors import ExecutionError


def in_memory(arrays: Sequence[jax.Array], kinds: Sequence[MemoryKind]) -> list[jax.Array]:
    """Each array copied into memory kind `kinds[i]` of its own devices, sharded as it is
    (always a new array: the runtime frees source and copy separately)."""
    targets = [a.sharding.with_memory_kind(k.value) for a, k in zip(arrays, kinds, strict=True)]
    local = [i for i, a in enumerate(arrays) if a.is_fully_addressable]
    out: list[jax.Array | None] = [None] * len(arrays)
    if local:
        copied = jax.device_put([arrays[i] for i in local], [targets[i] for i in local], may_alias=False)
        for i, array in zip(local, copied, strict=True):
            out[i] = array
    for i, array in enumerate(arrays):
        if out[i] is None:
            out[i] = _shard_by_shard(array, targets[i])
    return [a for a in out if a is not None]


def _shard_by_shard(array: jax.Array, target: Sharding) -> jax.Array:
    """`array` (over devices of several processes) in `target` (its own sharding in
    another memory kind): this process's shards copied one by one, assembled again."""
    kind = target.memory_kind
    shards = [jax.device_put(s.data, SingleDeviceSharding(s.device, memory_kind=kind), may_alias=False)
              for s in array.addressable_shards]
    return jax.make_array_from_single_device_arrays(array.shape, target, shards, dtype=array.dtype)


def check_memories(devices: Iterable[jax.Device], kinds: Iterable[MemoryKind]) -> None:
    """ExecutionError unless every device of this process has a memory of each kind."""
    wanted = sorted(set(kinds))
    me = jax.process_index()
    for device in devices:
        if device.process_index != me:
            continue
        has = [m.kind for m in device.addressable_memories()]
        missing = [k for k in wanted if k.value not in has]
        if missing:
            raise ExecutionError(f"device {device} has no {missing[0].value} memory (it has: {', '.join(has)}); "
                                 f"the program moves values to {missing[0].value} memory")


def host_bytes(array: jax.Array) -> int:
    """Bytes `array` holds in host memory on this process's devices (one copy per
    device shard), 0 for an array in device memory."""
    if array.sharding.memory_kind in (None, MemoryKind.DEVICE.value):
        return 0
    return sum(s.data.nbytes for s in array.addressable_shards)
