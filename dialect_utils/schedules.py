"""Pipeline schedules: which task each mesh runs at each clock.

Pure Python, no jax (docs/runtime.md). Shared by the planner and the runtime: the stage
DP takes its memory rule (`in_flight`) from here, and the pipeline runtime turns a clock
table into per-mesh instruction lists; this module only decides the order.

Formulation
-----------
S stages run on S meshes (stage i on mesh i) over M microbatches. The tasks are

    forward  (s, m)   stage s on microbatch m       F<m> in the pictures
    backward (s, m)   its gradient                  B<m>
    apply    (s)      stage s's optimizer update     A    (once, after all microbatches)

and their dependencies (each one "strictly earlier clock"):

    forward  (s, m)  after  forward (s-1, m)
    backward (s, m)  after  backward (s+1, m)  and  forward (s, m)
    apply    (s)     after  backward (s, m) for every m

A clock table has one row per clock and one cell per mesh (a `Task` or None = idle); each
task takes one clock. Every schedule here is a per-mesh task order run "as soon as
possible": at each clock a mesh runs its next task if that task's dependencies ran at
earlier clocks, else it idles. The schedules differ only in the per-mesh order; then
GPipe and 1F1B end with one clock in which every mesh runs its apply task. These are the
clock layouts of Alpa's `GpipeSchedule`, `PipeDreamFlush` and `InferenceSchedule`
(alpa/pipeline_parallel/schedules.py).

GPIPE: every mesh runs all its forwards, then all its backwards, microbatch 0 first.
Forward (s, m) runs at clock m + s and backward (s, m) at (S+M-1) + m + (S-1-s): the
forward pass, then the same picture mirrored (the last mesh starts the backward pass),
then the apply clock; 2(S+M-1) + 1 clocks. Mesh s holds the activations of all M
microbatches at the turn. S=3, M=4 (columns are clocks)::

    clock   0  1  2  3  4  5  6  7  8  9 10 11 12
    mesh 0 F0 F1 F2 F3  .  .  .  . B0 B1 B2 B3  A
    mesh 1  . F0 F1 F2 F3  .  . B0 B1 B2 B3  .  A
    mesh 2  .  . F0 F1 F2 F3 B0 B1 B2 B3  .  .  A

ONE_F_ONE_B (PipeDream-flush): mesh s runs w = min(S-s, M) warm-up forwards, then
alternates one backward and one forward until its forwards are done, then its remaining
w backwards (Alpa counts S-s-1 warm-up forwards and then forward/backward pairs: the same
order). A backward frees its microbatch's activations, so mesh s never holds more than
min(S-s, M) microbatches (GPipe: M), at the same 2(S+M-1) + 1 clocks. S=3, M=4::

    clock   0  1  2  3  4  5  6  7  8  9 10 11 12
    mesh 0 F0 F1 F2  .  . B0 F3 B1  . B2  . B3  A
    mesh 1  . F0 F1  . B0 F2 B1 F3 B2  . B3  .  A
    mesh 2  .  . F0 B0 F1 B1 F2 B2 F3 B3  .  .  A

FORWARD_ONLY (inference): the forward pass of GPipe alone, S+M-1 clocks, no apply::

    clock   0  1  2  3  4  5
    mesh 0 F0 F1 F2 F3  .  .
    mesh 1  . F0 F1 F2 F3  .
    mesh 2  .  . F0 F1 F2 F3

(Alpa's InferenceSchedule appends an apply row that is empty when there are no apply
stages; here the table simply ends.) The pictures are `format_table(clock_table(...))`;
`check_dependencies` validates any table, `max_in_flight` counts held activations (and
`in_flight` gives the same count without a table, for the stage DP's memory rule) and
`per_mesh_order` gives each mesh's tasks in the order its instruction list runs them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeGuard


class ScheduleError(ValueError):
    """A clock table breaks a schedule's rules (a task missing, repeated or too early)."""


class ScheduleKind(enum.Enum):
    """The pipeline schedule (Alpa's names)."""

    GPIPE = "gpipe"
    """All forwards, then all backwards, then apply."""
    ONE_F_ONE_B = "1f1b"
    """PipeDream-flush: warm-up forwards, one backward / one forward, cool-down, apply."""
    FORWARD_ONLY = "forward-only"
    """Inference: forwards only."""

    @classmethod
    def parse(cls, text: str) -> ScheduleKind:
        """The kind named `text` ("gpipe", "1f1b", "forward-only")."""
        for kind in cls:
            if kind.value == text:
                return kind
        choices = ", ".join(repr(kind.value) for kind in cls)
        raise ValueError(f"unknown pipeline schedule {text!r}; expected one of {choices}")

    @property
    def has_backward(self) -> bool:
        """Whether the schedule runs backward and apply tasks."""
        return self is not ScheduleKind.FORWARD_ONLY


class TaskKind(enum.StrEnum):
    """What a task runs; a `StrEnum`, so `task.kind == "forward"` holds too."""

    FORWARD = "forward"
    BACKWARD = "backward"
    APPLY = "apply"


@dataclass(frozen=True, order=True)
class Task:
    """One clock of work on one mesh: `kind` of stage `stage` (which runs on mesh `stage`)
    for microbatch `microbatch` (None for apply, which covers all microbatches)."""

    kind: TaskKind
    stage: int
    microbatch: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, TaskKind):
            try:
                object.__setattr__(self, "kind", TaskKind(self.kind))
            except ValueError:
                choices = ", ".join(repr(k.value) for k in TaskKind)
                raise ValueError(f"Task kind must be one of {choices}, got {self.kind!r}") from None
        if not _is_int(self.stage) or self.stage < 0:
            raise ValueError(f"Task stage must be an int >= 0, got {self.stage!r}")
        if self.kind is TaskKind.APPLY:
            if self.microbatch is not None:
                raise ValueError(
                    f"an apply task covers all microbatches, so its microbatch must be "
                    f"None, got {self.microbatch!r}"
                )
        elif not _is_int(self.microbatch) or self.microbatch < 0:
            raise ValueError(
                f"a {self.kind.value} task needs a microbatch int >= 0, got {self.microbatch!r}"
            )

    @classmethod
    def forward(cls, stage: int, microbatch: int) -> Task:
        return cls(TaskKind.FORWARD, stage, microbatch)

    @classmethod
    def backward(cls, stage: int, microbatch: int) -> Task:
        return cls(TaskKind.BACKWARD, stage, microbatch)

    @classmethod
    def apply(cls, stage: int) -> Task:
        return cls(TaskKind.APPLY, stage, None)

    @property
    def label(self) -> str:
        """The short name in the pictures: F<m>, B<m> or A."""
        if self.kind is TaskKind.APPLY:
            return "A"
        return f"{self.kind.value[0].upper()}{self.microbatch}"

    def __str__(self) -> str:
        if self.kind is TaskKind.APPLY:
            return f"apply (stage {self.stage})"
        return f"{self.kind.value} (stage {self.stage}, microbatch {self.microbatch})"


ClockRow = tuple[Task | None, ...]
"""One clock: the task of each mesh (None = idle), mesh 0 first."""
ClockTable = tuple[ClockRow, ...]
"""One row per clock, clock 0 first."""


def clock_table(kind: ScheduleKind, num_stages: int, num_microbatches: int) -> ClockTable:
    """The clock table of schedule `kind` for `num_stages` meshes and `num_microbatches`
    microbatches: 2(S+M-1)+1 clocks for GPIPE and ONE_F_ONE_B, S+M-1 for FORWARD_ONLY."""
    if not isinstance(kind, ScheduleKind):
        raise ValueError(f"schedule kind must be a ScheduleKind, got {kind!r}")
    _check_sizes(num_stages, num_microbatches)
    orders = [_mesh_order(kind, stage, num_stages, num_microbatches) for stage in range(num_stages)]
    rows = _as_soon_as_possible(orders, num_stages, num_microbatches)
    if kind.has_backward:
        rows.append(tuple(Task.apply(stage) for stage in range(num_stages)))
    return tuple(rows)


def check_dependencies(
    table: Sequence[Sequence[Task | None]],
    kind: ScheduleKind,
    *,
    num_microbatches: int | None = None,
) -> None:
    """Raise `ScheduleError` (a ValueError) unless `table` runs every task of `kind` exactly
    once, each on its own mesh and after its dependencies (module docstring). The number
    of microbatches is inferred from the table unless given. The first problem found is
    reported: the table's shape, then a misplaced, unknown or repeated task (clock
    order), then a missing task, then the first task in clock order that runs too early.
    """
    num_stages = _table_width(table)
    clock_of: dict[Task, int] = {}
    for clock, row in enumerate(table):
        for mesh, task in enumerate(row):
            if task is None:
                continue
            if not isinstance(task, Task):
                raise ScheduleError(
                    f"clock {clock}, mesh {mesh}: expected a Task or None, got {task!r}"
                )
            if task.stage != mesh:
                raise ScheduleError(
                    f"clock {clock}: {task} is on mesh {mesh}, but stage i runs on mesh i"
                )
            if task in clock_of:
                raise ScheduleError(
                    f"{task} runs twice: at clock {clock_of[task]} and at clock {clock}"
                )
            clock_of[task] = clock
    if num_microbatches is None:
        microbatches = [t.microbatch for t in clock_of if t.microbatch is not None]
        if not microbatches:
            raise ScheduleError("the table holds no forward or backward task")
        num_microbatches = max(microbatches) + 1
    _check_sizes(num_stages, num_microbatches)
    expected = list(_all_tasks(kind, num_stages, num_microbatches))
    expected_set = set(expected)
    for task, clock in sorted(clock_of.items(), key=lambda item: (item[1], item[0].stage)):
        if task not in expected_set:
            raise ScheduleError(
                f"clock {clock}: {task} is not a task of a {kind.value} schedule with "
                f"{num_stages} stages and {num_microbatches} microbatches"
            )
    for task in expected:
        if task not in clock_of:
            raise ScheduleError(f"{task} is missing from the {kind.value} table")
    for task, clock in sorted(clock_of.items(), key=lambda item: (item[1], item[0].stage)):
        for dep in _dependencies(task, num_stages, num_microbatches):
            if clock_of[dep] >= clock:
                raise ScheduleError(
                    f"{task} runs at clock {clock}, but it needs {dep}, which runs at "
                    f"clock {clock_of[dep]}"
                )


def max_in_flight(table: Sequence[Sequence[Task | None]], mesh: int) -> int:
    """The most microbatches whose forward has run on `mesh` but whose backward there has
    not, over the clocks of `table`: how many microbatches of activations it holds."""
    num_stages = _table_width(table)
    if not _is_int(mesh) or not 0 <= mesh < num_stages:
        raise ValueError(f"mesh must be in [0, {num_stages}), got {mesh!r}")
    held: set[int | None] = set()
    most = 0
    for row in table:
        task = row[mesh]
        if task is None:
            continue
        if task.kind is TaskKind.FORWARD:
            held.add(task.microbatch)
            most = max(most, len(held))
        elif task.kind is TaskKind.BACKWARD:
            held.discard(task.microbatch)
    return most


def in_flight(kind: ScheduleKind, stages_from_here: int, num_microbatches: int) -> int:
    """The most microbatches of activations a stage holds under `kind` when it and the
    stages after it number `stages_from_here`: counted on the stage's own task order, the
    order its clock-table row runs (forwards hold, backwards free). 1F1B gives
    min(stages_from_here, M), GPipe and forward-only M. The count is nondecreasing in
    `stages_from_here` and constant from M on; the stage DP's memory rule reads it here,
    so planner and runtime agree by construction."""
    _check_sizes(stages_from_here, num_microbatches)
    held = most = 0
    for task in _mesh_order(kind, 0, stages_from_here, num_microbatches):
        held += 1 if task.kind is TaskKind.FORWARD else -1
        most = max(most, held)
    return most


def per_mesh_order(table: Sequence[Sequence[Task | None]]) -> tuple[tuple[Task, ...], ...]:
    """Each mesh's tasks in clock order, mesh 0 first (idle clocks dropped)."""
    num_stages = _table_width(table)
    return tuple(
        tuple(task for row in table if (task := row[mesh]) is not None)
        for mesh in range(num_stages)
    )


def format_table(table: Sequence[Sequence[Task | None]]) -> str:
    """The table as text, one line per mesh and one column per clock (`.` = idle)."""
    num_stages = _table_width(table)
    cells = [[task.label if task is not None else "." for task in row] for row in table]
    width = max([len(str(len(table) - 1))] + [len(c) for row in cells for c in row])
    head = f"mesh {num_stages - 1}"
    lines = ["clock".ljust(len(head)) + "".join(f" {c:>{width}}" for c in range(len(table)))]
    for mesh in range(num_stages):
        line = f"mesh {mesh}".ljust(len(head)) + "".join(f" {row[mesh]:>{width}}" for row in cells)
        lines.append(line.rstrip())
    return "\n".join(lines)


# --- helpers -------------------------------------------------------------------------


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_sizes(num_stages: object, num_microbatches: object) -> None:
    if not _is_int(num_stages) or num_stages < 1:
        raise ValueError(f"num_stages must be an int >= 1, got {num_stages!r}")
    if not _is_int(num_microbatches) or num_microbatches < 1:
        raise ValueError(f"num_microbatches must be an int >= 1, got {num_microbatches!r}")


def _table_width(table: Sequence[Sequence[Task | None]]) -> int:
    if len(table) == 0:
        raise ScheduleError("the clock table is empty")
    width = len(table[0])
    if width == 0:
        raise ScheduleError("clock 0 has no mesh; a clock table needs one cell per mesh")
    for clock, row in enumerate(table):
        if len(row) != width:
            raise ScheduleError(
                f"clock {clock} has {len(row)} cells, expected {width} (one per mesh, "
                f"as at clock 0)"
            )
    return width


def _mesh_order(
    kind: ScheduleKind, stage: int, num_stages: int, num_microbatches: int
) -> list[Task]:
    """The tasks of mesh `stage` in the order it runs them (apply excluded)."""
    m = num_microbatches
    forwards = [Task.forward(stage, mb) for mb in range(m)]
    backwards = [Task.backward(stage, mb) for mb in range(m)]
    if kind is ScheduleKind.FORWARD_ONLY:
        return forwards
    if kind is ScheduleKind.GPIPE:
        return forwards + backwards
    warmup = min(num_stages - stage, m)
    order = forwards[:warmup]
    for k in range(m - warmup):
        order += [backwards[k], forwards[warmup + k]]
    return order + backwards[m - warmup :]


def _as_soon_as_possible(
    orders: list[list[Task]], num_stages: int, num_microbatches: int
) -> list[ClockRow]:
    """Run each mesh's order, each task at the first clock after its dependencies."""
    done: set[Task] = set()
    position = [0] * num_stages
    rows: list[ClockRow] = []
    while any(position[s] < len(orders[s]) for s in range(num_stages)):
        row: list[Task | None] = [None] * num_stages
        for stage in range(num_stages):
            if position[stage] == len(orders[stage]):
                continue
            task = orders[stage][position[stage]]
            if all(dep in done for dep in _dependencies(task, num_stages, num_microbatches)):
                row[stage] = task
        if not any(row):
            raise AssertionError(f"per-mesh orders deadlock at clock {len(rows)}: {orders}")
        for stage, ran in enumerate(row):
            if ran is not None:
                done.add(ran)
                position[stage] += 1
        rows.append(tuple(row))
    return rows


def _dependencies(task: Task, num_stages: int, num_microbatches: int) -> Iterator[Task]:
    """The tasks that must run at earlier clocks than `task`."""
    s, m = task.stage, task.microbatch
    if task.kind is TaskKind.APPLY:
        yield from (Task.backward(s, mb) for mb in range(num_microbatches))
        return
    assert m is not None
    if task.kind is TaskKind.FORWARD:
        if s > 0:
            yield Task.forward(s - 1, m)
        return
    if s + 1 < num_stages:
        yield Task.backward(s + 1, m)
    yield Task.forward(s, m)


def _all_tasks(kind: ScheduleKind, num_stages: int, num_microbatches: int) -> Iterator[Task]:
    """Every task of a `kind` schedule, mesh by mesh."""
    for stage in range(num_stages):
        yield from (Task.forward(stage, mb) for mb in range(num_microbatches))
        if kind.has_backward:
            yield from (Task.backward(stage, mb) for mb in range(num_microbatches))
            yield Task.apply(stage)
