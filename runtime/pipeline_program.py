"""An MPMD module read as a pipeline program: its stages, fragments and values, and the
instructions of one step in program order (the pipeline runtime's step 1).

`read_program` unrolls the program over its microbatch calls into *instructions* -- RUN
a fragment (for microbatch m) or MOVE a value to another mesh (an `mpmd.transfer`) --
each tagged with its schedule unit: "pre" (everything @main does before the calls:
microbatch slices, zero accumulators, the prologue), (forward, stage, m), (backward,
stage, m), (apply, stage) and "post" (whatever follows). A transfer belongs to the unit
of the value's producer (sent as soon as it exists), except one that brings a value
back from host memory: it belongs to the unit of the first fragment that reads it
(fetched right before it is needed; `Move.memory_kind` marks the moves that only change
a value's memory kind). Every mesh value's declared type (stage, shape, dtype, sharding,
memory kind) is kept, for processes that hold only a placeholder.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import mpmd
from alpa_mlir.dialect_utils import shardy as S
from alpa_mlir.dialect_utils.mpmd import MemoryKind
from alpa_mlir.dialect_utils.stage_plan import StagePlanError, StagePlanRecord, read_stage_plan
from alpa_mlir.dialect_utils.types import tensor_info

from .errors import ExecutionError
from .mpmd_reference import read_mpmd_signature
from .signature import Signature

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
    # Set when the move only changes the value's memory kind (to this one): same mesh,
    # same sharding (an offloaded activation and its way back).
    memory_kind: MemoryKind | None = None


Instruction = Run | Move


@dataclass(frozen=True)
class ValueInfo:
    """A value's stage, global shape and dtype, and declared sharding (its mesh_tensor)."""

    stage: int
    shape: tuple[int, ...]
    dtype: np.dtype
    sharding: str | None  # the sharding body `<@stage1, [...]>`, None = replicated
    memory_kind: MemoryKind = MemoryKind.DEVICE


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
        # Moves back from host memory that no fragment has read yet -> their instruction;
        # one that none reads keeps its producer's unit.
        self.reloads: dict[Slot, int] = {}

    def typed(self, s: Slot, t: ir.Type) -> None:
        if mpmd.is_mesh_tensor(t):
            parsed = mpmd.parse_mesh_tensor(t)
            info = tensor_info(parsed.tensor)
            self.values[s] = ValueInfo(self.stage_of[parsed.mesh], tuple(info.shape), info.numpy_dtype(),
                                       parsed.sharding, parsed.memory_kind)

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
        for s in inputs:  # a value back from host memory is fetched right before its first reader
            if s in self.reloads:
                k = self.reloads.pop(s)
                self.instructions[k] = replace(self.instructions[k], unit=unit)
                self.producer_unit[s] = unit
        outputs = tuple(self.slot(r, m) for r in op.results)
        for s, r in zip(outputs, op.results, strict=True):
            self.producer_unit[s] = unit
            self.typed(s, r.type)
        self.instructions.append(Run(index, stage, inputs, outputs, unit))

    def transfer(self, op: ir.Operation, m: int) -> None:
        source = self.resolve(self.slot(op.operands[0], m))
        target = self.slot(op.results[0], m)
        src = mpmd.parse_mesh_tensor(op.operands[0].type)
        dst = mpmd.parse_mesh_tensor(op.results[0].type)
        unit = self.producer_unit.get(source, Unit(PRE))
        self.producer_unit[target] = unit
        self.typed(target, op.results[0].type)
        memory_kind = dst.memory_kind if dst.memory_kind is not src.memory_kind else None
        if memory_kind is MemoryKind.DEVICE:
            self.reloads[target] = len(self.instructions)
        self.instructions.append(Move(source, target, self.stage_of[dst.mesh], dst.sharding, unit, memory_kind))

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
