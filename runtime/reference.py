"""The reference run (the same module unpartitioned, on one device) and the comparison
of a run's outputs with it.

Tolerance rule per output, numpy `allclose`-style: every element satisfies
`|actual - expected| <= atol + rtol * |expected|`, NaNs matching NaNs and infinities
matching equal infinities. Floats default to a tolerance for their width (f32:
rtol 1e-4, atol 1e-5: room for the different summation orders of partitioned
reductions); integers and booleans must match exactly. A module that computes in a
narrower float than its outputs (a bf16 or fp16 mixed-precision step returns float32
parameters and Adam state) carries that type's rounding into them, so float outputs get
the looser of their own and the narrowest computed type's tolerance
(`Tolerance.compute`, from `narrowest_float`).

max_abs_err = max |actual - expected|; max_rel_err = max |actual - expected| / |expected|
over the elements whose expected value is nonzero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import numpy as np
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import context, shardy

from .errors import DeviceCountError
from .spmd import CompileSettings, Program, compile_program, required_devices

# Default (rtol, atol) by numpy dtype name; other floats use the f32 pair.
FLOAT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-9),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
    "float8_e4m3fn": (1.25e-1, 1e-1),
    "float8_e5m2": (2.5e-1, 1e-1),
}


# MLIR float element types narrower than f32 -> numpy names (FLOAT_TOLERANCES keys).
_NARROW_FLOATS = {"bf16": "bfloat16", "f16": "float16", "f8E4M3FN": "float8_e4m3fn", "f8E5M2": "float8_e5m2"}


@dataclass(frozen=True)
class Tolerance:
    """Overrides of the per-dtype float tolerance (None: the dtype's default); `compute`:
    the numpy name of the narrowest float the module computes in, when narrower than f32
    (`narrowest_float`)."""

    rtol: float | None = None
    atol: float | None = None
    compute: str | None = None

    def for_dtype(self, dtype: np.dtype) -> tuple[float, float]:
        """(rtol, atol) for an output of `dtype`; (0, 0) for exact types."""
        if not _is_inexact(dtype):
            return 0.0, 0.0
        rtol, atol = FLOAT_TOLERANCES.get(np.dtype(dtype).name, FLOAT_TOLERANCES["float32"])
        if self.compute is not None:
            c_rtol, c_atol = FLOAT_TOLERANCES[self.compute]
            rtol, atol = max(rtol, c_rtol), max(atol, c_atol)
        return (rtol if self.rtol is None else self.rtol, atol if self.atol is None else self.atol)


def narrowest_float(module: ir.Module) -> str | None:
    """The numpy name of the narrowest float type (bf16, f16, f8) a value of the module
    has, the loosest of FLOAT_TOLERANCES among them; None when it computes in f32/f64."""
    found: set[str] = set()

    def visit(op: ir.Operation) -> ir.WalkResult:
        for r in op.results:
            if isinstance(r.type, ir.RankedTensorType):
                name = _NARROW_FLOATS.get(str(r.type.element_type))
                if name is not None:
                    found.add(name)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return max(found, key=lambda n: FLOAT_TOLERANCES[n]) if found else None


def _is_inexact(dtype: np.dtype) -> bool:
    dtype = np.dtype(dtype)
    return bool(np.issubdtype(dtype, np.inexact)) or dtype.kind == "V" or "float" in dtype.name


@dataclass(frozen=True)
class OutputComparison:
    """One output against its reference."""

    index: int
    shape: tuple[int, ...]
    dtype: str  # numpy name
    max_abs_err: float
    max_rel_err: float
    ok: bool
    note: str = ""  # why it mismatches beyond the numbers (shape, NaNs)
    nonfinite: int = 0  # NaN/Inf elements in the reference output (they compare equal)

    @property
    def key(self) -> str:
        return f"out{self.index}"

    def line(self) -> str:
        """`out0: [8,4] float32 max_abs_err=1.2e-07 max_rel_err=3.1e-07 ok`."""
        shape = "[" + ",".join(map(str, self.shape)) + "]"
        verdict = "ok" if self.ok else "MISMATCH"
        notes = [self.note] if self.note else []
        if self.nonfinite:
            notes.append(f"{self.nonfinite} NaN/Inf in the reference")
        note = f" ({'; '.join(notes)})" if notes else ""
        return (f"{self.key}: {shape} {self.dtype} max_abs_err={self.max_abs_err:.3g} "
                f"max_rel_err={self.max_rel_err:.3g} {verdict}{note}")


@dataclass(frozen=True)
class ReferenceReport:
    comparisons: tuple[OutputComparison, ...]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.comparisons)

    @property
    def mismatches(self) -> tuple[OutputComparison, ...]:
        return tuple(c for c in self.comparisons if not c.ok)

    @property
    def nonfinite_outputs(self) -> tuple[OutputComparison, ...]:
        return tuple(c for c in self.comparisons if c.nonfinite)

    def summary_line(self) -> str:
        n = len(self.comparisons)
        weak = len(self.nonfinite_outputs)
        caveat = f"; {weak} with NaN/Inf in the reference, compared as equal there" if weak else ""
        if self.passed:
            return f"reference check: PASS ({n} output{'s' if n != 1 else ''} match{caveat})"
        bad = ", ".join(c.key for c in self.mismatches)
        return f"reference check: FAIL ({len(self.mismatches)} of {n} outputs mismatch: {bad})"


def compare_output(
    index: int, actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance | None = None
) -> OutputComparison:
    tolerance = tolerance or Tolerance()
    shape = tuple(int(d) for d in expected.shape)
    dtype = np.dtype(expected.dtype)
    if actual.shape != expected.shape or np.dtype(actual.dtype) != dtype:
        return OutputComparison(
            index, shape, dtype.name, float("inf"), float("inf"), False,
            f"got {np.dtype(actual.dtype).name} {tuple(actual.shape)}",
        )
    rtol, atol = tolerance.for_dtype(dtype)
    wide = np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64
    a = np.asarray(actual).astype(wide)
    e = np.asarray(expected).astype(wide)
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(a - e))
        diff = np.where(np.isnan(diff), np.inf, diff)
        scale = np.abs(e)
        ok = bool(np.all(same | (diff <= atol + rtol * scale)))
        nonzero = scale > 0
        rel = diff[nonzero] / scale[nonzero]
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    note = "" if ok else ("NaN/Inf differ" if not np.isfinite(max_abs) else "")
    nonfinite = int(np.count_nonzero(~np.isfinite(e))) if _is_inexact(dtype) else 0
    return OutputComparison(index, shape, dtype.name, max_abs, max_rel, ok, note, nonfinite)


def compare_outputs(
    actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], tolerance: Tolerance | None = None
) -> ReferenceReport:
    if len(actual) != len(expected):
        raise ValueError(f"{len(actual)} outputs to compare with {len(expected)} reference outputs")
    return ReferenceReport(tuple(
        compare_output(i, a, e, tolerance) for i, (a, e) in enumerate(zip(actual, expected, strict=True))
    ))


def reference_module(module: ir.Module) -> ir.Module:
    """A copy of `module` without any sdy annotation: the unpartitioned program (shard_map
    regions, the user's own parallel program, are kept with their meshes)."""
    copy = context.clone_module(module)
    shardy.strip_shardings(copy)
    return copy


def compile_reference(
    module: ir.Module, device: jax.Device, settings: CompileSettings | None = None
) -> Program:
    """The unpartitioned module compiled for one device; a module with shard_map regions
    on the devices of their mesh (starting at `device`, everything else replicated)."""
    reference = reference_module(module)
    return compile_program(reference, reference_devices(reference, device), settings)


def reference_devices(reference: ir.Module, device: jax.Device) -> list[jax.Device]:
    """`device`, or as many devices of its platform as the kept shard_map meshes need."""
    n = required_devices(reference)
    if n == 1:
        return [device]
    pool = [d for d in jax.devices(device.platform) if d.id >= device.id]
    if len(pool) < n:
        raise DeviceCountError(f"the module's shard_map regions run on {n} devices; "
                               f"{len(pool)} are available from device {device.id}")
    return pool[:n]
