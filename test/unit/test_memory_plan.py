"""Per-layer memory plans (pipeshard.memory_plan, alpa-stage-construction{memory-plan=auto}):
the frontier against brute force, and the pass on GPT tiny: never slower than the fixed
plans, recomputing more on the stages that stash more, recorded per layer, and the
pipelined step equal to the original."""

from __future__ import annotations

import functools
import itertools
import json
import re
from pathlib import Path
from typing import Any

import jax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alpa_mlir.dialect_utils.attributes import Residency, memory_plan_of
from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.stage_plan import read_stage_plan
from alpa_mlir.models.export import example_inputs, export_train_step
from alpa_mlir.passes.pass_base import PassFailure
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.passes.pass_pipeline import PipelineError
from alpa_mlir.passes.pipeshard.cost_source import StageCost
from alpa_mlir.passes.pipeshard.memory_plan import LayerMemory, choose, frontier, offload_seconds
from alpa_mlir.passes.sharding.cluster import Link
from alpa_mlir.runtime.pipeline import PipelineExecutable
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference

layer = st.builds(LayerMemory, st.integers(0, 6).map(float), st.integers(0, 6).map(float),
                  st.integers(0, 4).map(float), st.one_of(st.none(), st.integers(0, 4).map(float)),
                  st.one_of(st.none(), st.integers(0, 6).map(float)), st.integers(0, 4).map(float))


@settings(max_examples=200, deadline=None)
@given(layers=st.lists(layer, min_size=0, max_size=5), stash=st.integers(1, 4), free=st.integers(-2, 60),
       temp=st.integers(0, 10))
def test_choose_is_the_fastest_combination_that_fits(layers: list[LayerMemory], stash: int, free: int,
                                                     temp: int) -> None:
    """Against every combination, under the stage's memory rule: `free` bytes beyond the
    resident ones for (stash - 1) stashed microbatches and the larger of the
    temporaries and the one being worked on."""
    ways = [[(m.keep_bytes, 0.0, Residency.KEEP), (m.recompute_bytes, m.recompute_s, Residency.RECOMPUTE)]
            + ([] if m.offload_s is None else [(0.0, m.offload_s, Residency.OFFLOAD)])
            + ([] if m.selective_bytes is None else [(m.selective_bytes, m.selective_s, Residency.SELECTIVE)])
            for m in layers]

    def fits(stashed: float) -> bool:
        return (stash - 1) * stashed + max(temp, stashed) <= free

    fitting = [sum(w[1] for w in combo) for combo in itertools.product(*ways) if fits(sum(w[0] for w in combo))]
    cost = StageCost(1.0, temp_bytes=float(temp), layers=tuple(layers))
    got = cost.plan(stash, float(free))
    if not fitting:
        assert got is None
        return
    assert got is not None and got.extra_s == min(fitting)
    assert len(got.residency) == len(layers)
    # the plan it names costs what it says and fits
    by_way = [{w[2]: w for w in options} for options in ways]
    picked = [by_way[k][r] for k, r in enumerate(got.residency)]
    assert sum(w[1] for w in picked) == got.extra_s and sum(w[0] for w in picked) == got.stashed_bytes
    assert fits(got.stashed_bytes)
    front = frontier(tuple(layers))
    assert list(front.stashed) == sorted(front.stashed)
    assert all(a > b for a, b in itertools.pairwise(front.extra))


def test_without_a_limit_every_layer_is_kept() -> None:
    layers = [LayerMemory(5.0, 1.0, 1.0, 0.0)] * 3
    got = choose(layers, float("inf"))
    assert got is not None and got.residency == (Residency.KEEP,) * 3 and got.extra_s == 0.0
    cost = StageCost(2.0, param_bytes=3.0, activation_bytes=15.0, layers=tuple(layers))
    assert cost.latency_at(4, None) == 2.0
    assert cost.plan(4, 3.0 + 4 * 15.0).residency == (Residency.KEEP,) * 3  # all kept still fits
    assert cost.plan(4, 3.0).residency == (Residency.OFFLOAD,) * 3  # everything offloaded at no cost
    assert cost.latency_at(4, 3.0) == 2.0
    assert cost.least_activation_bytes == 0.0
    assert StageCost(2.0, param_bytes=3.0, activation_bytes=1.0).latency_at(1, 3.5) == float("inf")
    # the microbatch being worked on lives in the temporaries: counted once
    assert StageCost(2.0, activation_bytes=4.0, temp_bytes=6.0).memory_bytes(3) == 2 * 4.0 + 6.0
    assert StageCost(2.0, activation_bytes=4.0, temp_bytes=1.0).memory_bytes(3) == 3 * 4.0


def test_offload_costs_the_copies_beyond_the_compute() -> None:
    link = Link(1e9, 1e-5)
    assert offload_seconds(1e9, 0.5, link) == pytest.approx(2 * (1e-5 + 1.0) - 0.5)
    assert offload_seconds(1e6, 1.0, link) == 0.0  # hidden behind the compute
    assert offload_seconds(1e6, 1.0, None) is None


# ---------------------------------------------------------------------------------------
# The pass on GPT tiny: four layers, four microbatches, 1F1B on eight devices.

PLAN = "devices=1x8 layers=4 num-microbatches=4"
LIMIT = 300_000  # bytes per device: every layer kept does not fit everywhere


@functools.cache
def exported() -> str:
    return export_train_step("gpt", "tiny", debug_info=False)


@functools.cache
def planned(options: str) -> tuple[str, dict[str, Any]]:
    """GPT tiny planned with `options`: the MPMD text and the plan as JSON."""
    ctx = make_context()
    module = parse_module(exported(), ctx)
    PassManager.parse(f"builtin.module(alpa-pipeshard{{{PLAN} {options}}})", ctx).run(module)
    record = read_stage_plan(module)
    assert record is not None
    return print_module(module), record.to_json()


FIXED = {"keep": f"memory-limit={LIMIT}", "recompute": f"memory-limit={LIMIT} remat=true"}
AUTO = f"memory-limit={LIMIT} memory-plan=auto"


def test_auto_is_never_slower_than_a_fixed_plan_and_recomputes_early_stages() -> None:
    auto = planned(AUTO)[1]
    for options in FIXED.values():
        assert auto["predicted_step_s"] <= planned(options)[1]["predicted_step_s"]
    assert auto["predicted_step_s"] < min(planned(o)[1]["predicted_step_s"] for o in FIXED.values())
    stages = auto["stages"]
    ways = [s["memory_plan"] for s in stages]
    assert {w for plan in ways for w in plan} >= {"keep", "recompute"}, ways  # a mixed plan
    # vPipe's pattern under 1F1B: a stage that stashes more saves more per microbatch
    saved = [sum(w != "keep" for w in plan) / len(plan) for plan in ways]
    stash = [s["stashed_microbatches"] for s in stages]
    assert stash == sorted(stash, reverse=True) and saved == sorted(saved, reverse=True), (stash, ways)
    for s in stages:
        assert s["peak_bytes"] <= LIMIT
        assert s["peak_bytes"] == pytest.approx(
            s["param_bytes"] + s["grad_bytes"] + s["optimizer_bytes"]
            + (s["stashed_microbatches"] - 1) * s["activation_bytes"] + max(s["temp_bytes"], s["activation_bytes"]))
    assert auto["remat"]["mode"] == "auto"


def test_the_plan_is_recorded_per_layer_and_only_recomputed_layers_are_cloned() -> None:
    text, auto = planned(AUTO)
    module = parse_module(text, make_context())
    residency = memory_plan_of(module)
    assert residency == [Residency(w) for s in auto["stages"] for w in s["memory_plan"]]
    recomputed = {k for k, r in enumerate(residency) if r is Residency.RECOMPUTE}
    # every recomputed layer's backward fragment holds copies of its forward dots
    for k in range(len(residency)):
        copies = len(re.findall(rf"stablehlo.dot_general [^\n]*alpa.layer = {k} : i64, alpa.phase = \"backward\"",
                                text))
        plain = len(re.findall(rf"stablehlo.dot_general [^\n]*alpa.layer = {k} : i64, alpa.phase = \"backward\"",
                               planned(FIXED["keep"])[0]))
        assert (copies > plain) == (k in recomputed), (k, copies, plain)


def test_selective_recomputation_stashes_less_than_keeping_and_recomputes_no_dot() -> None:
    """memory-plan=manual with every layer selective: each stage stashes less per
    microbatch than keeping and more than recomputing everything, costs a little more
    time than keeping and less than recomputing, and its backward fragments hold copies
    of the cheap forward ops only (no dot runs twice)."""
    every = {way: planned(f"memory-plan=manual layer-memory={','.join([way] * 4)}") for way in
             ("keep", "selective", "recompute")}
    stages = {way: plan[1]["stages"] for way, plan in every.items()}
    for keep, selective, recompute in zip(stages["keep"], stages["selective"], stages["recompute"], strict=True):
        assert recompute["activation_bytes"] < selective["activation_bytes"] < keep["activation_bytes"]
        assert keep["latency_s"] < selective["latency_s"] < recompute["latency_s"]
    assert every["selective"][1]["remat"]["recomputed_ops"] > 0

    def backward_dots(text: str) -> int:
        return len(re.findall(r"stablehlo.dot_general [^\n]*alpa.phase = \"backward\"", text))

    assert backward_dots(every["selective"][0]) == backward_dots(every["keep"][0])
    assert backward_dots(every["recompute"][0]) > backward_dots(every["keep"][0])


def test_remat_and_auto_together_are_refused() -> None:
    with pytest.raises(PipelineError, match="remat=true is the fixed plan"):
        planned("memory-plan=auto remat=true")


def test_mixed_plan_pipeline_equals_the_original_step() -> None:
    inputs = example_inputs("gpt", "tiny", seed=0)
    want = compile_reference(parse_module(exported(), make_context()), jax.devices()[0]).run(inputs)
    got = PipelineExecutable(parse_module(planned(AUTO)[0], make_context()), jax.devices()[:8]).run(inputs)
    result = compare_outputs(got, want, Tolerance())
    assert result.passed, result.summary_line()


MIXED = "offload,recompute,selective,keep"


@pytest.mark.parametrize(("model", "microbatches"), [("gpt", 2), ("wide_resnet", 1)])
def test_mixed_keep_recompute_offload_plans_equal_the_original_step(model: str, microbatches: int) -> None:
    """Two stages of two layers each, the layers offloaded, recomputed, selectively
    recomputed and kept as given
    (memory-plan=manual), pipelined on 8 CPU devices, against the exported step on one
    device (Wide-ResNet with one microbatch: its batch statistics stay the full batch's)."""
    text = export_train_step(model, "tiny", debug_info=False)
    ctx = make_context()
    module = parse_module(text, ctx)
    PassManager.parse(
        f"builtin.module(alpa-pipeshard{{devices=2x4 layers=4 num-microbatches={microbatches} stages=manual "
        "layer-ranges=0-1,2-3 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,4x1 "
        f"memory-plan=manual layer-memory={MIXED}}})", ctx).run(module)
    assert memory_plan_of(module) == [Residency(w) for w in MIXED.split(",")]
    record = read_stage_plan(module)
    assert record is not None and record.remat["offloaded_values"] > 0 and record.remat["recomputed_ops"] > 0
    assert [s.memory_plan for s in record.stages] == [("offload", "recompute"), ("selective", "keep")]
    inputs = example_inputs(model, "tiny", seed=0)
    want = compile_reference(parse_module(text, make_context()), jax.devices()[0]).run(inputs)
    got = PipelineExecutable(parse_module(print_module(module), make_context()), jax.devices()[:8]).run(inputs)
    result = compare_outputs(got, want, Tolerance())
    assert result.passed, result.summary_line()


def test_auto_offloads_over_a_fast_host_link(tmp_path: Path) -> None:
    """With a host link that hides every copy, offloading costs nothing: under memory
    pressure the DP offloads instead of recomputing."""
    cluster = tmp_path / "fast-host.json"
    cluster.write_text(json.dumps({
        "name": "fast-host", "hosts": 1, "devices_per_host": 8,
        "device": {"peak_flops": 1.25e14, "memory_bytes": LIMIT},
        "intra_host": {"bandwidth": 1.3e11, "latency": 5e-6}, "inter_host": {"bandwidth": 3.1e9, "latency": 2e-5},
        "host_link": {"bandwidth": 1e18, "latency": 0.0}}))
    ctx = make_context()
    module = parse_module(exported(), ctx)
    PassManager.parse(f"builtin.module(alpa-pipeshard{{cluster={cluster} layers=4 num-microbatches=4 "
                      "memory-plan=auto})", ctx).run(module)
    residency = memory_plan_of(module)
    assert residency is not None and Residency.OFFLOAD in residency and Residency.RECOMPUTE not in residency
    record = read_stage_plan(module)
    assert record is not None and record.remat["offloaded_values"] > 0
    assert planned(AUTO)[1]["predicted_step_s"] >= record.predicted_step_s


@pytest.mark.parametrize(("options", "message"), [
    ("memory-plan=manual", "memory-plan=manual and layer-memory=... go together"),
    ("layer-memory=keep,keep", "memory-plan=manual and layer-memory=... go together"),
    ("memory-plan=manual layer-memory=keep,sideways", "expected one of keep, recompute, selective, offload"),
])
def test_bad_memory_plan_options_are_refused(options: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        planned(options)


def test_layer_memory_needs_one_residency_per_layer() -> None:
    with pytest.raises(PassFailure, match="layer-memory gives 2 residencies for 4 layers"):
        planned("memory-plan=manual layer-memory=keep,keep")


def test_measured_device_peaks_drop_where_the_plan_moves_activations() -> None:
    """The runtime's own account (`PipelineExecutable.device_peaks`: live arrays after each
    instruction plus XLA's temporaries of the fragment that ran): offloading or
    recomputing stage 0's layer (4 microbatches, 2 of them stashed there) lowers that
    stage's peak below keeping it."""
    text = exported()
    inputs = example_inputs("gpt", "tiny", seed=0)
    peaks = {}
    for ways in ("keep,keep", "offload,keep", "recompute,keep", "selective,keep"):
        ctx = make_context()
        module = parse_module(text, ctx)
        PassManager.parse(
            "builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=4 stages=manual "
            "layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,4x1 "
            f"memory-plan=manual layer-memory={ways}}})", ctx).run(module)
        executable = PipelineExecutable(parse_module(print_module(module), make_context()), jax.devices()[:8])
        found = executable.device_peaks(inputs)
        peaks[ways] = [max(found[d.id] for d in p.devices) for p in executable.placements]
    assert peaks["offload,keep"][0] < peaks["keep,keep"][0]
    assert peaks["recompute,keep"][0] < peaks["keep,keep"][0]
    assert peaks["selective,keep"][0] < peaks["keep,keep"][0]
    assert all(p > 0 for ways in peaks.values() for p in ways)
