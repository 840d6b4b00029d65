"""The pipeline runtime: an MPMD program run on stage submeshes under a schedule.

Reads an MPMD module (`docs/mpmd-format.md`) and local devices; runs it. See
`docs/runtime.md` for the picture. In short:

1. `pipeline_program.read_program`: the program unrolled over its microbatch calls into
   *instructions* (RUN a fragment, MOVE a value to another mesh), each tagged with its
   schedule unit.
2. `stage_placement.place_stages`: each stage's submesh and logical mesh.
3. `instruction_order.order`: the units in the order of a clock table; each value's last
   use gives the static FREE points (`last_uses`), and dead inputs are donated.
4. `PipelineExecutable.step` (this module): RUN = the fragment's compiled SPMD executable
   (`fragments.FragmentCache`) launched on its inputs without waiting (jax dispatches
   asynchronously, so meshes overlap where the hardware allows); MOVE = the
   `transfers.Transfer` interface (`jax.device_put`, or Alpa's local all-gather), or,
   for a move that only changes the memory kind (an activation offloaded to pinned
   host memory after its forward and brought back before its backward), a copy between
   the memories of the same devices in the same sharding (`memory_kinds.in_memory`);
   values whose last use passed are deleted at once (so an offloaded value's device copy
   goes right after the copy to the host). Arguments may be arrays already on
   their meshes (the previous step's outputs): parameters and optimizer state stay
   resident between steps.

Across processes (multi-controller `jax.distributed`, `runtime/distributed.py`) every
process reads the same program and walks the same instruction list: it compiles and
RUNs only the fragments of stages with a device of its own (`StagePlacement.devices`:
`jax.Device.process_index`), keeps a placeholder (no addressable shards) for the values
of the others, and takes part in the MOVEs whose source or destination mesh has a
device of its own. A move across processes is one program over both meshes
(`Transfer` -> `union_transfer`), for which both sides agree on the shardings: the
value is resharded to its declared (`mesh_tensor`) sharding on the source side, moved
to the declared destination sharding, then resharded to the consumer's layout there.
A memory-kind move never crosses processes: each process copies its own shards.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from jax.extend.mlir import ir
from jax.sharding import NamedSharding, PartitionSpec

from alpa_mlir.dialect_utils import mpmd
from alpa_mlir.dialect_utils import shardy as S
from alpa_mlir.dialect_utils.mpmd import MemoryKind
from alpa_mlir.dialect_utils.schedules import ScheduleKind

from .distributed import collect, put
from .errors import ExecutionError
from .fragments import FragmentCache
from .instruction_order import choose_schedule, donations, last_uses, order
from .memory_kinds import check_memories, host_bytes, in_memory
from .pipeline_program import Instruction, Move, Run, Slot, read_program
from .process_order import one_at_a_time, ordered, settle, spans_processes
from .signature import Signature, check_inputs
from .spmd import Program
from .stage_placement import place_stages
from .transfers import Transfer, transfer_for
from .union_transfer import UnionMover, placeholder


class Route(enum.Enum):
    """How a process takes part in a MOVE."""

    LOCAL = "local"  # both meshes are on this process's devices: `Transfer.move_many`
    ACROSS = "across"  # some of either mesh's devices are: a program over both meshes
    ELSEWHERE = "elsewhere"  # neither has a device here: a placeholder
    MEMORY = "memory"  # a change of memory kind on the mesh, with a device here: `in_memory`


def _batches(instructions: Sequence[Instruction], batch_moves: bool,
             routes: Sequence[Route] | None = None) -> tuple[tuple[int, int], ...]:
    """[first, last) index ranges that `step` runs as one: a RUN alone; consecutive MOVEs
    inside this process (`Route.LOCAL`, the default) together (one batched transfer
    call), and so consecutive memory-kind moves (`Route.MEMORY`), or alone when
    `batch_moves` is off. A batch's moves read no value that another of them writes (a
    value offloaded by a forward and brought back for the backward right after it
    starts a new batch)."""
    def route(k: int) -> Route | None:
        if not isinstance(instructions[k], Move):
            return None
        found = Route.LOCAL if routes is None else routes[k]
        return found if found in (Route.LOCAL, Route.MEMORY) else None
    out: list[tuple[int, int]] = []
    written: set[Slot] = set()  # the targets of the last batch's moves
    for k in range(len(instructions)):
        ins = instructions[k]
        joins = (batch_moves and route(k) is not None and out and out[-1][1] == k
                 and route(out[-1][0]) is route(k) and isinstance(ins, Move) and ins.source not in written)
        if joins:
            out[-1] = (out[-1][0], k + 1)
        else:
            out.append((k, k + 1))
            written.clear()
        if isinstance(ins, Move):
            written.add(ins.target)
    return tuple(out)


@dataclass
class TraceEvent:
    mesh: int
    name: str
    start: float
    end: float
    bytes_moved: int = 0


@dataclass
class StepStats:
    runs: int = 0
    moves: int = 0  # between meshes
    memory_moves: int = 0  # between the memory kinds of a mesh (offloads and their way back)
    peak_host_bytes: int = 0  # most bytes held at once in host memory on this process's devices
    seconds: float = 0.0
    events: list[TraceEvent] = field(default_factory=list)


class PipelineExecutable:
    """An MPMD training step compiled for local devices, called like the step itself.

    `step(inputs)` returns the outputs as device-resident `jax.Array`s (pass parameters
    and optimizer state from one step's outputs to the next step's inputs: they stay
    on their meshes); `run(inputs)` returns numpy arrays.

    donate: fragments consume the buffers of inputs that are dead after them
    (`donations`; the step's own arguments are never consumed). cache_dir: a folder
    where compiled fragments are kept across processes (`fragments.FragmentCache`).
    """

    def __init__(self, module: ir.Module, devices: Sequence[jax.Device] | None = None, *,
                 schedule: ScheduleKind | str | None = None,
                 transfer: Transfer | str = "local-all-gather", trace: bool = False,
                 donate: bool = True, cache_dir: str | Path | None = None) -> None:
        self.program = read_program(module)
        self.schedule, self.warnings = choose_schedule(self.program.plan, schedule)
        devices = list(jax.devices()) if devices is None else list(devices)
        self.placements = place_stages(self.program, devices)
        self.transfer = transfer_for(transfer, wait=trace) if isinstance(transfer, str) else transfer
        self.trace = trace
        self.instructions = order(self.program, self.schedule)
        check_memories((d for p in self.placements for d in p.devices),
                       (ins.memory_kind for ins in self.instructions if isinstance(ins, Move) and ins.memory_kind))
        self.frees = last_uses(self.program, self.instructions)
        self.donated = donations(self.program, self.instructions, self.frees) if donate else {}
        self.cache = FragmentCache(cache_dir=cache_dir)
        me = jax.process_index()
        # Stages with a device of this process: their fragments run here.
        self.local_stages = frozenset(p.stage for p in self.placements
                                      if any(d.process_index == me for d in p.devices))
        started = time.perf_counter()
        self.programs: tuple[Program | None, ...] = tuple(
            self.cache.compile(f, self.placements[self._stage(f)].devices, donate=self.donated.get(k, ()))
            if self._stage(f) in self.local_stages else None
            for k, f in enumerate(self.program.fragments))
        self.compile_seconds = time.perf_counter() - started
        wanted = self._consumer_shardings()
        # Values are moved and placed straight into the layout their first reader's
        # executable expects, so that launching it never reshards.
        self.arg_shardings = tuple(
            wanted.get(slot) or self._named(stage, body, self._memory_kind(slot))
            for slot, stage, body in zip(self.program.arg_slots, self.program.arg_stages,
                                         self.program.arg_shardings, strict=True))
        # (None for a memory-kind move: the value keeps its own sharding.)
        self.move_shardings = tuple(
            (wanted.get(ins.target) or self._named(ins.stage, ins.sharding))
            if isinstance(ins, Move) and ins.memory_kind is None else None
            for ins in self.instructions)
        self.routes = tuple(self._route(ins) if isinstance(ins, Move) else Route.LOCAL
                            for ins in self.instructions)
        self._collector = UnionMover()
        self._declared: dict[Slot, NamedSharding] = {}
        # one program in flight at a time (`process_order.one_at_a_time`)
        self._serial = one_at_a_time(d for p in self.programs if p is not None for d in p.mesh.devices)
        self._spanning = {p.mesh.devices: spans_processes(p.mesh.devices) for p in self.programs if p is not None}
        self._reshard: dict[int, tuple[bool, ...]] = {}  # RUN index -> inputs to reshard
        self._batches = _batches(self.instructions, not (trace or self._serial), self.routes)
        self.last = StepStats()
        # Called after each batch of `step`, before its frees (`device_peaks`).
        self._observe: Callable[[int, dict[Slot, jax.Array]], None] | None = None

    def _consumer_shardings(self) -> dict[Slot, NamedSharding]:
        """Slot -> the input sharding of the first RUN that reads it."""
        found: dict[Slot, NamedSharding] = {}
        for ins in self.instructions:
            program = self.programs[ins.fragment] if isinstance(ins, Run) else None
            if isinstance(ins, Run) and program is not None:
                for s, target in zip(ins.inputs, program.input_shardings, strict=True):
                    found.setdefault(s, target)
        return found

    def _route(self, move: Move) -> Route:
        """How this process takes part in `move` (see `Route`)."""
        me = jax.process_index()
        if move.memory_kind is not None:
            here = any(d.process_index == me for d in self.placements[move.stage].devices)
            return Route.MEMORY if here else Route.ELSEWHERE
        ends = (*self.placements[self.program.values[move.source].stage].devices,
                *self.placements[move.stage].devices)
        mine = [d.process_index == me for d in ends]
        return Route.LOCAL if all(mine) else Route.ACROSS if any(mine) else Route.ELSEWHERE

    def declared(self, s: Slot) -> NamedSharding:
        """The sharding a value's mesh_tensor type declares, on its stage's mesh."""
        found = self._declared.get(s)
        if found is None:
            info = self.program.values[s]
            found = self._declared[s] = self._named(info.stage, info.sharding, info.memory_kind)
        return found

    def _placeholder(self, s: Slot) -> jax.Array:
        """A value of another process's stage: no addressable shards, declared sharding.
        Made only where one is read (a move's source, a result): the values of other
        processes' stages are not in a step's environment."""
        info = self.program.values[s]
        return placeholder(info.shape, info.dtype, self.declared(s))

    @property
    def signature(self) -> Signature:
        return self.program.signature

    def _stage(self, fragment: ir.Operation) -> int:
        return self.program.mesh_names.index(mpmd.fragment_mesh(fragment))

    def _named(self, stage: int, body: str | None, memory_kind: MemoryKind = MemoryKind.DEVICE) -> NamedSharding:
        mesh = self.placements[stage].jax_mesh
        kind = None if memory_kind is MemoryKind.DEVICE else memory_kind.value  # None: the default, device
        if body is None:
            return NamedSharding(mesh, PartitionSpec(), memory_kind=kind)
        parsed = S.parse_sharding(body)
        dims = [None if not d.axes else d.axes[0] if len(d.axes) == 1 else tuple(d.axes) for d in parsed.dims]
        return NamedSharding(mesh, PartitionSpec(*dims), memory_kind=kind)

    def _memory_kind(self, s: Slot) -> MemoryKind:
        info = self.program.values.get(s)
        return MemoryKind.DEVICE if info is None else info.memory_kind

    def place(self, inputs: Sequence[np.ndarray | jax.Array]) -> list[jax.Array]:
        """Arguments on their stage meshes (arrays already there are used as they are)."""
        check_inputs(self.signature, inputs)
        placed = []
        for value, target, stage in zip(inputs, self.arg_shardings, self.program.arg_stages, strict=True):
            if isinstance(value, jax.Array) and value.sharding == target:
                placed.append(value)
            elif stage in self.local_stages:
                placed.append(put(value, target))
            else:
                placed.append(placeholder(np.shape(value), np.asarray(value).dtype if not isinstance(
                    value, jax.Array) else value.dtype, target))
        return placed

    def step(self, inputs: Sequence[np.ndarray | jax.Array]) -> list[jax.Array]:
        """One training step (module docstring, step 4)."""
        env: dict[Slot, jax.Array] = dict(zip(self.program.arg_slots, self.place(inputs), strict=True))
        self.transfer.stats.clear()  # per step
        stats = StepStats()
        held: dict[Slot, int] = {}  # host-memory bytes of the live values in host memory
        started = time.perf_counter()
        for first, last in self._batches:
            t0 = time.perf_counter() if self.trace else 0.0
            ins = self.instructions[first]
            moved = 0
            if isinstance(ins, Run):
                program = self.programs[ins.fragment]
                if program is not None:  # else another process's stage: nothing here
                    outputs = self._launch(first, program, [env[s] for s in ins.inputs])
                    env.update(zip(ins.outputs, outputs, strict=True))
                    stats.runs += 1
            elif self.routes[first] is Route.LOCAL:
                moves = self.instructions[first:last]
                values = [env[m.source] for m in moves]  # type: ignore[union-attr]
                targets = self.move_shardings[first:last]
                for m, out in zip(moves, self.transfer.move_many(values, targets), strict=True):  # type: ignore[arg-type]
                    env[m.target] = out  # type: ignore[union-attr]
                stats.moves += len(moves)
                moved = sum(v.nbytes for v in values)
            elif self.routes[first] is Route.MEMORY:
                moved = self._change_memory(first, last, env, held)
                stats.memory_moves += last - first
                stats.peak_host_bytes = max(stats.peak_host_bytes, sum(held.values()))
            else:
                for k in range(first, last):
                    moved += self._move_across(k, env)
                    stats.moves += self.routes[k] is Route.ACROSS
            if self.trace or self._serial:  # batches are single instructions then
                settle()
                jax.block_until_ready([env[s] for s in (ins.outputs if isinstance(ins, Run) else (ins.target,))
                                       if s in env])
            if self.trace:
                stats.events.append(TraceEvent(ins.stage, self._event_name(ins), t0 - started,
                                               time.perf_counter() - started, moved))
            if self._observe is not None:
                self._observe(first, env)
            for k in range(first, last):
                for s in self.frees[k]:  # each slot holds its own array (moves make new ones)
                    value = env.pop(s, None)
                    held.pop(s, None)
                    if value is not None:
                        value.delete()
        outputs = [env[s] if s in env else self._placeholder(s) for s in self.program.result_slots]
        jax.block_until_ready(outputs)
        settle()  # this process's part of the last move between processes
        stats.seconds = time.perf_counter() - started
        self.last = stats
        return outputs

    def _change_memory(self, first: int, last: int, env: dict[Slot, jax.Array], held: dict[Slot, int]) -> int:
        """MOVEs first..last-1, each a change of memory kind on its mesh (`Route.MEMORY`),
        as one batched copy; `held` gets the host-memory bytes of each new array. Returns
        the bytes copied."""
        moves = [m for m in self.instructions[first:last] if isinstance(m, Move) and m.memory_kind is not None]
        values = [env[m.source] for m in moves]
        for m, out in zip(moves, in_memory(values, [m.memory_kind for m in moves if m.memory_kind]), strict=True):
            env[m.target] = out
            held[m.target] = host_bytes(out)
        return sum(int(v.nbytes) for v in values)

    def _move_across(self, k: int, env: dict[Slot, jax.Array]) -> int:
        """MOVE k when a process other than this one owns a device of either mesh: the
        value in its declared sharding, moved by a program over both meshes to the
        declared destination sharding, then laid out as its reader expects. A process
        owning no device of either does nothing. Returns the bytes sent."""
        ins = self.instructions[k]
        assert isinstance(ins, Move)
        if self.routes[k] is Route.ELSEWHERE:
            return 0
        src = self.declared(ins.source)
        value = env[ins.source] if ins.source in env else self._placeholder(ins.source)
        if value.addressable_shards and value.sharding != src:
            value = put(value, src)
        out = self.transfer.move(value, self.declared(ins.target))
        wanted = self.move_shardings[k]
        if out.addressable_shards and wanted is not None and out.sharding != wanted:
            out = put(out, wanted)
        env[ins.target] = out
        return int(value.nbytes)

    def run(self, inputs: Sequence[np.ndarray | jax.Array]) -> list[np.ndarray]:
        """One step, outputs as numpy (across processes: see `collect`)."""
        outputs = self.collect(self.step(inputs))
        if any(x is None for x in outputs):
            raise ExecutionError("run() returns every output on process 0 only; use step() and collect()")
        return [x for x in outputs if x is not None]

    def collect(self, outputs: Sequence[jax.Array]) -> list[np.ndarray | None]:
        """`step`'s outputs as numpy on process 0 (and on the processes owning them);
        every process of a multi-process job must call it (`distributed.collect`)."""
        return collect(outputs, self._collector)

    def device_peaks(self, inputs: Sequence[np.ndarray | jax.Array]) -> dict[int, int]:
        """Per device of this process (id -> bytes): the most device memory it holds
        during one step as `step` runs it: after every instruction, before the values
        last used there are freed, the bytes of the live arrays' shards on it (in device
        memory), plus, for the devices of a fragment that just ran, the temporaries XLA
        reserves for that fragment (its compiled memory analysis)."""
        peaks: dict[int, int] = {}

        def observe(first: int, env: dict[Slot, jax.Array]) -> None:
            used: dict[int, int] = {}
            for array in env.values():
                if array.is_deleted() or host_bytes(array):
                    continue
                for shard in array.addressable_shards:
                    used[shard.device.id] = used.get(shard.device.id, 0) + int(shard.data.nbytes)
            ins = self.instructions[first]
            program = self.programs[ins.fragment] if isinstance(ins, Run) else None
            if program is not None:
                temp = program.memory().temp_bytes
                for device in program.mesh.devices:
                    used[device.id] = used.get(device.id, 0) + temp
            for device_id, nbytes in used.items():
                peaks[device_id] = max(peaks.get(device_id, 0), nbytes)

        self._observe = observe
        try:
            self.step(inputs)
        finally:
            self._observe = None
        return peaks

    def fragment_seconds(self, inputs: Sequence[np.ndarray | jax.Array], repeats: int = 3) -> list[float]:
        """Per RUN instruction of a step, in order: the fastest of `repeats` executions of
        its fragment alone, on its actual inputs, waiting for the result (fragments are
        pure, so repeating one changes nothing). Their sum is the step time without any
        runtime overhead; the step's values are computed along the way as `step` does.
        Across processes every process calls this; a RUN of another process's stage
        counts 0 here (the job's sum is the sum of every process's)."""
        env: dict[Slot, jax.Array] = dict(zip(self.program.arg_slots, self.place(inputs), strict=True))
        times: list[float] = []
        for k, ins in enumerate(self.instructions):
            if isinstance(ins, Move):
                if self.routes[k] is Route.MEMORY:
                    self._change_memory(k, k + 1, env, {})
                elif self.routes[k] is not Route.LOCAL:
                    self._move_across(k, env)
                else:
                    target = self.move_shardings[k]
                    assert target is not None
                    env[ins.target] = self.transfer.move(env[ins.source], target)
                if ins.target in env:
                    jax.block_until_ready(env[ins.target])
                continue
            program = self.programs[ins.fragment]
            if program is None:
                times.append(0.0)
                continue
            args = [env[s] for s in ins.inputs]
            donated = set(self.donated.get(ins.fragment, ()))
            best = float("inf")
            outputs: list[jax.Array] = []
            for _ in range(repeats):  # a consumed input is given as a fresh copy, untimed
                given = jax.block_until_ready([jax.device_put(a, a.sharding, may_alias=False) if i in donated else a
                                               for i, a in enumerate(args)])
                start = time.perf_counter()
                outputs = jax.block_until_ready(self._launch(-1, program, given))
                best = min(best, time.perf_counter() - start)
            times.append(best)
            env.update(zip(ins.outputs, outputs, strict=True))
        return times

    def _launch(self, index: int, program: Program, arrays: list[jax.Array]) -> list[jax.Array]:
        """Execute without waiting. An input whose layout is not the one the executable
        expects (a fragment's output feeding the next fragment on its mesh, when XLA
        laid them out differently) is resharded first; which inputs need it is the same
        every step, so the comparison is made once per instruction."""
        flags = self._reshard.get(index)
        if flags is None:
            flags = tuple(a.sharding != t for a, t in zip(arrays, program.input_shardings, strict=True))
            if index >= 0:
                self._reshard[index] = flags
        if any(flags):
            arrays = [jax.device_put(a, t) if f else a
                      for a, t, f in zip(arrays, program.input_shardings, flags, strict=True)]
        if self._spanning[program.mesh.devices]:  # outputs handed on: waited for at once
            return ordered(lambda: program.launch(arrays))
        return program.launch(arrays)

    def _event_name(self, ins: Instruction) -> str:
        u = ins.unit
        mb = "" if u.microbatch is None else f" mb{u.microbatch}"
        if isinstance(ins, Run):
            return f"{self.program.fragment_kinds[ins.fragment]}{mb}"
        if ins.memory_kind is not None:
            return f"transfer{mb} -> {ins.memory_kind.value} memory"
        return f"transfer{mb} -> {self.program.mesh_names[ins.stage]}"
