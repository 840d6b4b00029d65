"""alpa-gradient-accumulation on the real-world corpus (test/corpus: flax, nnx, equinox
and optax steps exported as their users export them, with or without donation): the
step split into 2 microbatches equals the library's own `jax.jit` step on one device,
within the case's tolerance. Which arguments are the state and which the batch is
inferred (`passes/sharding/step_args.py`): no case names them.

Cases that gradient accumulation refuses are listed in `REFUSED` with their diagnostic,
both by design: batch norm (each microbatch would normalize with its own statistics) and
MoE routing over the whole batch (capacity positions are a cumulative sum over the
tokens of all examples, laid out behind the top-k choice dim; its load-balancing loss is
a product of two batch means): no split into microbatches computes the full-batch step.
The test checks that each still fails with that diagnostic; with
allow-per-microbatch-statistics=true both are pipelined (`test_pipeshard_corpus`).

A scan over layers (flax_gpt_scan) is unrolled; dropout masks drawn from a key argument
(flax_dropout) are drawn once for the whole batch and sliced, so they equal jax.jit's.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.passes import PassManager
from alpa_mlir.passes.pass_base import PassFailure
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/, for `corpus`
import corpus  # (after the path it lives on)

PIPELINE = "builtin.module(alpa-gradient-accumulation{num-microbatches=2})"
REFUSED = {
    "flax_moe": "'stablehlo.reduce_window' is a cumulative reduction along the batch .*MoE "
                "capacity positions.* pass allow-per-microbatch-statistics=true",
    "flax_cnn_bn": r"a cross-example statistic such as batch norm\): .* pass allow-per-microbatch-statistics=true",
}


@functools.cache
def built(name: str) -> corpus.Built:
    return corpus.CASES[name].build()


@functools.cache
def reference(name: str) -> tuple[np.ndarray, ...]:
    return tuple(corpus.reference_outputs(built(name)))


def exported(name: str, donate: bool) -> str:
    b = built(name)
    return corpus.export_text(b if donate else corpus.Built(b.step, b.args, donate_argnums=()))


DONATING = ("flax_gpt_scan", "flax_gpt_unrolled", "flax_gpt_remat", "flax_cnn_bn", "flax_bf16",
            "flax_multisteps", "equinox_transformer")
"""The cases whose users pass `donate_argnums`; each runs once more exported without."""


def cases() -> list[Any]:
    found = [pytest.param(name, True, id=f"{name}-as-exported") for name in corpus.CASES]
    found += [pytest.param(name, False, id=f"{name}-no-donation") for name in DONATING]
    return found


@pytest.mark.parametrize(("name", "donate"), cases())
def test_corpus_step_accumulated_over_two_microbatches(name: str, donate: bool) -> None:
    assert bool(built(name).donate_argnums) == (name in DONATING)
    ctx = make_context()
    module = parse_module(exported(name, donate), ctx)
    if name in REFUSED:
        with pytest.raises(PassFailure, match=REFUSED[name]):
            PassManager.parse(PIPELINE, ctx).run(module)
        return
    PassManager.parse(PIPELINE, ctx).run(module)
    assert module.operation.verify()
    outputs = compile_reference(module, jax.devices()[0]).run(corpus.flat_inputs(built(name)))
    case = corpus.CASES[name]
    report = compare_outputs(outputs, list(reference(name)), Tolerance(rtol=case.rtol, atol=case.atol))
    assert report.passed, "\n".join([report.summary_line(), *(c.line() for c in report.mismatches)])
