"""The pipeline runtime: an MPMD program run on stage submeshes under a schedule.

Reads an MPMD module (`docs/mpmd-format.md`) and local devices; runs it. See
`docs/runtime.md` for the picture. In short:

1. `read_program`: the program unrolled over its microbatch calls into *instructions*
   -- RUN a fragment (for microbatch m) or MOVE a value to another mesh (an
   `mpmd.transfer`) -- each tagged with its schedule unit: "pre" (everything @main does
   before the calls: microbatch slices, zero accumulators, the prologue), (forward,
   stage, m), (backward, stage, m), (apply, stage) and "post" (whatever follows). A
   transfer belongs to the unit of the value's producer (sent as soon as it exists).
2. `place_stages`: each stage's submesh (from the plan in `alpa.stage_plan`: hosts x
   devices per host, Alpa's allocation of whole hosts and power-of-two slices; a plan
   whose submeshes cannot be placed is an error; a module without a plan gets
   consecutive devices) and its logical mesh (the topology's axes, row-major).
3. `order`: the units in the order of a clock table (`dialect_utils.schedules`; by
   default the schedule the plan was costed for): "pre", then clock by
   clock, mesh by mesh, then "post". The order is checked against the data
   dependencies, and each value's last use gives the static FREE points.
4. `PipelineExecutable.step`: RUN = the fragment's compiled SPMD executable
   (`fragments.FragmentCache`) launched on its inputs without waiting (jax dispatches
   asynchronously, so meshes overlap where the hardware allows); MOVE = the
   `transfers.Transfer` interface (`jax.device_put`, or Alpa's local all-gather);
   values whose last use passed are deleted at once. Arguments may be arrays already on
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
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from jax.extend.mlir import ir
from jax.sharding import Mesh as JaxMesh
from jax.sharding import NamedSharding, PartitionSpec

from alpa_mlir.dialect_utils import mpmd
from alpa_mlir.dialect_utils import shardy as S
from alpa_mlir.dialect_utils.schedules import ScheduleKind, clock_table
from alpa_mlir.dialect_utils.stage_plan import StagePlanError, StagePlanRecord, read_stage_plan
from alpa_mlir.dialect_utils.types import tensor_info

from .distributed import collect, is_multiprocess, put, spans_processes
from .errors import ExecutionError
from .fragments import FragmentCache
from .mpmd_reference import read_mpmd_signature
from .signature import Signature, check_inputs
from .spmd import Program
from .transfers import Transfer, transfer_for
from .union_transfer import UnionMover, placeholder

Slot = tuple[int, int]  # (value id, microbatch; -1 outside the microbatch function)
PRE, POST = "pre", "post"
FORWARD, BACKWARD, APPLY = "forward", "backward", "apply"


@dataclass(frozen=True)
class Unit:
    """A schedule unit: what one mesh runs in one clock."""

    kind: str  # pre | forward | backward | apply | post
    stage: int = -1
    microbatch: int | None = None


@dataclass(frozen=True)
class Run:
    fragment: int  # index into PipelineProgram.fragments
    stage: int
    inputs: tuple[Slot, ...]
    outputs: tuple[Slot, ...]
    unit: Unit


@dataclass(frozen=True)
class Move:
    source: Slot
    target: Slot
    stage: int  # destination stage
    sharding: str | None  # destination sharding body (`<@stage1, [...]>`), None = replicated
    unit: Unit


Instruction = Run | Move


@dataclass(frozen=True)
class ValueInfo:
    """A value's stage, global shape and dtype, and declared sharding (its mesh_tensor)."""

    stage: int
    shape: tuple[int, ...]
    dtype: np.dtype
    sharding: str | None  # the sharding body `<@stage1, [...]>`, None = replicated


@dataclass(frozen=True)
class PipelineProgram:
    """An MPMD module unrolled over its microbatches (module docstring, step 1)."""

    mesh_names: tuple[str, ...]  # stage k runs on mesh_names[k]
    meshes: tuple[S.Mesh, ...]
    fragments: tuple[ir.Operation, ...]
    fragment_kinds: tuple[str, ...]
    instructions: tuple[Instruction, ...]  # in program order
    arg_slots: tuple[Slot, ...]
    arg_stages: tuple[int, ...]
    arg_shardings: tuple[str | None, ...]
    result_slots: tuple[Slot, ...]
    num_microbatches: int
    signature: Signature
    plan: StagePlanRecord | None  # alpa.stage_plan, if the module has one
    values: dict[Slot, ValueInfo] = field(default_factory=dict)  # every mesh value's type

    @property
    def num_stages(self) -> int:
        return len(self.mesh_names)


def read_program(module: ir.Module) -> PipelineProgram:
    funcs = mpmd.program_functions(module)
    main = funcs["main"]
    meshes = mpmd.topology(main)
    names = tuple(meshes)
    stage_of = {n: k for k, n in enumerate(names)}
    reader = _Reader(stage_of)
    block = main.regions[0].blocks[0]
    arg_slots = tuple(reader.slot(a, -1) for a in block.arguments)
    for a, s in zip(block.arguments, arg_slots, strict=True):
        reader.typed(s, a.type)
    calls = 0
    after_calls = False
    for op in mpmd.top_level_ops(main):
        if op.name == mpmd.CALL:
            callee = funcs[mpmd.callee_name(op)]
            m = mpmd.call_counter(op)
            reader.call(op, callee, calls if m is None else m)
            calls += 1
            after_calls = True
        elif op.name == mpmd.FRAGMENT:
            reader.fragment(op, -1, APPLY if after_calls else PRE)
        elif op.name == mpmd.TRANSFER:
            reader.transfer(op, -1)
    terminator = list(block.operations)[-1].operation
    signature, placements = read_mpmd_signature(main)
    try:
        plan = read_stage_plan(module)
    except StagePlanError as e:
        raise ExecutionError(f"cannot read the module's stage plan: {e}") from None
    return PipelineProgram(
        mesh_names=names,
        meshes=tuple(meshes.values()),
        fragments=tuple(reader.fragments),
        fragment_kinds=tuple(reader.kinds),
        instructions=tuple(reader.instructions),
        arg_slots=arg_slots,
        arg_stages=tuple(stage_of.get(p.mesh or "", 0) for p in placements),
        arg_shardings=tuple(_sharding_body(a.type) for a in block.arguments),
        result_slots=tuple(reader.resolve(reader.slot(v, -1)) for v in terminator.operands),
        num_microbatches=max(calls, 1),
        signature=signature,
        plan=plan,
        values=reader.values,
    )


def _sharding_body(t: ir.Type) -> str | None:
    return mpmd.mesh_tensor_parts(t)[2] if mpmd.is_mesh_tensor(t) else None


class _Reader:
    def __init__(self, stage_of: dict[str, int]) -> None:
        self.stage_of = stage_of
        self.ids: dict[ir.Value, int] = {}
        self.alias: dict[Slot, Slot] = {}
        self.producer_unit: dict[Slot, Unit] = {}
        self.fragments: list[ir.Operation] = []
        self.kinds: list[str] = []
        self.fragment_index: dict[ir.Operation, int] = {}
        self.instructions: list[Instruction] = []
        self.values: dict[Slot, ValueInfo] = {}

    def typed(self, s: Slot, t: ir.Type) -> None:
        if mpmd.is_mesh_tensor(t):
            mesh, tensor, sharding = mpmd.mesh_tensor_parts(t)
            info = tensor_info(tensor)
            self.values[s] = ValueInfo(self.stage_of[mesh], tuple(info.shape), info.numpy_dtype(), sharding)

    def slot(self, v: ir.Value, m: int) -> Slot:
        vid = self.ids.setdefault(v, len(self.ids))
        return (vid, m)

    def resolve(self, s: Slot) -> Slot:
        while s in self.alias:
            s = self.alias[s]
        return s

    def fragment(self, op: ir.Operation, m: int, main_kind: str) -> None:
        stage = self.stage_of[mpmd.fragment_mesh(op)]
        kind = mpmd.fragment_kind(op)
        if m >= 0:
            unit = Unit(BACKWARD if kind == BACKWARD else FORWARD, stage, m)
        elif main_kind == APPLY:
            unit = Unit(APPLY, stage) if kind == APPLY else Unit(POST)
        else:
            unit = Unit(PRE)
        index = self.fragment_index.setdefault(op, len(self.fragments))
        if index == len(self.fragments):
            self.fragments.append(op)
            self.kinds.append(kind)
        inputs = tuple(self.resolve(self.slot(v, m)) for v in op.operands)
        outputs = tuple(self.slot(r, m) for r in op.results)
        for s, r in zip(outputs, op.results, strict=True):
            self.producer_unit[s] = unit
            self.typed(s, r.type)
        self.instructions.append(Run(index, stage, inputs, outputs, unit))

    def transfer(self, op: ir.Operation, m: int) -> None:
        source = self.resolve(self.slot(op.operands[0], m))
        target = self.slot(op.results[0], m)
        mesh_name, _, sharding = mpmd.mesh_tensor_parts(op.results[0].type)
        unit = self.producer_unit.get(source, Unit(PRE))
        self.producer_unit[target] = unit
        self.typed(target, op.results[0].type)
        self.instructions.append(Move(source, target, self.stage_of[mesh_name], sharding, unit))

    def call(self, op: ir.Operation, callee: ir.Operation, m: int) -> None:
        block = callee.regions[0].blocks[0]
        for arg, operand in zip(block.arguments, op.operands, strict=True):
            self.alias[self.slot(arg, m)] = self.resolve(self.slot(operand, -1))
        for inner in mpmd.top_level_ops(callee):
            if inner.name == mpmd.FRAGMENT:
                self.fragment(inner, m, PRE)
            elif inner.name == mpmd.TRANSFER:
                self.transfer(inner, m)
        terminator = list(block.operations)[-1].operation
        for result, value in zip(op.results, terminator.operands, strict=True):
            inner_slot = self.resolve(self.slot(value, m))
            self.alias[self.slot(result, -1)] = inner_slot
            self.producer_unit[self.slot(result, -1)] = self.producer_unit.get(inner_slot, Unit(PRE))


# ------------------------------------------------------------------------- placement


@dataclass(frozen=True)
class StagePlacement:
    """Where one stage runs: its devices (host-major) and its logical mesh."""

    stage: int
    mesh_name: str
    devices: tuple[jax.Device, ...]
    jax_mesh: JaxMesh


def place_stages(program: PipelineProgram, devices: Sequence[jax.Device]) -> tuple[StagePlacement, ...]:
    """Each stage's devices (module docstring, step 2)."""
    sizes = [m.size for m in program.meshes]
    needed = sum(sizes)
    if len(devices) < needed:
        raise ExecutionError(f"the program's {len(sizes)} stage meshes need {needed} devices, "
                             f"{len(devices)} given")
    blocks = _consecutive(sizes) if program.plan is None else _plan_blocks(program.plan, program, len(devices))
    placements = []
    for k, (mesh, ids) in enumerate(zip(program.meshes, blocks, strict=True)):
        devs = tuple(devices[i] for i in ids)
        grid = np.array(devs, dtype=object).reshape(mesh.shape)
        placements.append(StagePlacement(k, program.mesh_names[k], devs, JaxMesh(grid, mesh.axis_names)))
    return tuple(placements)


def _consecutive(sizes: Sequence[int]) -> list[list[int]]:
    out, start = [], 0
    for n in sizes:
        out.append(list(range(start, start + n)))
        start += n
    return out


def _plan_blocks(plan: StagePlanRecord, program: PipelineProgram, available: int) -> list[list[int]]:
    """Alpa's placement of the plan's submeshes on its cluster's host-major device grid:
    whole hosts first, then slices of a host at offsets aligned to their size. Raises
    ExecutionError when the plan does not match the program or its submeshes do not fit."""
    hosts, per_host = plan.cluster.hosts, plan.cluster.devices_per_host
    where = f"the stage plan (cluster {plan.cluster.name}, {hosts}x{per_host})"
    if plan.num_stages != program.num_stages:
        raise ExecutionError(f"{where} has {plan.num_stages} stages, the program {program.num_stages} meshes")
    if hosts * per_host > available:
        raise ExecutionError(f"{where} needs {hosts * per_host} devices, {available} given")
    for k, (stage, mesh) in enumerate(zip(plan.stages, program.meshes, strict=True)):
        if stage.num_devices != mesh.size:
            raise ExecutionError(f"{where}: stage {k} has submesh {stage.submesh[0]}x{stage.submesh[1]} "
                                 f"({stage.num_devices} devices) but mesh {program.mesh_names[k]} has {mesh.size}")
    free = np.ones((hosts, per_host), dtype=bool)
    blocks: list[list[int]] = [[] for _ in plan.stages]
    for k in sorted(range(plan.num_stages), key=lambda k: -plan.stages[k].num_devices):
        h, d = plan.stages[k].submesh
        found = _find_block(free, h, d)
        if found is None:
            taken = ", ".join(f"{s.submesh[0]}x{s.submesh[1]}" for s in plan.stages)
            raise ExecutionError(f"{where}: the submeshes [{taken}] cannot be placed: no free "
                                 f"{h}x{d} block left for stage {k}")
        rows, cols = found
        free[rows, cols] = False
        blocks[k] = [r * per_host + c for r in range(rows.start, rows.stop) for c in range(cols.start, cols.stop)]
    return blocks


def _find_block(free: np.ndarray, h: int, d: int) -> tuple[slice, slice] | None:
    hosts, per_host = free.shape
    for r in range(0, hosts - h + 1):
        for c in range(0, per_host - d + 1, d):
            if free[r:r + h, c:c + d].all():
                return slice(r, r + h), slice(c, c + d)
    return None


# ------------------------------------------------------------------------- order


def order(program: PipelineProgram, schedule: ScheduleKind) -> tuple[Instruction, ...]:
    """The instructions in schedule order (module docstring, step 3)."""
    by_unit: dict[Unit, list[Instruction]] = {}
    for ins in program.instructions:
        by_unit.setdefault(ins.unit, []).append(ins)
    has_backward = any(u.kind == BACKWARD for u in by_unit)
    if schedule is ScheduleKind.FORWARD_ONLY and has_backward:
        raise ExecutionError("schedule forward-only needs a program without backward fragments")
    table = clock_table(schedule, program.num_stages, program.num_microbatches)
    position = {id(ins): k for k, ins in enumerate(program.instructions)}
    ordered: list[Instruction] = list(by_unit.pop(Unit(PRE), []))
    for row in table:
        # The tasks of one clock are independent of each other, except the apply tasks,
        # which may pass values between meshes (and a stage may have several apply
        # fragments): the row's instructions run in program order, which is valid.
        merged = [ins for t in row if t is not None
                  for ins in by_unit.pop(Unit(t.kind, t.stage, t.microbatch), [])]
        ordered.extend(sorted(merged, key=lambda ins: position[id(ins)]))
    ordered.extend(by_unit.pop(Unit(POST), []))
    if by_unit:
        left = ", ".join(f"{u.kind}(stage {u.stage}, microbatch {u.microbatch})" for u in by_unit)
        raise ExecutionError(f"the {schedule.value} schedule has no clock for: {left}")
    _check_order(program, ordered)
    return tuple(ordered)


def _check_order(program: PipelineProgram, ordered: Sequence[Instruction]) -> None:
    ready = set(program.arg_slots)
    for ins in ordered:
        needs = ins.inputs if isinstance(ins, Run) else (ins.source,)
        for s in needs:
            if s not in ready:
                raise ExecutionError(f"schedule order runs {_describe(program, ins)} before one of its inputs exists")
        ready.update(ins.outputs if isinstance(ins, Run) else (ins.target,))


def _describe(program: PipelineProgram, ins: Instruction) -> str:
    u = ins.unit
    where = f"stage {u.stage}" + ("" if u.microbatch is None else f", microbatch {u.microbatch}")
    if isinstance(ins, Run):
        return f"fragment {program.fragment_kinds[ins.fragment]} ({where})"
    return f"transfer to stage {ins.stage} ({where})"


def last_uses(program: PipelineProgram, ordered: Sequence[Instruction]) -> tuple[tuple[Slot, ...], ...]:
    """Per instruction, the slots whose last use it is (freed right after it)."""
    last: dict[Slot, int] = {}
    keep = set(program.result_slots) | set(program.arg_slots)
    for i, ins in enumerate(ordered):
        for s in ins.inputs if isinstance(ins, Run) else (ins.source,):
            last[s] = i
        for s in ins.outputs if isinstance(ins, Run) else (ins.target,):
            last.setdefault(s, i)
    frees: list[list[Slot]] = [[] for _ in ordered]
    for s, i in last.items():
        if s not in keep:
            frees[i].append(s)
    return tuple(tuple(sorted(f)) for f in frees)


# ------------------------------------------------------------------------- execution


def donations(program: PipelineProgram, ordered: Sequence[Instruction],
              frees: Sequence[tuple[Slot, ...]]) -> dict[int, tuple[int, ...]]:
    """Fragment index -> the argument positions its executable may consume: those whose
    value is dead after every RUN of that fragment (freed right there, read once by it).
    The step's arguments and results are never freed, so never donated."""
    found: dict[int, set[int]] = {}
    for ins, dead in zip(ordered, frees, strict=True):
        if not isinstance(ins, Run):
            continue
        dead_set = set(dead)
        here = {i for i, s in enumerate(ins.inputs) if s in dead_set and ins.inputs.count(s) == 1}
        found[ins.fragment] = here if ins.fragment not in found else found[ins.fragment] & here
    return {f: tuple(sorted(p)) for f, p in found.items() if p}


class Route(enum.Enum):
    """How a process takes part in a MOVE."""

    LOCAL = "local"  # both meshes are on this process's devices: `Transfer.move_many`
    ACROSS = "across"  # some of either mesh's devices are: a program over both meshes
    ELSEWHERE = "elsewhere"  # neither has a device here: a placeholder


def _batches(instructions: Sequence[Instruction], batch_moves: bool,
             routes: Sequence[Route] | None = None) -> tuple[tuple[int, int], ...]:
    """[first, last) index ranges that `step` runs as one: a RUN alone; consecutive MOVEs
    inside this process (`Route.LOCAL`, the default) together (one batched transfer
    call), or alone when `batch_moves` is off. A batch's moves read no value that
    another of them writes (a move's target is a fresh slot)."""
    def local_move(k: int) -> bool:
        return isinstance(instructions[k], Move) and (routes is None or routes[k] is Route.LOCAL)
    out: list[tuple[int, int]] = []
    for k in range(len(instructions)):
        if batch_moves and local_move(k) and out and out[-1][1] == k and local_move(out[-1][0]):
            out[-1] = (out[-1][0], k + 1)
        else:
            out.append((k, k + 1))
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
    moves: int = 0
    seconds: float = 0.0
    events: list[TraceEvent] = field(default_factory=list)


def choose_schedule(plan: StagePlanRecord | None, requested: ScheduleKind | str | None
                    ) -> tuple[ScheduleKind, tuple[str, ...]]:
    """The schedule to run: `requested`, else the one the plan was costed for, else 1F1B;
    with a warning when `requested` is not the plan's (its memory rule was not costed)."""
    if requested is None:
        return (ScheduleKind.ONE_F_ONE_B if plan is None else plan.schedule), ()
    kind = ScheduleKind.parse(requested) if isinstance(requested, str) else requested
    if plan is None or kind is plan.schedule:
        return kind, ()
    return kind, (f"running schedule {kind.value}, but the stage plan was costed for "
                  f"{plan.schedule.value}: its memory figures do not hold for {kind.value}",)


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
            wanted.get(slot) or self._named(stage, body)
            for slot, stage, body in zip(self.program.arg_slots, self.program.arg_stages,
                                         self.program.arg_shardings, strict=True))
        self.move_shardings = tuple(
            (wanted.get(ins.target) or self._named(ins.stage, ins.sharding)) if isinstance(ins, Move) else None
            for ins in self.instructions)
        self.routes = tuple(self._route(ins) if isinstance(ins, Move) else Route.LOCAL
                            for ins in self.instructions)
        self._collector = UnionMover()
        self._spanning = {p.mesh.devices: spans_processes(p.mesh.devices) for p in self.programs if p is not None}
        self._reshard: dict[int, tuple[bool, ...]] = {}  # RUN index -> inputs to reshard
        self._batches = _batches(self.instructions, not trace, self.routes)
        self.last = StepStats()

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
        ends = (*self.placements[self.program.values[move.source].stage].devices,
                *self.placements[move.stage].devices)
        mine = [d.process_index == me for d in ends]
        return Route.LOCAL if all(mine) else Route.ACROSS if any(mine) else Route.ELSEWHERE

    def declared(self, s: Slot) -> NamedSharding:
        """The sharding a value's mesh_tensor type declares, on its stage's mesh."""
        info = self.program.values[s]
        return self._named(info.stage, info.sharding)

    def _placeholder(self, s: Slot) -> jax.Array:
        """A value of another process's stage: no addressable shards, declared sharding."""
        info = self.program.values[s]
        return placeholder(info.shape, info.dtype, self.declared(s))

    @property
    def signature(self) -> Signature:
        return self.program.signature

    def _stage(self, fragment: ir.Operation) -> int:
        return self.program.mesh_names.index(mpmd.fragment_mesh(fragment))

    def _named(self, stage: int, body: str | None) -> NamedSharding:
        mesh = self.placements[stage].jax_mesh
        if body is None:
            return NamedSharding(mesh, PartitionSpec())
        parsed = S.parse_sharding(body)
        dims = [None if not d.axes else d.axes[0] if len(d.axes) == 1 else tuple(d.axes) for d in parsed.dims]
        return NamedSharding(mesh, PartitionSpec(*dims))

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
        started = time.perf_counter()
        for first, last in self._batches:
            t0 = time.perf_counter() if self.trace else 0.0
            ins = self.instructions[first]
            moved = 0
            if isinstance(ins, Run):
                program = self.programs[ins.fragment]
                if program is None:  # another process's stage
                    env.update((s, self._placeholder(s)) for s in ins.outputs)
                else:
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
            else:
                for k in range(first, last):
                    moved += self._move_across(k, env)
                    stats.moves += self.routes[k] is Route.ACROSS
            if self.trace:  # batches are single instructions then
                jax.block_until_ready([env[s] for s in (ins.outputs if isinstance(ins, Run) else (ins.target,))])
                stats.events.append(TraceEvent(ins.stage, self._event_name(ins), t0 - started,
                                               time.perf_counter() - started, moved))
            for k in range(first, last):
                for s in self.frees[k]:  # each slot holds its own array (moves make new ones)
                    env.pop(s).delete()
        outputs = [env[s] for s in self.program.result_slots]
        jax.block_until_ready(outputs)
        stats.seconds = time.perf_counter() - started
        self.last = stats
        return outputs

    def _move_across(self, k: int, env: dict[Slot, jax.Array]) -> int:
        """MOVE k when a process other than this one owns a device of either mesh: the
        value in its declared sharding, moved by a program over both meshes to the
        declared destination sharding, then laid out as its reader expects. A process
        owning no device of either keeps a placeholder. Returns the bytes sent."""
        ins = self.instructions[k]
        assert isinstance(ins, Move)
        if self.routes[k] is Route.ELSEWHERE:
            env[ins.target] = self._placeholder(ins.target)
            return 0
        value, src = env[ins.source], self.declared(ins.source)
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

    def fragment_seconds(self, inputs: Sequence[np.ndarray | jax.Array], repeats: int = 3) -> list[float]:
        """Per RUN instruction of a step, in order: the fastest of `repeats` executions of
        its fragment alone, on its actual inputs, waiting for the result (fragments are
        pure, so repeating one changes nothing). Their sum is the step time without any
        runtime overhead; the step's values are computed along the way as `step` does."""
        if len(self.local_stages) < len(self.placements) or is_multiprocess():
            raise ExecutionError("fragment_seconds times a step run by one process")
        env: dict[Slot, jax.Array] = dict(zip(self.program.arg_slots, self.place(inputs), strict=True))
        times: list[float] = []
        for k, ins in enumerate(self.instructions):
            if isinstance(ins, Move):
                target = self.move_shardings[k]
                assert target is not None
                env[ins.target] = jax.block_until_ready(self.transfer.move(env[ins.source], target))
                continue
            args = [env[s] for s in ins.inputs]
            program = self.programs[ins.fragment]
            assert program is not None
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
        outputs = program.launch(arrays)
        if self._spanning[program.mesh.devices]:  # see distributed.spans_processes
            jax.block_until_ready(outputs)
        return outputs

    def _event_name(self, ins: Instruction) -> str:
        u = ins.unit
        mb = "" if u.microbatch is None else f" mb{u.microbatch}"
        if isinstance(ins, Run):
            return f"{self.program.fragment_kinds[ins.fragment]}{mb}"
        return f"transfer{mb} -> {self.program.mesh_names[ins.stage]}"
