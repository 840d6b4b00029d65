"""The pipeline runtime on 8 CPU devices (a simulated 2x4 cluster): pipelined steps equal
the single-device step (and 5 consecutive training steps equal 5 single-device steps),
transfers match the module's, no buffer leaks, every instruction has its clock.

The full grid (every zoo model x schedule x M in {1, 2, 4, 8} x plans) is marked
exhaustive (`make test-all`); a representative set runs in `make test`."""

from __future__ import annotations

import functools
from dataclasses import replace

import jax
import numpy as np
import pytest
from jax.extend.mlir.ir import StringAttr

from alpa_mlir.dialect_utils import mpmd
from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.schedules import ScheduleKind
from alpa_mlir.models.export import example_inputs, export_train_step
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.runtime.errors import ExecutionError
from alpa_mlir.runtime.instruction_order import choose_schedule
from alpa_mlir.runtime.pipeline import PipelineExecutable
from alpa_mlir.runtime.pipeline_program import Move, Run, read_program
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference
from alpa_mlir.runtime.stage_placement import place_stages

CLUSTER = "devices=2x4"
MANUAL_2 = ("stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,1x4", 2)
MANUAL_4 = ("stages=manual layer-ranges=0-0,1-1,2-2,3-3 stage-submeshes=1x2,1x2,1x2,1x2 "
            "stage-logical-shapes=2x1,1x2,2x1,1x2", 4)
AUTO = ("", 2)


@functools.cache
def exported(model: str) -> str:
    return export_train_step(model, "tiny", debug_info=False)


@functools.cache
def pipelined(model: str, m: int, plan: str, layers: int) -> str:
    ctx = make_context()
    module = parse_module(exported(model), ctx)
    stats = " allow-per-microbatch-statistics=true" if model == "wide-resnet" else ""
    PassManager.parse(
        f"builtin.module(alpa-pipeshard{{{CLUSTER} layers={layers} num-microbatches={m} {plan}{stats}}})", ctx
    ).run(module)
    return print_module(module)


@functools.cache
def reference_program(model: str):  # type: ignore[no-untyped-def]
    return compile_reference(parse_module(exported(model), make_context()), jax.devices()[0])


@functools.cache
def accumulated_reference(model: str, m: int):  # type: ignore[no-untyped-def]
    """The microbatched step on one device: the reference for a batch-norm model, whose
    microbatches normalize with their own statistics (the same numbers the pipeline
    computes; the full-batch step differs by design)."""
    ctx = make_context()
    module = parse_module(exported(model), ctx)
    PassManager.parse(
        f"builtin.module(alpa-gradient-accumulation{{num-microbatches={m} allow-per-microbatch-statistics=true}})",
        ctx).run(module)
    return compile_reference(module, jax.devices()[0])


def executable(text: str, schedule: str) -> PipelineExecutable:
    return PipelineExecutable(parse_module(text, make_context()), jax.devices()[:8], schedule=schedule)


def check_step(model: str, m: int, plan: tuple[str, int], schedule: str) -> None:
    text = pipelined(model, m, plan[0], plan[1])
    exe = executable(text, schedule)
    inputs = example_inputs(model, "tiny", seed=0)
    got = exe.run(inputs)
    batch_norm = model == "wide-resnet" and m > 1
    want = (accumulated_reference(model, m) if batch_norm else reference_program(model)).run(inputs)
    # Per-microbatch batch norm divides by microbatch variances and Adam by sqrt(v):
    # summation-order differences of the sharded stages reach a few 1e-5 in a few
    # parameters (measured: the stem conv kernel, max |difference| 4.2e-5 at values up to
    # 0.27), so 5x the f32 tolerances there.
    report = compare_outputs(got, want, Tolerance(rtol=5e-4, atol=5e-5) if batch_norm else Tolerance())
    assert report.passed, report.summary_line()


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_gpt_two_stages_equals_single_device(schedule: str) -> None:
    check_step("gpt", 4, MANUAL_2, schedule)


def test_mlp_auto_plan_equals_single_device() -> None:
    check_step("mlp", 2, AUTO, "1f1b")


def test_gpt_four_stages_equals_single_device() -> None:
    check_step("gpt", 8, MANUAL_4, "1f1b")


PLANS = {"manual2": MANUAL_2, "manual4": MANUAL_4, "auto": AUTO}
# (the tiny MLP has 3 dense layers: it has no 4-layer plan)
GRID = [(model, plan) for model in ["mlp", "gpt", "bert", "moe", "wide-resnet"] for plan in PLANS
        if not (model == "mlp" and plan == "manual4")]


@pytest.mark.exhaustive
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("m", [1, 2, 4, 8])
@pytest.mark.parametrize(("model", "plan"), GRID)
def test_zoo_grid(model: str, plan: str, m: int, schedule: str) -> None:
    check_step(model, m, PLANS[plan], schedule)


def test_five_training_steps_equal_single_device_steps() -> None:
    five_steps("gpt", "1f1b")


@pytest.mark.exhaustive
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("model", ["mlp", "bert", "moe", "wide-resnet"])
def test_five_steps_grid(model: str, schedule: str) -> None:
    five_steps(model, schedule)


def five_steps(model: str, schedule: str) -> None:
    m = 1 if model == "wide-resnet" else 2
    exe = executable(pipelined(model, m, *MANUAL_2), schedule)
    ref = reference_program(model)
    inputs = example_inputs(model, "tiny", seed=0)
    aliases = {a.index: a.aliased_output for a in exe.signature.args if a.aliased_output is not None}
    state: list = list(inputs)
    ref_state = [np.asarray(x) for x in inputs]
    for _ in range(5):
        outputs = exe.step(state)
        expected = ref.run(ref_state)
        # summation orders differ (sharded stages): five steps compound that, so 10x the
        # one-step f32 tolerance
        report = compare_outputs([np.asarray(o) for o in outputs], expected, Tolerance(rtol=1e-3, atol=1e-4))
        assert report.passed, report.summary_line()
        # parameters and optimizer state stay on their meshes: feed the arrays back
        state = [outputs[aliases[i]] if i in aliases else state[i] for i in range(len(state))]
        ref_state = [expected[aliases[i]] if i in aliases else ref_state[i] for i in range(len(ref_state))]
    losses = []
    for _ in range(3):
        outputs = exe.step(state)
        losses.append(float(np.asarray(outputs[-1])))
        state = [outputs[aliases[i]] if i in aliases else state[i] for i in range(len(state))]
    assert losses[-1] < losses[0]  # training on a fixed batch: the loss goes down


def test_no_buffer_leak() -> None:
    exe = executable(pipelined("mlp", 4, *AUTO), "1f1b")
    inputs = example_inputs("mlp", "tiny", seed=0)
    aliases = {a.index: a.aliased_output for a in exe.signature.args if a.aliased_output is not None}
    state: list = list(inputs)
    counts = []
    for step in range(50):
        outputs = exe.step(state)
        state = [outputs[aliases[i]] if i in aliases else state[i] for i in range(len(state))]
        del outputs
        if step in (1, 49):
            counts.append(len(jax.live_arrays()))
    assert counts[0] == counts[1]


def test_each_transfer_is_a_module_transfer() -> None:
    text = pipelined("gpt", 4, *MANUAL_2)
    module = parse_module(text, make_context())
    funcs = mpmd.program_functions(module)
    in_main = sum(1 for op in mpmd.top_level_ops(funcs["main"]) if op.name == mpmd.TRANSFER)
    in_callee = sum(1 for op in mpmd.top_level_ops(funcs["microbatch"]) if op.name == mpmd.TRANSFER)
    program = read_program(module)
    moves = [i for i in program.instructions if isinstance(i, Move)]
    assert len(moves) == in_main + 4 * in_callee
    exe = PipelineExecutable(module, jax.devices()[:8])
    exe.run(example_inputs("gpt", "tiny", seed=0))
    assert exe.last.moves == len(moves)
    runs = [i for i in program.instructions if isinstance(i, Run)]
    assert exe.last.runs == len(runs)


def test_stages_run_on_disjoint_submeshes() -> None:
    exe = executable(pipelined("gpt", 2, *MANUAL_2), "gpipe")
    ids = [{d.id for d in p.devices} for p in exe.placements]
    assert len(ids) == 2 and not ids[0] & ids[1] and len(ids[0] | ids[1]) == 8


def test_schedule_order_follows_the_clock_table() -> None:
    exe = executable(pipelined("gpt", 4, *MANUAL_2), "1f1b")
    units = [i.unit for i in exe.instructions if isinstance(i, Run) and i.unit.kind in ("forward", "backward")]
    # 1F1B on 2 meshes: mesh 1 runs backward of microbatch 0 before the forward of microbatch 1
    first_b = next(k for k, u in enumerate(units) if u.kind == "backward" and u.stage == 1 and u.microbatch == 0)
    fwd_1_mb1 = next(k for k, u in enumerate(units) if u.kind == "forward" and u.stage == 1 and u.microbatch == 1)
    assert first_b < fwd_1_mb1
    gpipe = executable(pipelined("gpt", 4, *MANUAL_2), "gpipe")
    units = [i.unit for i in gpipe.instructions if isinstance(i, Run) and i.unit.kind in ("forward", "backward")]
    last_f = max(k for k, u in enumerate(units) if u.kind == "forward")
    first_b = min(k for k, u in enumerate(units) if u.kind == "backward")
    assert last_f < first_b  # GPipe: all forwards, then all backwards
    assert ScheduleKind("1f1b") is ScheduleKind.ONE_F_ONE_B


def test_trace_and_gantt(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from alpa_mlir.runtime.trace import gantt, write_chrome_trace

    module = parse_module(pipelined("mlp", 2, *AUTO), make_context())
    exe = PipelineExecutable(module, jax.devices()[:8], schedule="gpipe", trace=True)
    exe.run(example_inputs("mlp", "tiny", seed=0))
    events = exe.last.events
    assert len(events) == len(exe.instructions)
    assert all(0 <= e.start <= e.end for e in events)
    path = tmp_path / "trace.json"
    write_chrome_trace(events, exe.program.mesh_names, path)
    data = json.loads(path.read_text())
    rows = {e["tid"] for e in data["traceEvents"] if e["ph"] == "X"}
    assert rows == set(range(exe.program.num_stages))  # one row per mesh
    names = [e["args"]["name"] for e in data["traceEvents"] if e["ph"] == "M"]
    assert names == [f"mesh {n}" for n in exe.program.mesh_names]
    png = tmp_path / "gantt.png"
    gantt(events, exe.program.mesh_names, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dead_inputs_are_donated_and_consumed() -> None:
    """Fragments consume inputs dead after them (gradient accumulators, activations,
    moved copies), never the step's arguments; the step still equals one device's."""
    text = pipelined("gpt", 4, *MANUAL_2)
    exe = executable(text, "1f1b")
    assert exe.donated, "a pipelined GPT step has dead fragment inputs"
    arg_slots = set(exe.program.arg_slots)
    for ins in exe.instructions:
        if isinstance(ins, Run):
            for i in exe.donated.get(ins.fragment, ()):
                assert ins.inputs[i] not in arg_slots
    inputs = exe.place(example_inputs("gpt", "tiny", seed=0))
    got = [np.asarray(x) for x in exe.step(inputs)]
    assert not any(x.is_deleted() for x in inputs)  # the caller's arrays survive
    kept = PipelineExecutable(parse_module(text, make_context()), jax.devices()[:8], donate=False)
    assert not kept.donated
    report = compare_outputs(got, kept.run(inputs), Tolerance(rtol=0, atol=0))
    assert report.passed, report.summary_line()


def test_persistent_fragment_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = pipelined("mlp", 2, *AUTO)
    first = PipelineExecutable(parse_module(text, make_context()), jax.devices()[:8], cache_dir=tmp_path)
    assert first.cache.stats.compiled > 0 and first.cache.stats.from_disk == 0
    assert len(list(tmp_path.glob("*.xla"))) == first.cache.stats.compiled
    again = PipelineExecutable(parse_module(text, make_context()), jax.devices()[:8], cache_dir=tmp_path)
    assert again.cache.stats.from_disk == again.cache.stats.compiled == first.cache.stats.compiled
    inputs = example_inputs("mlp", "tiny", seed=0)
    report = compare_outputs(again.run(inputs), first.run(inputs), Tolerance(rtol=0, atol=0))
    assert report.passed, report.summary_line()
    for f in tmp_path.glob("*.xla"):  # a damaged file is compiled again, not trusted
        f.write_bytes(b"not an executable")
    third = PipelineExecutable(parse_module(text, make_context()), jax.devices()[:8], cache_dir=tmp_path)
    assert third.cache.stats.from_disk == 0
    assert compare_outputs(third.run(inputs), first.run(inputs), Tolerance()).passed


def test_unwritable_cache_dir_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alpa_mlir.runtime.errors import CompileError

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(CompileError, match="cannot write the compilation cache"):
        PipelineExecutable(parse_module(pipelined("mlp", 2, *AUTO), make_context()), jax.devices()[:8],
                           cache_dir=blocker)


def test_the_plan_chooses_the_schedule() -> None:
    """The runtime runs the schedule the plan was costed for unless told otherwise, and
    then warns (the plan's memory figures are for its own schedule)."""
    plan = read_program(parse_module(pipelined("mlp", 2, *MANUAL_2), make_context())).plan
    assert plan is not None and plan.schedule is ScheduleKind.ONE_F_ONE_B
    assert choose_schedule(plan, None) == (ScheduleKind.ONE_F_ONE_B, ())
    assert choose_schedule(replace(plan, schedule=ScheduleKind.GPIPE), None) == (ScheduleKind.GPIPE, ())
    assert choose_schedule(None, None) == (ScheduleKind.ONE_F_ONE_B, ())
    assert choose_schedule(plan, "1f1b") == (ScheduleKind.ONE_F_ONE_B, ())
    kind, warnings = choose_schedule(plan, "gpipe")
    assert kind is ScheduleKind.GPIPE
    assert warnings == ("running schedule gpipe, but the stage plan was costed for 1f1b: "
                        "its memory figures do not hold for gpipe",)


def test_a_plan_whose_submeshes_cannot_be_placed_is_an_error() -> None:
    """No silent fallback to consecutive devices: each way the plan and the devices
    disagree is named."""
    program = read_program(parse_module(pipelined("mlp", 2, *MANUAL_2), make_context()))
    plan = program.plan
    assert plan is not None
    devices = jax.devices()[:8]
    assert [p.devices for p in place_stages(program, devices)] == [tuple(devices[:4]), tuple(devices[4:])]
    cases = [
        (replace(plan, cluster=replace(plan.cluster, hosts=4, devices_per_host=2)),
         r"the submeshes \[1x4, 1x4\] cannot be placed: no free 1x4 block left for stage 0"),
        (replace(plan, cluster=replace(plan.cluster, hosts=2, devices_per_host=8)), r"needs 16 devices, 8 given"),
        (replace(plan, stages=plan.stages[:1]), r"has 1 stages, the program 2 meshes"),
        (replace(plan, stages=(replace(plan.stages[0], submesh=(1, 2)), plan.stages[1])),
         r"stage 0 has submesh 1x2 \(2 devices\) but mesh stage0 has 4"),
    ]
    for bad, message in cases:
        with pytest.raises(ExecutionError, match=message):
            place_stages(replace(program, plan=bad), devices)


def test_a_stage_plan_that_is_not_one_is_an_error() -> None:
    """A malformed `alpa.stage_plan` stops the runtime with the field named."""
    ctx = make_context()
    module = parse_module(pipelined("mlp", 2, *MANUAL_2), ctx)
    with ctx:
        module.operation.attributes["alpa.stage_plan"] = StringAttr.get('{"stages": []}')
    with pytest.raises(ExecutionError, match=r"cannot read the module's stage plan: cluster: expected an object, got None"):
        read_program(module)
