"""alpa-pipeshard + the pipeline runtime on real-world corpus steps (test/corpus): steps
written with flax, nnx, equinox and optax, exported with and without donation, pipelined
on a 2x4 cluster with 2 microbatches and run on 8 CPU devices under 1F1B and GPipe, equal
the library's own `jax.jit` step on one device within the case's tolerance, after one
step and after 3 steps whose state results are fed back as the next step's state.
Nothing names the state or batch arguments: they are inferred
(`passes/sharding/step_args.py`); the steps' state updates, read from that inference, say
which result feeds which argument, for both runs alike.

Not in the grid: flax_cnn_bn (batch norm) and flax_moe (routing capacity over the whole
batch's tokens, a load-balancing loss from batch means): no split into microbatches
computes their full-batch step. Both are refused by default; with
allow-per-microbatch-statistics=true their pipelines equal the same step split into
microbatches on one device.

The full grid (every case x donation x schedule) is `exhaustive` (about 35 s per run on
2 cores); CI runs a representative set: a scanned stack without donation, dropout on two
stages, equinox, and the plain flax step.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.dialect_utils.graph import FunctionGraph, main_function
from alpa_mlir.passes import PassManager
from alpa_mlir.passes.pass_base import PassFailure
from alpa_mlir.passes.sharding.step_args import infer_step_args
from alpa_mlir.runtime.pipeline import PipelineExecutable
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/, for `corpus`
import corpus  # (after the path it lives on)

STEPS = 3
GRID = [name for name in corpus.CASES if name not in ("flax_cnn_bn", "flax_moe")]
EXTRA = {"flax_dropout": "layers=3 stages=uniform num-stages=2",
         "flax_multisteps": "layers=2 stages=uniform num-stages=2",
         "flax_cnn_bn": "layers=2 eps=1 stages=uniform num-stages=2"}
"""Options a case needs to be split at all: the two MLPs and the small conv net get one
stage by default."""


@functools.cache
def built(name: str, donate: bool) -> corpus.Built:
    b = corpus.CASES[name].build()
    return b if donate else corpus.Built(b.step, b.args, donate_argnums=())


@functools.cache
def reference_steps(name: str) -> tuple[tuple[np.ndarray, ...], ...]:
    """The outputs of `STEPS` jitted steps, each fed the previous step's state."""
    b = built(name, False)
    treedef = jax.tree_util.tree_structure(b.args)
    step = jax.jit(b.step)
    feed = _feedback(corpus.export_text(b))
    inputs = corpus.flat_inputs(b)
    found = []
    for _ in range(STEPS):
        out = [np.asarray(x) for x in jax.tree_util.tree_leaves(step(*jax.tree_util.tree_unflatten(treedef, inputs)))]
        found.append(tuple(out))
        inputs = _next(inputs, out, feed)
    return tuple(found)


def _feedback(text: str) -> dict[int, int]:
    ctx = make_context()
    module = parse_module(text, ctx)
    return infer_step_args(FunctionGraph(main_function(module))).updates


def _next(inputs: list[np.ndarray], outputs: list[np.ndarray], feed: dict[int, int]) -> list[np.ndarray]:
    return [outputs[feed[k]] if k in feed else x for k, x in enumerate(inputs)]


def pipelined(name: str, donate: bool, schedule: str, extra: str = "") -> PipelineExecutable:
    ctx = make_context()
    module = parse_module(corpus.export_text(built(name, donate)), ctx)
    options = f"devices=2x4 num-microbatches=2 schedule={schedule} {extra or EXTRA.get(name, '')}"
    PassManager.parse(f"builtin.module(alpa-pipeshard{{{options.strip()}}})", ctx).run(module)
    exe = PipelineExecutable(module, jax.devices()[:8])
    assert exe.schedule.value == schedule and exe.warnings == ()
    return exe


def check_steps(name: str, donate: bool, schedule: str) -> None:
    exe = pipelined(name, donate, schedule)
    assert exe.program.num_stages >= 2
    feed = _feedback(corpus.export_text(built(name, False)))
    assert feed, "no state argument is fed back"
    case = corpus.CASES[name]
    inputs = corpus.flat_inputs(built(name, donate))
    for k, want in enumerate(reference_steps(name)):
        got = exe.run(inputs)
        # bf16: each step's Adam update of a gradient that is ~0 up to bf16 noise can flip
        # sign (test/corpus: atol = 2 lr per step), so the bound grows with the steps.
        atol = case.atol * (k + 1) if name == "flax_bf16" else case.atol
        report = compare_outputs(got, list(want), Tolerance(rtol=case.rtol, atol=atol))
        assert report.passed, "\n".join([f"step {k + 1}: {report.summary_line()}",
                                         *(c.line() for c in report.mismatches)])
        inputs = _next(inputs, got, feed)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "donate", "schedule"), [
    ("flax_gpt_scan", False, "1f1b"),  # nn.scan over the blocks, unrolled into layers
    ("flax_dropout", False, "gpipe"),  # masks from a key argument, sliced per microbatch
    ("equinox_transformer", True, "gpipe"),
    ("flax_gpt", False, "1f1b"),
])
def test_corpus_steps_pipelined_equal_jit(name: str, donate: bool, schedule: str) -> None:
    check_steps(name, donate, schedule)


@pytest.mark.exhaustive
@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
@pytest.mark.parametrize("donate", [True, False], ids=["donated", "no-donation"])
@pytest.mark.parametrize("name", GRID)
def test_corpus_grid_pipelined_equal_jit(name: str, donate: bool, schedule: str) -> None:
    check_steps(name, donate, schedule)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flax_cnn_bn", "flax_moe"])
def test_per_microbatch_statistics_pipeline(name: str) -> None:
    """Batch norm, and MoE routing over the whole batch (capacity positions are a cumsum
    over all the batch's tokens, the load-balancing loss a product of two batch means):
    refused by default, pipelined with allow-per-microbatch-statistics=true."""
    allow = "allow-per-microbatch-statistics=true"
    with pytest.raises(PassFailure, match=allow):
        pipelined(name, True, "1f1b")
    exe = pipelined(name, True, "1f1b", f"{allow} {EXTRA.get(name, '')}")
    assert exe.program.num_stages >= 2
    inputs = corpus.flat_inputs(built(name, True))
    # Per-microbatch statistics differ from jax.jit's full-batch ones by design: the
    # pipeline is judged against the same step split into 2 microbatches on one device.
    ctx = make_context()
    module = parse_module(corpus.export_text(built(name, True)), ctx)
    PassManager.parse(f"builtin.module(alpa-gradient-accumulation{{num-microbatches=2 {allow}}})",
                      ctx).run(module)
    want = compile_reference(module, jax.devices()[0]).run(inputs)
    case = corpus.CASES[name]
    report = compare_outputs(exe.run(inputs), want, Tolerance(rtol=case.rtol, atol=case.atol))
    assert report.passed, "\n".join([report.summary_line(), *(c.line() for c in report.mismatches)])


@pytest.mark.slow
def test_scanned_stack_plans_like_its_unrolled_twin(tmp_path: Path) -> None:
    """flax_gpt_scan (the blocks as one nn.scan: stacked parameters, a while loop) and
    flax_gpt_unrolled (the same model as a Python loop) get the same stage plan: the
    scan is unrolled and cleaned up into the twin's layers (passes/pipeshard/loops.py)."""
    plans = {}
    for name in ("flax_gpt_scan", "flax_gpt_unrolled"):
        ctx = make_context()
        module = parse_module(corpus.export_text(built(name, True)), ctx)
        report = tmp_path / f"{name}.json"
        PassManager.parse(
            f"builtin.module(alpa-pipeshard{{devices=2x4 num-microbatches=2 report={report}}})", ctx
        ).run(module)
        plans[name] = json.loads(report.read_text())
    scan, twin = plans["flax_gpt_scan"], plans["flax_gpt_unrolled"]
    assert scan["num_layers"] == twin["num_layers"] >= 2
    shape = [(s["layers"], s["submesh"], s["logical_shape"]) for s in twin["stages"]]
    assert len(shape) >= 2
    assert [(s["layers"], s["submesh"], s["logical_shape"]) for s in scan["stages"]] == shape
    assert scan["predicted_step_s"] == pytest.approx(twin["predicted_step_s"], rel=0.05)
