"""alpa-auto-sharding on the real-world corpus (test/corpus: training steps written with
flax.linen, flax.nnx, equinox and optax the way their users write them, exported with
plain `jax.jit(step, donate_argnums=...).lower(...)`, some donating, some not).

On meshes 2x4 and 8, for every case:
- no op falls back to a replicated plan (no warning; the report lists no fallback op);
- the planned module compiles for 8 CPU devices and its outputs equal the library's own
  `jax.jit` step on one device, within the case's tolerance (f32: rtol/atol 1e-4; bf16
  compute: rtol 2e-2, atol 1e-3, justified in test/corpus/__init__.py);
- the collectives the report predicts are the ones XLA's partitioner emits.
And a scanned transformer (`nn.scan` over its blocks: stacked parameters, the forward
and backward as while loops) is planned like its unrolled twin: the same split of every
parameter (the stacked leading layer dim whole) and XLA's per-device FLOPs reduced
alike.

Time on 2 cores: a case's build, export and reference run take 2-9 s, its plan 0.2-7 s
and compile + run 1-9 s per mesh; the twins 20-30 s per mesh. CI runs every case and
the twins on 2x4 and a representative set on mesh 8 (scan, remat, dropout, equinox), about
4 minutes; `make test-all` runs the rest (marked exhaustive).
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from alpa_mlir.dialect_utils import shardy as S
from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.dialect_utils.graph import main_function
from alpa_mlir.passes import PassManager
from alpa_mlir.runtime.collectives import (
    compare_prediction,
    format_table,
    mismatches,
)
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference
from alpa_mlir.runtime.spmd import CompileSettings, Program, compile_program

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/, for `corpus`
import corpus  # (after the path it lives on)

MESHES = ("2x4", "8")
MESH_8_IN_CI = ("flax_gpt_scan", "flax_gpt_remat", "flax_dropout", "equinox_transformer")
CLUSTER = "p3.16xlarge"


def cases() -> list[Any]:
    return [
        pytest.param(name, mesh, id=f"{name}-{mesh}",
                     marks=() if mesh == "2x4" or name in MESH_8_IN_CI else (pytest.mark.exhaustive,))
        for name in corpus.CASES
        for mesh in MESHES
    ]


@functools.cache
def built(name: str) -> corpus.Built:
    return corpus.CASES[name].build()


@functools.cache
def exported(name: str) -> str:
    return corpus.export_text(built(name))


@functools.cache
def reference(name: str) -> tuple[np.ndarray, ...]:
    return tuple(corpus.reference_outputs(built(name)))


@dataclass(frozen=True)
class Planned:
    report: dict[str, Any]
    warnings: tuple[str, ...]
    program: Program  # compiled for 8 devices, collectives counted
    module_text: str


def plan(text: str, mesh: str) -> tuple[Any, dict[str, Any], tuple[str, ...]]:
    """The planned module, its report and the pass's diagnostics."""
    ctx = make_context()
    module = parse_module(text, ctx)
    with tempfile.TemporaryDirectory(prefix="alpa-corpus-") as tmp:
        path = Path(tmp) / "report.json"
        pipeline = f"builtin.module(alpa-auto-sharding{{mesh={mesh} cluster={CLUSTER} report={path}}})"
        diagnostics = PassManager.parse(pipeline, ctx).run(module)
        report = json.loads(path.read_text())
    assert module.operation.verify()
    return module, report, tuple(d.message for d in diagnostics.diagnostics)


@functools.cache
def planned(name: str, mesh: str) -> Planned:
    module, report, warnings = plan(exported(name), mesh)
    program = compile_program(module, jax.devices()[:8], CompileSettings(count_collectives=True))
    return Planned(report, warnings, program, str(module))


@pytest.mark.parametrize(("name", "mesh"), cases())
def test_corpus_plan_has_no_fallback_and_matches_jit(name: str, mesh: str) -> None:
    plan_ = planned(name, mesh)
    assert plan_.warnings == ()
    assert plan_.report["replicated_fallback_ops"] == []
    case = corpus.CASES[name]
    outputs = plan_.program.run(corpus.flat_inputs(built(name)))
    report = compare_outputs(outputs, list(reference(name)), Tolerance(rtol=case.rtol, atol=case.atol))
    assert report.passed, "\n".join([report.summary_line(), *(c.line() for c in report.mismatches)])


@pytest.mark.parametrize(("name", "mesh"), cases())
def test_corpus_predicted_collectives_equal_xla(name: str, mesh: str) -> None:
    plan_ = planned(name, mesh)
    assert plan_.program.collectives is not None
    rows = compare_prediction(name, mesh, plan_.report["predicted_collectives"], plan_.program.collectives)
    off = mismatches(rows)
    assert not off, f"{name} on mesh {mesh}: " + "; ".join(off) + "\n" + format_table(rows)


# ----------------------------------------------------------------- scanned vs unrolled


def param_layouts(text: str, mesh: str, built_: corpus.Built) -> tuple[dict[str, tuple[tuple[str, ...], ...]], float]:
    """Each parameter leaf's chosen layout (by its pytree path) and XLA's FLOP reduction
    (single-device FLOPs / per-device FLOPs of the plan)."""
    module, _, warnings = plan(text, mesh)
    assert warnings == ()
    func = main_function(module)
    leaves = jax.tree_util.tree_flatten_with_path(built_.args[0])[0]
    layouts = {}
    for i, (path, _) in enumerate(leaves):
        sharding = S.arg_sharding(func, i)
        assert sharding is not None
        layouts[jax.tree_util.keystr(path)] = sharding.dim_axes
    devices = jax.devices()[:8]
    per_device = compile_program(module, devices).cost().flops
    single = compile_reference(module, devices[0]).cost().flops
    return layouts, single / per_device


@pytest.mark.parametrize("mesh", [pytest.param("2x4"), pytest.param("8", marks=pytest.mark.exhaustive)])
def test_scanned_layers_planned_like_unrolled(mesh: str) -> None:
    """GPT with 256-wide blocks (1 MiB MLP weights, batch 8 x 16 tokens): the plan splits
    weights, not only the batch. Every parameter of the scanned stack ([2, ...]) takes
    the layout of the unrolled blocks' parameter, with the layer dim whole; XLA's
    per-device FLOPs fall by the same factor within 10% (XLA counts a while body once, so
    the reductions are compared, not the FLOPs themselves). Parameters outside the stack
    (embeddings, the final norm) are free to differ: the two programs around them differ."""
    from corpus.flax_gpt_cases import GPTConfig, scan_twins

    cfg = GPTConfig(vocab_size=256, n_embd=256, batch_size=8, block_size=16)
    scan, unrolled = scan_twins(cfg)
    scanned, scan_reduction = param_layouts(corpus.export_text(scan), mesh, scan)
    flat, unrolled_reduction = param_layouts(corpus.export_text(unrolled), mesh, unrolled)
    blocks = "['blocks']['block']"
    differ = []
    for path, layout in flat.items():
        if "['block_" not in path:
            continue
        rest = path.split("]", 1)[1]  # "['block_0']['mlp']..." -> "['mlp']..."
        stacked = scanned[blocks + rest]
        if stacked != ((), *layout):
            differ.append(f"{path}: unrolled {layout}, scanned {stacked}")
    assert not differ, "\n".join(differ)
    assert any(any(dim) for path, layout in flat.items() if "['block_" in path for dim in layout), \
        "the unrolled plan splits no block weight: the test would not show that the scan does"
    assert abs(scan_reduction / unrolled_reduction - 1) <= 0.1, (scan_reduction, unrolled_reduction)
