"""The static instruction list of a pipeline step (the pipeline runtime's step 3).

`order`: the program's instructions in the order of a clock table
(`dialect_utils.schedules`; by default the schedule the plan was costed for): "pre",
then clock by clock, mesh by mesh, then "post"; checked against the data dependencies.
`last_uses`: the values freed after each instruction. `donations`: the fragment inputs
whose buffers a fragment may consume. `choose_schedule`: the schedule to run.
"""

from __future__ import annotations

from collections.abc import Sequence

from alpa_mlir.dialect_utils.schedules import ScheduleKind, clock_table
from alpa_mlir.dialect_utils.stage_plan import StagePlanRecord

from .errors import ExecutionError
from .pipeline_program import (
    BACKWARD,
    POST,
    PRE,
    Instruction,
    PipelineProgram,
    Run,
    Slot,
    Unit,
)


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
    if ins.memory_kind is not None:
        return f"transfer to {ins.memory_kind.value} memory ({where})"
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
