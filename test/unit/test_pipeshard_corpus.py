"""alpa-pipeshard + the pipeline runtime on real-world corpus steps (test/corpus): steps
written with flax and equinox, exported without and with donation, pipelined on a 2x4
cluster with 2 microbatches and run on 8 CPU devices under 1F1B and GPipe, equal the
library's own `jax.jit` step on one device within the case's tolerance. Nothing names
the state or batch arguments: they are inferred (`passes/sharding/step_args.py`).

Time on 2 cores: 30-40 s per case (build, plan, compile every fragment, run)."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import pytest

from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.passes import PassManager
from alpa_mlir.runtime.pipeline import PipelineExecutable
from alpa_mlir.runtime.reference import Tolerance, compare_outputs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/, for `corpus`
import corpus  # (after the path it lives on)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "schedule"), [
    ("flax_gpt", "1f1b"),  # exported without donation
    ("equinox_transformer", "gpipe"),  # exported with donate_argnums=(0, 1)
])
def test_corpus_step_pipelined_equals_jit(name: str, schedule: str) -> None:
    built = corpus.CASES[name].build()
    ctx = make_context()
    module = parse_module(corpus.export_text(built), ctx)
    PassManager.parse(
        f"builtin.module(alpa-pipeshard{{devices=2x4 num-microbatches=2 schedule={schedule}}})", ctx
    ).run(module)
    exe = PipelineExecutable(module, jax.devices()[:8])
    assert exe.schedule.value == schedule and exe.warnings == ()
    assert exe.program.num_stages >= 2
    case = corpus.CASES[name]
    report = compare_outputs(exe.run(corpus.flat_inputs(built)), corpus.reference_outputs(built),
                             Tolerance(rtol=case.rtol, atol=case.atol))
    assert report.passed, "\n".join([report.summary_line(), *(c.line() for c in report.mismatches)])
