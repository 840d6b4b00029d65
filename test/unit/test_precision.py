"""Mixed-precision training steps of the zoo (models/precision.py): every model in bf16
and fp16 against its fp32 step with JAX on one device, the exported module's dtypes,
alpa-export --dtype, and the reference check's tolerance for a module computing in bf16."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.models.errors import ModelConfigError
from alpa_mlir.models.export import export_train_step, train_step_setup
from alpa_mlir.models.precision import Precision
from alpa_mlir.models.registry import model_names
from alpa_mlir.runtime.reference import Tolerance, narrowest_float
from alpa_mlir.tools.alpa_export import main as alpa_export


def _step(model: str, precision: str, scale: float | None = None) -> list[np.ndarray]:
    """The step's outputs: new parameters, then mu, nu, step, then the loss."""
    setup = train_step_setup(model, "tiny", precision=Precision(precision, scale))
    params, opt_state, batch = jax.tree.unflatten(jax.tree.structure(setup.abstract_args()), setup.example_args(0))
    return [np.asarray(x) for x in jax.tree.leaves(jax.jit(setup.train_step())(params, opt_state, batch))]


@pytest.fixture(scope="module")
def fp32_steps() -> dict[str, list[np.ndarray]]:
    return {m: _step(m, "fp32") for m in model_names()}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("model", model_names())
def test_mixed_precision_step_is_close_to_fp32(model: str, precision: str,
                                               fp32_steps: dict[str, list[np.ndarray]]) -> None:
    got, want = _step(model, precision), fp32_steps[model]
    assert [x.dtype for x in got] == [x.dtype for x in want]  # float32 master state and loss
    assert all(np.all(np.isfinite(x)) for x in got)
    np.testing.assert_allclose(got[-1], want[-1], rtol=5e-3 if precision == "bf16" else 1e-3)  # the loss
    n = len(jax.tree.leaves(train_step_setup(model, "tiny").abstract_args()[0]))
    # One Adam step moves a parameter by about the learning rate (1e-3): the rounding of
    # the compute dtype changes that move by less than one step.
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(got[:n], want[:n], strict=True)) < 1e-3
    # The moments take in the gradients with the compute dtype's rounding: off by a few
    # percent of the largest moment (not per leaf: a gradient that is zero in exact
    # arithmetic, such as a bias before a batch norm, is rounding noise in any dtype).
    largest = max(float(np.max(np.abs(b))) for b in want[n:-1])
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(got[n:-1], want[n:-1], strict=True)) < 0.05 * largest


def test_fp16_loss_scale_cancels_out() -> None:
    small, large = _step("gpt", "fp16", 1.0), _step("gpt", "fp16", 4096.0)
    assert all(np.all(np.isfinite(x)) for x in large)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(small, large, strict=True)) < 1e-4


def _module(text: str) -> ir.Module:
    return parse_module(text, make_context())


def test_exported_bf16_step_computes_in_bf16_with_float32_state() -> None:
    text = export_train_step("gpt", "tiny", precision="bf16", debug_info=False)
    module = _module(text)
    main = next(op for op in module.body.operations if op.attributes["sym_name"].value == "main")
    args = main.regions[0].blocks[0].arguments
    assert all(str(a.type.element_type) in ("f32", "i32") for a in args)  # params, Adam, batch
    dots = [line for line in text.splitlines() if "stablehlo.dot_general" in line]
    assert dots and all("bf16>" in line for line in dots)
    assert narrowest_float(module) == "bfloat16"
    assert narrowest_float(_module(export_train_step("gpt", "tiny", debug_info=False))) is None


def test_tolerance_of_a_narrow_compute_type() -> None:
    f32 = np.dtype(np.float32)
    assert Tolerance().for_dtype(f32) == (1e-4, 1e-5)
    assert Tolerance(compute="bfloat16").for_dtype(f32) == (2e-2, 1e-2)
    assert Tolerance(rtol=1e-3, compute="bfloat16").for_dtype(f32) == (1e-3, 1e-2)
    assert Tolerance(compute="bfloat16").for_dtype(np.dtype(np.int32)) == (0.0, 0.0)


def test_alpa_export_dtype_flag(tmp_path: Path) -> None:
    out = tmp_path / "moe.mlir"
    assert alpa_export(["moe", "--dtype", "fp16", "--loss-scale", "256", "--no-debug-info", "-o", str(out)]) == 0
    text = out.read_text()
    assert "xf16>" in text and "xbf16>" not in text
    assert "2.560000e+02" in text  # the loss scale


def test_unknown_precision_and_bad_loss_scale_are_refused() -> None:
    with pytest.raises(ModelConfigError, match="unknown precision 'fp8'; valid: fp32, bf16, fp16"):
        train_step_setup("gpt", "tiny", precision="fp8")
    with pytest.raises(ModelConfigError, match="loss scale must be a positive finite number"):
        Precision("fp16", float("nan"))
    assert Precision("fp16").scale == 1024.0 and Precision("bf16").scale == 1.0
