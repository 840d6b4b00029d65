"""pipeshard.remat and alpa-stage-construction{remat=true}: after the rewrite no
backward op reads a forward value of its own layer, the program computes the same step
(sequential and pipelined runs against the original), and the DP costs the plan with
the recomputation: less kept per microbatch, more latency."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import pytest
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.graph import FunctionGraph
from alpa_mlir.models.export import example_inputs, export_train_step
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.passes.pipeshard.remat import rematerialize
from alpa_mlir.runtime.mpmd_reference import SequentialExecutor
from alpa_mlir.runtime.pipeline import PipelineExecutable
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference

MANUAL_2 = ("devices=2x4 layers=2 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 "
            "stage-logical-shapes=2x2,1x4")


@functools.cache
def exported(model: str) -> str:
    return export_train_step(model, "tiny", debug_info=False)


def _attr(node, name: str) -> str | None:  # type: ignore[no-untyped-def]
    attrs = node.op.attributes
    return str(attrs[name]) if name in attrs else None


def _same_layer_forward_reads(fn: ir.Operation) -> int:
    graph = FunctionGraph(fn)
    forward = {r.value: _attr(n, "alpa.layer") for n in graph.ops
               if _attr(n, "alpa.phase") == '"forward"' for r in n.results}
    count = 0
    for node in graph.ops:
        if _attr(node, "alpa.phase") == '"forward"':
            continue
        layer = _attr(node, "alpa.layer")
        for v in [*node.operands, *graph.captured(node)]:
            if v.value in forward and forward[v.value] == layer:
                count += 1
    return count


@pytest.mark.parametrize("model", ["mlp", "gpt", "moe"])
def test_no_backward_op_reads_its_layers_forward_values(model: str) -> None:
    ctx = make_context()
    module = parse_module(exported(model), ctx)
    PassManager.parse("builtin.module(alpa-layer-construction{layers=2},"
                      "alpa-gradient-accumulation{num-microbatches=2})", ctx).run(module)
    micro = next(op for op in module.body.operations
                 if str(op.attributes["sym_name"]).strip('"') == "microbatch").operation
    before = _same_layer_forward_reads(micro)
    assert before > 0
    cloned = rematerialize(micro)
    assert cloned > 0
    assert _same_layer_forward_reads(micro) == 0
    assert module.operation.verify()
    # the function still computes the same step
    inputs = example_inputs(model, "tiny", seed=0)
    want = compile_reference(parse_module(exported(model), make_context()), jax.devices()[0]).run(inputs)
    got = compile_reference(module, jax.devices()[0]).run(inputs)
    assert compare_outputs(got, want, Tolerance()).passed


@pytest.mark.parametrize("model", ["gpt", "bert", "moe"])
def test_remat_programs_equal_the_original_step(model: str, tmp_path: Path) -> None:
    ctx = make_context()
    module = parse_module(exported(model), ctx)
    report = tmp_path / "plan.json"
    PassManager.parse(f"builtin.module(alpa-pipeshard{{{MANUAL_2} num-microbatches=2 remat=true "
                      f"report={report}}})", ctx).run(module)
    assert json.loads(report.read_text())["remat"]["recomputed_ops"] > 0
    text = print_module(module)
    inputs = example_inputs(model, "tiny", seed=0)
    want = compile_reference(parse_module(exported(model), make_context()), jax.devices()[0]).run(inputs)
    sequential = SequentialExecutor(parse_module(text, make_context()), jax.devices()[0]).run(inputs)
    assert compare_outputs(sequential, want, Tolerance()).passed
    pipelined = PipelineExecutable(parse_module(text, make_context()), jax.devices()[:8]).run(inputs)
    result = compare_outputs(pipelined, want, Tolerance())
    assert result.passed, result.summary_line()


def test_remat_costs_less_memory_and_more_time(tmp_path: Path) -> None:
    """GPT tiny in one stage of two layers: the per-microbatch stash shrinks to the
    layer inputs, the latency grows by the recomputed forward."""
    plans = {}
    for remat in ("false", "true"):
        ctx = make_context()
        module = parse_module(exported("gpt"), ctx)
        report = tmp_path / f"{remat}.json"
        PassManager.parse(
            f"builtin.module(alpa-pipeshard{{devices=1x4 layers=2 num-microbatches=2 remat={remat} "
            f"stages=manual layer-ranges=0-1 stage-submeshes=1x4 stage-logical-shapes=4x1 "
            f"report={report}}})", ctx).run(module)
        plans[remat] = json.loads(report.read_text())["stages"][0]
    keep, remat = plans["false"], plans["true"]
    assert remat["activation_bytes"] < keep["activation_bytes"] / 2
    assert remat["latency_s"] > keep["latency_s"]
    assert remat["compute_s"] > keep["compute_s"]
    assert remat["param_bytes"] == keep["param_bytes"]
