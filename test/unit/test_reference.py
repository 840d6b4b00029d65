"""alpa_mlir.runtime.reference: output comparison tolerances and the unsharded reference module."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MATMUL_CONTRACTING_X, parse
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import context
from alpa_mlir.runtime import reference


def test_compare_output_tolerances() -> None:
    e = np.array([1.0, 0.0, np.nan, np.inf], np.float32)
    close = reference.compare_output(0, e + np.float32(1e-6) * np.array([1, 1, 0, 0], np.float32), e)
    assert close.ok and close.max_abs_err == pytest.approx(1e-6, rel=1e-2)
    assert "ok" in close.line() and close.line().startswith("out0: [4] float32")
    far = reference.compare_output(1, e + np.array([1e-3, 0, 0, 0], np.float32), e)
    assert not far.ok and "MISMATCH (2 NaN/Inf in the reference)" in far.line()
    assert close.nonfinite == 2
    assert reference.compare_output(1, e + np.array([1e-3, 0, 0, 0], np.float32), e,
                                    reference.Tolerance(rtol=1e-2)).ok
    nan = reference.compare_output(2, np.array([1.0, 0.0, 1.0, np.inf], np.float32), e)
    assert not nan.ok and "NaN/Inf" in nan.note
    ints = np.array([1, 2, 3], np.int32)
    assert reference.compare_output(3, ints, ints).ok
    assert not reference.compare_output(3, ints + 1, ints, reference.Tolerance(rtol=1.0, atol=1.0)).ok
    shape = reference.compare_output(4, ints[:2], ints)
    assert not shape.ok and "got int32 (2,)" in shape.note
    report = reference.compare_outputs([ints, ints + 1], [ints, ints])
    assert report.summary_line() == "reference check: FAIL (1 of 2 outputs mismatch: out1)"
    assert reference.compare_outputs([ints], [ints]).summary_line() == "reference check: PASS (1 output match)"


def test_reference_module_strips_shardings(ctx: ir.Context) -> None:
    module = parse(MATMUL_CONTRACTING_X, ctx)
    stripped = reference.reference_module(module)
    assert "sdy." not in context.print_module(stripped)
    assert "sdy.sharding" in context.print_module(module)  # the original is untouched
