"""ZeRO over a stage's devices (pipeshard.zero, alpa-stage-construction{zero-stage=N}):
the rule itself, the stage memory by component under each level, the layouts the plan
emits for the values each level splits, and the pipelined step against the original."""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import jax
import pytest

from alpa_mlir.dialect_utils import mpmd
from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.stage_plan import read_stage_plan
from alpa_mlir.models.export import example_inputs, export_train_step
from alpa_mlir.passes.pass_base import PassFailure
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.passes.pipeshard import zero
from alpa_mlir.passes.pipeshard.stage_sharding import zero_values
from alpa_mlir.passes.sharding.mesh import LogicalMesh
from alpa_mlir.passes.sharding.spec import enumerate_specs
from alpa_mlir.runtime.pipeline import PipelineExecutable
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference
from alpa_mlir.runtime.signature import read_signature

# Two stages: 2x2 (data and model parallel) and 4x1 (data parallel only).
PLAN = ("devices=1x8 layers=2 num-microbatches=2 stages=manual layer-ranges=0-0,1-1 "
        "stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,4x1")
COMPONENTS = ("optimizer_bytes", "grad_bytes", "param_bytes")  # what levels 1, 2, 3 split


@functools.cache
def exported(model: str) -> str:
    return export_train_step(model, "tiny", debug_info=False)


@functools.cache
def planned(level: int | str, extra: str = "") -> tuple[str, dict[str, Any]]:
    """GPT tiny planned with ZeRO `level`: the MPMD text and the plan as JSON."""
    ctx = make_context()
    module = parse_module(exported("gpt"), ctx)
    PassManager.parse(f"builtin.module(alpa-pipeshard{{{PLAN} zero-stage={level} {extra}}})", ctx).run(module)
    record = read_stage_plan(module)
    assert record is not None
    return print_module(module), record.to_json()


def _mesh(shape: tuple[int, ...]) -> LogicalMesh:
    return LogicalMesh(shape, ("x", "y")[:len(shape)], (1e-6,) * len(shape), (1e-9,) * len(shape))


def test_narrow_keeps_the_layouts_that_split_most() -> None:
    mesh = _mesh((2, 2))
    specs = list(enumerate_specs((32, 6), mesh))
    kept = zero.narrow(specs, mesh)
    assert kept and all(len([a for dim in s for a in dim]) == 2 for s in kept)
    # a [3] vector splits over neither axis: its only layout stays
    assert zero.narrow(list(enumerate_specs((3,), mesh)), mesh) == [((),)]
    # bytes per device once split: over both axes where the dims divide, never more
    assert zero.split_bytes(32 * 6 * 4, (32, 6), ((), ()), mesh) == 32 * 6
    assert zero.split_bytes(12, (3,), ((),), mesh) == 12
    assert [zero.splits(level, zero.StateKind.GRADIENT) for level in zero.LEVELS] == [False, False, True, True]
    with pytest.raises(ValueError, match="zero-stage must be 0, 1, 2 or 3, got 5"):
        zero.check_level(5)
    assert zero.ZeroStage.parse_option("auto").levels == zero.AUTO_LEVELS
    assert str(zero.ZeroStage.parse_option("2")) == "2" and not zero.ZeroStage.parse_option("2").auto
    with pytest.raises(ValueError, match="zero-stage must be 0, 1, 2, 3 or auto, got 'some'"):
        zero.ZeroStage.parse_option("some")


def test_each_level_shrinks_its_component_and_no_other() -> None:
    """Level 1 shrinks the optimizer state of every stage, level 2 the gradient sums,
    level 3 the parameters; a component no level up to it splits stays as it was."""
    stages = [planned(level)[1]["stages"] for level in zero.LEVELS]
    for k in range(2):
        before = [{c: stages[level][k][c] for c in COMPONENTS} for level in zero.LEVELS]
        for level, component in enumerate(COMPONENTS, start=1):
            assert before[level][component] < before[level - 1][component], (k, level, before)
            for other in COMPONENTS[level:]:  # not split yet: unchanged
                assert before[level][other] == pytest.approx(before[level - 1][other]), (k, level, other)
        peaks = [stages[level][k]["peak_bytes"] for level in zero.LEVELS]
        assert peaks == sorted(peaks, reverse=True) and peaks[3] < peaks[0]
        for level in zero.LEVELS:
            s = stages[level][k]
            resident = s["param_bytes"] + s["grad_bytes"] + s["optimizer_bytes"]
            assert s["peak_bytes"] == pytest.approx(
                resident + (s["stashed_microbatches"] - 1) * s["activation_bytes"]
                + max(s["temp_bytes"], s["activation_bytes"]))
    assert [planned(level)[1]["zero_stage"] for level in zero.LEVELS] == list(zero.LEVELS)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_emitted_layouts_split_what_the_level_splits(level: int) -> None:
    """Every value the level splits is laid out over as many devices of its stage as its
    dims allow; the microbatch function's arguments split from level 2 on."""
    module = parse_module(planned(level)[0], make_context())
    state = frozenset(k for k, a in enumerate(read_signature(parse_module(exported("gpt"), make_context())).args)
                      if a.donated)
    funcs = mpmd.program_functions(module)
    owners = {a: name for name, f in funcs.items() for a in f.regions[0].blocks[0].arguments}
    meshes = {name: _mesh(tuple(a.size for a in m.axes)) for name, m in mpmd.topology(funcs["main"]).items()}
    where = {"main": 0, "microbatch": 0}
    split = 0
    for v in zero_values(module, state, dict.fromkeys(meshes, level)):
        where[owners[v]] += 1
        mesh_name, tensor, sharding = mpmd.mesh_tensor_parts(v.type)
        mesh = meshes[mesh_name]
        shape = tuple(tensor.shape)
        most = round(1 / zero.split_bytes(1.0, shape, tuple(() for _ in shape), mesh))
        sizes = dict(zip(mesh.axis_names, mesh.shape, strict=True))
        pieces = math.prod(sizes[a] for a in re.findall(r'"(\w+)"', sharding or ""))
        assert pieces == most, (str(v.type), most)
        split += most > 1
    assert split > 0
    assert where["main"] > 0  # the optimizer state, at every level
    assert (where["microbatch"] > 0) == (level >= 2)


def test_zero_pipeline_equals_the_original_step() -> None:
    """ZeRO-2 and ZeRO-3 plans of GPT tiny, pipelined on 8 CPU devices, compute the step
    the exported function computes on one device."""
    inputs = example_inputs("gpt", "tiny", seed=0)
    want = compile_reference(parse_module(exported("gpt"), make_context()), jax.devices()[0]).run(inputs)
    for level in (2, 3):
        got = PipelineExecutable(parse_module(planned(level)[0], make_context()), jax.devices()[:8]).run(inputs)
        result = compare_outputs(got, want, Tolerance())
        assert result.passed, (level, result.summary_line())


def test_auto_takes_zero_3_only_where_zero_2_does_not_fit() -> None:
    """zero-stage=auto with a memory limit between stage 0's ZeRO-3 and ZeRO-2 peaks (and
    above stage 1's ZeRO-2 peak): stage 0 takes level 3, stage 1 keeps level 2, each as
    costed alone; the plan is recorded per stage and computes the original step."""
    two, three = (planned(level)[1]["stages"] for level in (2, 3))
    limit = (two[0]["peak_bytes"] + three[0]["peak_bytes"]) / 2
    assert three[0]["peak_bytes"] < limit < two[0]["peak_bytes"] and two[1]["peak_bytes"] <= limit
    assert three[1]["latency_s"] > two[1]["latency_s"]  # ZeRO-3's gathers cost time
    text, auto = planned("auto", f"memory-limit={limit}")
    assert auto["zero_stage"] == "auto"
    assert [s["zero_stage"] for s in auto["stages"]] == [3, 2]
    for got, want in zip(auto["stages"], (three[0], two[1]), strict=True):
        for key in ("latency_s", "peak_bytes", *COMPONENTS):
            assert got[key] == pytest.approx(want[key]), key
    with pytest.raises(PassFailure, match=r"stage 0 .* needs \d+ bytes per device"):  # ZeRO-2 alone: none
        planned(2, f"memory-limit={limit}")
    # below even ZeRO-3's peak, the error names the leanest way's bytes (ZeRO-3's), not the first's
    tight = three[0]["peak_bytes"] - 1
    with pytest.raises(PassFailure, match=rf"stage 0 .* needs {three[0]['peak_bytes']:g} bytes per device"):
        planned("auto", f"memory-limit={tight}")
    inputs = example_inputs("gpt", "tiny", seed=0)
    want = compile_reference(parse_module(exported("gpt"), make_context()), jax.devices()[0]).run(inputs)
    got = PipelineExecutable(parse_module(text, make_context()), jax.devices()[:8]).run(inputs)
    result = compare_outputs(got, want, Tolerance())
    assert result.passed, result.summary_line()
