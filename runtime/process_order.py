"""Programs whose devices belong to several processes run, on each device, in the order
this process dispatches them.

Why: such a program has collectives between processes (gloo on CPU, NCCL on GPUs), and
every process of the job dispatches the same programs in the same order. The CPU client
starts a program as soon as its inputs are ready, not in dispatch order, so two of them
dispatched back to back could run in one order on one process and in the other order on
its peer, each waiting in a collective the other never enters (measured: about one run
in three of a 2-process pipeline hung that way).

Two ways to keep the order:

- `chained` (the moves between processes, `union_transfer`): the program takes a token
  row per device and returns the next one; each device of this process keeps the token
  of the last chained program that ran on it. A program therefore starts on a device only
  after the previous chained program on that device has finished, and nothing waits on
  the host: this process goes on dispatching its own work (the compute of its stages)
  while the move waits for its peer. Every process dispatches in the same order, so the
  programs waiting on each other follow one global order and cannot form a cycle.
- `ordered` (any other program spanning processes: a reshard of a global array, a
  fragment on a mesh over several processes, a gather of outputs): waits for every
  chained program dispatched so far, runs the program and waits for it.

Reads and writes only this process's tokens (one small int32 array per local device).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import jax
import numpy as np
from jax.sharding import NamedSharding

T = TypeVar("T")

_tokens: dict[jax.Device, jax.Array] = {}  # per local device: the last chained program's token


def spans_processes(devices: Iterable[jax.Device]) -> bool:
    """The devices belong to more than one process: a program over them must be
    dispatched through `chained` or `ordered`."""
    return len({d.process_index for d in devices}) > 1


def one_at_a_time(devices: Iterable[jax.Device]) -> bool:
    """Whether this process must wait for each program (and each move) before it
    dispatches the next one: on the CPU client of a multi-process job, where every
    collective is a gloo collective, even between the devices of one process. Each
    device runs a program as soon as its own inputs are ready, so two programs with
    collectives in flight on the same devices can enter them in different orders on
    different devices and wait for each other forever (measured: a 2-process pipeline
    hung about one run in ten on 2 busy cores, four threads of one process inside an
    all-reduce, its peer's inside a collective-permute waiting for it). GPUs order a
    device's work on its stream and are not affected."""
    return jax.process_count() > 1 and any(d.platform == "cpu" for d in devices)


def chained(rows: NamedSharding, dispatch: Callable[[jax.Array], tuple[T, jax.Array]]) -> T:
    """`dispatch(token)` starts a program over the devices of `rows` (a 1-D mesh; the
    token is an int32 vector with one element per device, sharded as `rows`) and returns
    (its outputs, its next token, computed by the program from the token it got). Not
    waited for: the next program chained on one of these devices waits for it."""
    devices = [d for d in rows.mesh.devices.flat if d.process_index == jax.process_index()]
    pieces = [_tokens[d] if d in _tokens else jax.device_put(np.zeros(1, np.int32), d) for d in devices]
    token = jax.make_array_from_single_device_arrays((rows.mesh.devices.size,), rows, pieces)
    out, after = dispatch(token)
    for shard in after.addressable_shards:
        _tokens[shard.device] = shard.data
    return out


def ordered(dispatch: Callable[[], T]) -> T:
    """`dispatch()` (which starts one program over devices of several processes and
    returns its outputs, a jax.Array or a pytree of them) after every chained program of
    this process has finished; waits for its outputs."""
    settle()
    return jax.block_until_ready(dispatch())


def settle() -> None:
    """Wait for every chained program dispatched by this process."""
    if _tokens:
        jax.block_until_ready(list(_tokens.values()))
