"""Pipeline schedules (`alpa_mlir.dialect_utils.schedules`): clock counts, dependencies, memory."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alpa_mlir.dialect_utils import schedules
from alpa_mlir.dialect_utils.schedules import (
    ClockTable,
    ScheduleError,
    ScheduleKind,
    Task,
    TaskKind,
    check_dependencies,
    clock_table,
    format_table,
    max_in_flight,
    per_mesh_order,
)

GPIPE = ScheduleKind.GPIPE
ONE_F_ONE_B = ScheduleKind.ONE_F_ONE_B
FORWARD_ONLY = ScheduleKind.FORWARD_ONLY

F, B, A = Task.forward, Task.backward, Task.apply


def expected_clocks(kind: ScheduleKind, s: int, m: int) -> int:
    return 2 * (s + m - 1) + 1 if kind.has_backward else s + m - 1


def clock_of(table: ClockTable) -> dict[Task, int]:
    return {task: c for c, row in enumerate(table) for task in row if task is not None}


def check_all(kind: ScheduleKind, s: int, m: int) -> None:
    """Every property a table of `kind` must have, for S = s and M = m."""
    table = clock_table(kind, s, m)
    assert len(table) == expected_clocks(kind, s, m), (kind, s, m)
    assert all(len(row) == s for row in table)
    check_dependencies(table, kind)
    check_dependencies(table, kind, num_microbatches=m)
    counts = Counter(task for row in table for task in row if task is not None)
    expected = {F(i, mb) for i in range(s) for mb in range(m)}
    if kind.has_backward:
        expected |= {B(i, mb) for i in range(s) for mb in range(m)} | {A(i) for i in range(s)}
        assert table[-1] == tuple(A(i) for i in range(s))
    assert set(counts) == expected and set(counts.values()) == {1}
    for i in range(s):
        held = max_in_flight(table, i)
        if kind is ONE_F_ONE_B:
            assert held <= s - i and held == min(s - i, m), (s, m, i, held)
        else:
            assert held == m, (kind, s, m, i, held)


# --- the module stays pure ----------------------------------------------------------


def test_no_jax_import() -> None:
    tree = ast.parse(Path(schedules.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "enum", "collections", "dataclasses", "typing"}


# --- clock counts, dependencies, exactly-once, in-flight -----------------------------


@pytest.mark.parametrize("kind", list(ScheduleKind), ids=lambda k: k.value)
@pytest.mark.parametrize("num_stages", range(1, 9))
def test_grid(kind: ScheduleKind, num_stages: int) -> None:
    for m in range(1, 33):
        check_all(kind, num_stages, m)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(list(ScheduleKind)),
    s=st.integers(1, 16),
    m=st.integers(1, 64),
)
def test_random_sizes(kind: ScheduleKind, s: int, m: int) -> None:
    check_all(kind, s, m)


# --- the layouts ---------------------------------------------------------------------


@pytest.mark.parametrize(("s", "m"), [(1, 1), (3, 4), (4, 2), (5, 9)])
def test_gpipe_closed_form(s: int, m: int) -> None:
    clock = clock_of(clock_table(GPIPE, s, m))
    for i in range(s):
        for mb in range(m):
            assert clock[F(i, mb)] == mb + i
            assert clock[B(i, mb)] == (s + m - 1) + mb + (s - 1 - i)
        assert clock[A(i)] == 2 * (s + m - 1)


@pytest.mark.parametrize(("s", "m"), [(1, 3), (3, 4), (4, 2), (6, 6)])
def test_forward_only_is_gpipe_forward_half(s: int, m: int) -> None:
    gpipe = clock_table(GPIPE, s, m)
    forward_only = clock_table(FORWARD_ONLY, s, m)
    assert forward_only == gpipe[: s + m - 1]
    assert all(t is None or t.kind is TaskKind.FORWARD for row in forward_only for t in row)


@pytest.mark.parametrize(("s", "m"), [(1, 1), (2, 5), (3, 4), (4, 2), (8, 3), (5, 12)])
def test_1f1b_per_mesh_order(s: int, m: int) -> None:
    orders = per_mesh_order(clock_table(ONE_F_ONE_B, s, m))
    for i, order in enumerate(orders):
        w = min(s - i, m)
        steady = [t for k in range(m - w) for t in (B(i, k), F(i, w + k))]
        expected = [F(i, k) for k in range(w)] + steady + [B(i, k) for k in range(m - w, m)]
        assert list(order) == [*expected, A(i)]


def test_1f1b_matches_alpa_first_clocks() -> None:
    # Alpa's PipeDreamFlush docstring, 3 meshes: clock -> {mesh: (microbatch, F/B)}.
    alpa = [
        {0: (0, "F")},
        {0: (1, "F"), 1: (0, "F")},
        {0: (2, "F"), 1: (1, "F"), 2: (0, "F")},
        {2: (0, "B")},
        {1: (0, "B"), 2: (1, "F")},
        {0: (0, "B"), 1: (2, "F"), 2: (1, "B")},
        {0: (3, "F"), 1: (1, "B"), 2: (2, "F")},
    ]
    table = clock_table(ONE_F_ONE_B, 3, 4)
    for clock, cells in enumerate(alpa):
        got = {i: (t.microbatch, t.label[0]) for i, t in enumerate(table[clock]) if t}
        assert got == cells, clock


def test_per_mesh_order_gpipe() -> None:
    orders = per_mesh_order(clock_table(GPIPE, 3, 2))
    for i, order in enumerate(orders):
        assert order == (F(i, 0), F(i, 1), B(i, 0), B(i, 1), A(i))


def test_docstring_pictures() -> None:
    doc = schedules.__doc__ or ""
    pictures = re.findall(r"::\n\n((?:    .*\n)+)", doc)
    assert len(pictures) == 3
    for kind, picture in zip([GPIPE, ONE_F_ONE_B, FORWARD_ONLY], pictures, strict=True):
        expected = "\n".join(line[4:] for line in picture.rstrip("\n").split("\n"))
        assert format_table(clock_table(kind, 3, 4)) == expected, kind


# --- check_dependencies on broken tables ---------------------------------------------


def mutable(table: ClockTable) -> list[list[Task | None]]:
    return [list(row) for row in table]


def test_swap_breaks_forward_dependency() -> None:
    table = mutable(clock_table(GPIPE, 3, 4))
    # Mesh 1 runs F0 at clock 1; move it to clock 0, before mesh 0's F0.
    table[0][1], table[1][1] = table[1][1], table[0][1]
    with pytest.raises(ScheduleError, match=r"forward \(stage 1, microbatch 0\) runs at clock 0"):
        check_dependencies(table, GPIPE)


def test_swap_breaks_backward_dependency() -> None:
    table = mutable(clock_table(ONE_F_ONE_B, 3, 4))
    # Mesh 1: swap B0 (clock 4) with the idle clock 3, beside mesh 2's B0 at clock 3.
    assert table[4][1] == B(1, 0) and table[3][1] is None
    table[3][1], table[4][1] = table[4][1], table[3][1]
    with pytest.raises(
        ScheduleError,
        match=r"backward \(stage 1, microbatch 0\) runs at clock 3, but it needs "
        r"backward \(stage 2, microbatch 0\), which runs at clock 3",
    ):
        check_dependencies(table, ONE_F_ONE_B)


def test_backward_before_its_forward() -> None:
    table = mutable(clock_table(ONE_F_ONE_B, 1, 2))  # F0 B0 F1 B1 A
    table[0][0], table[1][0] = table[1][0], table[0][0]
    with pytest.raises(ScheduleError, match=r"needs forward \(stage 0, microbatch 0\)"):
        check_dependencies(table, ONE_F_ONE_B)


def test_apply_too_early() -> None:
    table = mutable(clock_table(GPIPE, 2, 2))
    table[-1][0], table[-2][0] = table[-2][0], table[-1][0]  # A before B1 on mesh 0
    with pytest.raises(ScheduleError, match=r"apply \(stage 0\) runs at clock"):
        check_dependencies(table, GPIPE)


def test_dropped_task() -> None:
    table = mutable(clock_table(ONE_F_ONE_B, 3, 4))
    clock = clock_of(clock_table(ONE_F_ONE_B, 3, 4))[B(2, 1)]
    table[clock][2] = None
    with pytest.raises(ScheduleError, match=r"backward \(stage 2, microbatch 1\) is missing"):
        check_dependencies(table, ONE_F_ONE_B)


def test_dropped_apply() -> None:
    table = mutable(clock_table(GPIPE, 2, 3))
    table[-1][1] = None
    with pytest.raises(ScheduleError, match=r"apply \(stage 1\) is missing"):
        check_dependencies(table, GPIPE)


def test_repeated_task() -> None:
    table = mutable(clock_table(GPIPE, 3, 4))
    table[5][0] = F(0, 2)  # idle on mesh 0 after its forwards
    with pytest.raises(ScheduleError, match=r"forward \(stage 0, microbatch 2\) runs twice"):
        check_dependencies(table, GPIPE)


def test_task_on_wrong_mesh() -> None:
    table = mutable(clock_table(FORWARD_ONLY, 2, 2))
    table[0][1] = F(0, 1)
    with pytest.raises(ScheduleError, match=r"is on mesh 1, but stage i runs on mesh i"):
        check_dependencies(table, FORWARD_ONLY)


def test_unexpected_tasks() -> None:
    gpipe = clock_table(GPIPE, 2, 2)
    with pytest.raises(ScheduleError, match=r"is not a task of a forward-only schedule"):
        check_dependencies(gpipe, FORWARD_ONLY)
    with pytest.raises(ScheduleError, match=r"microbatch 1\) is not a task .* 1 microbatches"):
        check_dependencies(gpipe, GPIPE, num_microbatches=1)
    with pytest.raises(ScheduleError, match=r"backward \(stage 0, microbatch 0\) is missing"):
        check_dependencies(clock_table(FORWARD_ONLY, 2, 2), GPIPE)


def test_malformed_tables() -> None:
    with pytest.raises(ScheduleError, match="empty"):
        check_dependencies((), GPIPE)
    with pytest.raises(ScheduleError, match="no mesh"):
        check_dependencies(((),), GPIPE)
    with pytest.raises(ScheduleError, match=r"clock 1 has 1 cells, expected 2"):
        check_dependencies(((F(0, 0), None), (None,)), FORWARD_ONLY)
    with pytest.raises(ScheduleError, match=r"expected a Task or None, got 'F0'"):
        check_dependencies((("F0",),), FORWARD_ONLY)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="no forward or backward task"):
        check_dependencies(((None,),), FORWARD_ONLY)
    with pytest.raises(ValueError, match="num_microbatches must be an int >= 1"):
        check_dependencies(((F(0, 0),),), FORWARD_ONLY, num_microbatches=0)


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(list(ScheduleKind)),
    s=st.integers(1, 6),
    m=st.integers(1, 8),
    data=st.data(),
)
def test_moving_a_task_before_a_dependency_is_caught(
    kind: ScheduleKind, s: int, m: int, data: st.DataObject
) -> None:
    table = clock_table(kind, s, m)
    clock = clock_of(table)
    # A task with a dependency, moved to an idle clock of its mesh at or before it.
    movable = [
        (task, dep)
        for task in clock
        for dep in schedules._dependencies(task, s, m)
        if any(table[c][task.stage] is None for c in range(clock[dep] + 1))
    ]
    if not movable:
        return
    task, dep = data.draw(st.sampled_from(sorted(movable)))
    idle = [c for c in range(clock[dep] + 1) if table[c][task.stage] is None]
    to = data.draw(st.sampled_from(idle))
    broken = mutable(table)
    broken[clock[task]][task.stage] = None
    broken[to][task.stage] = task
    # Only the moved task's own dependencies can break (the others only gain slack).
    with pytest.raises(ScheduleError, match=re.escape(f"{task} runs at clock {to}, but")):
        check_dependencies(broken, kind, num_microbatches=m)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(list(ScheduleKind)),
    s=st.integers(1, 6),
    m=st.integers(1, 8),
    data=st.data(),
)
def test_dropping_any_task_is_caught(
    kind: ScheduleKind, s: int, m: int, data: st.DataObject
) -> None:
    table = clock_table(kind, s, m)
    task = data.draw(st.sampled_from(sorted(clock_of(table))))
    broken = [[None if t == task else t for t in row] for row in table]
    with pytest.raises(ScheduleError, match=re.escape(f"{task} is missing")):
        check_dependencies(broken, kind, num_microbatches=m)


# --- max_in_flight -------------------------------------------------------------------


def test_max_in_flight_hand_table() -> None:
    table = ((F(0, 0),), (F(0, 1),), (B(0, 0),), (F(0, 2),), (F(0, 3),), (B(0, 1),))
    assert max_in_flight(table, 0) == 3
    assert max_in_flight(((None,),), 0) == 0


@pytest.mark.parametrize("mesh", [-1, 3, True, 1.0])
def test_max_in_flight_bad_mesh(mesh: object) -> None:
    with pytest.raises(ValueError, match=r"mesh must be in \[0, 3\)"):
        max_in_flight(clock_table(GPIPE, 3, 2), mesh)  # type: ignore[arg-type]


# --- inputs --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "3", None])
def test_invalid_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match=r"num_stages must be an int >= 1, got"):
        clock_table(GPIPE, bad, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"num_microbatches must be an int >= 1, got"):
        clock_table(ONE_F_ONE_B, 4, bad)  # type: ignore[arg-type]


def test_schedule_kind_parse() -> None:
    assert [ScheduleKind.parse(k.value) for k in ScheduleKind] == list(ScheduleKind)
    assert ScheduleKind.parse("1f1b") is ONE_F_ONE_B
    with pytest.raises(ValueError, match=r"unknown pipeline schedule 'pipedream'; expected one of"):
        ScheduleKind.parse("pipedream")
    with pytest.raises(ValueError, match="must be a ScheduleKind, got 'gpipe'"):
        clock_table("gpipe", 2, 2)  # type: ignore[arg-type]


def test_task_validation() -> None:
    assert Task("forward", 1, 2) == F(1, 2)  # type: ignore[arg-type]
    assert F(1, 2).kind == "forward" and A(0).microbatch is None
    assert (F(0, 3).label, B(2, 0).label, A(1).label) == ("F3", "B0", "A")
    assert str(B(2, 0)) == "backward (stage 2, microbatch 0)" and str(A(1)) == "apply (stage 1)"
    with pytest.raises(ValueError, match=r"Task kind must be one of .*got 'sideways'"):
        Task("sideways", 0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"stage must be an int >= 0, got -1"):
        F(-1, 0)
    with pytest.raises(ValueError, match="a forward task needs a microbatch int >= 0, got None"):
        Task(TaskKind.FORWARD, 0)
    with pytest.raises(ValueError, match="a backward task needs a microbatch int >= 0, got -2"):
        B(0, -2)
    with pytest.raises(ValueError, match="its microbatch must be None, got 0"):
        Task(TaskKind.APPLY, 0, 0)



@pytest.mark.parametrize("kind", [ScheduleKind.GPIPE, ScheduleKind.ONE_F_ONE_B])
def test_in_flight_is_what_the_clock_tables_hold(kind: ScheduleKind) -> None:
    """One source: the stage DP's stash count (`in_flight`, by stages from the end) is the
    activations each mesh of the runtime's clock table holds, for every stage."""
    for num_stages in range(1, 7):
        for num_microbatches in range(1, 9):
            table = schedules.clock_table(kind, num_stages, num_microbatches)
            for mesh in range(num_stages):
                held = schedules.max_in_flight(table, mesh)
                assert schedules.in_flight(kind, num_stages - mesh, num_microbatches) == held
                want = num_microbatches if kind is ScheduleKind.GPIPE else min(num_stages - mesh, num_microbatches)
                assert held == want


def test_in_flight_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="num_stages must be an int >= 1, got 0"):
        schedules.in_flight(ScheduleKind.ONE_F_ONE_B, 0, 4)
