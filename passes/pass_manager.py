"""Runs a pipeline of our Python passes and native MLIR passes over one module.

    pm = PassManager.parse("builtin.module(alpa-annotate-flops,canonicalize)", ctx)
    diagnostics = pm.run(module)          # raises PassFailure on error

After every step the module is verified. Instrumentations see each step: `IRPrinter`
(print-IR-after-all) and `PassTimer` (per-step wall time) are provided.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.context import print_module
from alpa_mlir.dialect_utils.diagnostics import (
    Diagnostic,
    DiagnosticCollector,
    Severity,
    from_mlir_error,
)

from .pass_base import PassContext, PassFailure, verify_module
from .pass_pipeline import NativeStep, PythonStep, Step, build_steps


class InternalPassError(RuntimeError):
    """A Python pass raised something other than PassFailure: a bug in the pass."""

    def __init__(self, pass_name: str, error: BaseException) -> None:
        self.pass_name = pass_name
        self.error = error
        super().__init__(f"internal error in pass '{pass_name}': {type(error).__name__}: {error}")


class Instrumentation(Protocol):
    def after_step(self, name: str, module: ir.Module, seconds: float) -> None: ...


@dataclass
class IRPrinter:
    """Prints the module after every step, as `--mlir-print-ir-after-all` does."""

    stream: TextIO = sys.stderr
    debug_info: bool = False

    def after_step(self, name: str, module: ir.Module, seconds: float) -> None:
        self.stream.write(f"// -----// IR Dump After {name} //----- //\n")
        self.stream.write(print_module(module, self.debug_info))
        self.stream.write("\n")


@dataclass
class PassTimer:
    """Collects wall time per step (and any extra phases the caller adds)."""

    records: list[tuple[str, float]] = field(default_factory=list)

    def after_step(self, name: str, module: ir.Module, seconds: float) -> None:
        self.records.append((name, seconds))

    def add(self, name: str, seconds: float) -> None:
        self.records.append((name, seconds))

    def report(self) -> str:
        total = sum(s for _, s in self.records) or 1e-12
        bar = "===" + "-" * 73 + "==="
        lines = [
            bar,
            "                         ... Execution time report ...",
            bar,
            f"  Total Execution Time: {total:.4f} seconds",
            "",
            "  ----Wall Time----  ----Name----",
        ]
        for name, s in self.records:
            lines.append(f"  {s:9.4f} ({100 * s / total:5.1f}%)  {name}")
        lines.append(f"  {total:9.4f} (100.0%)  Total")
        return "\n".join(lines) + "\n"


class PassManager:
    """An ordered list of steps with verification and instrumentation."""

    def __init__(
        self,
        steps: tuple[Step, ...],
        *,
        verify_each: bool = True,
        instrumentations: tuple[Instrumentation, ...] = (),
    ) -> None:
        self.steps = steps
        self.verify_each = verify_each
        self.instrumentations = instrumentations

    @classmethod
    def parse(
        cls,
        pipeline: str,
        ctx: ir.Context,
        *,
        verify_each: bool = True,
        instrumentations: tuple[Instrumentation, ...] = (),
    ) -> PassManager:
        """Build from pipeline text. Raises pipeline.PipelineError."""
        return cls(build_steps(pipeline, ctx), verify_each=verify_each, instrumentations=instrumentations)

    def run(self, module: ir.Module, diagnostics: DiagnosticCollector | None = None) -> DiagnosticCollector:
        """Run every step on `module` in place. Warnings and remarks land in the returned
        collector; errors raise PassFailure (also recorded in the collector)."""
        collector = diagnostics if diagnostics is not None else DiagnosticCollector()
        for step in self.steps:
            start = time.perf_counter()
            try:
                self._run_step(step, module, collector)
                if self.verify_each:
                    verify_module(module, step.name)
            except PassFailure as failure:
                collector.extend(failure.diagnostics)
                raise
            seconds = time.perf_counter() - start
            for inst in self.instrumentations:
                inst.after_step(step.name, module, seconds)
        return collector

    @staticmethod
    def _run_step(step: Step, module: ir.Module, collector: DiagnosticCollector) -> None:
        ctx = module.context
        if isinstance(step, PythonStep):
            pass_ctx = PassContext(collector, step.name)
            with ctx, ir.Location.unknown(ctx), collector.capture(ctx):
                try:
                    step.pass_.checked_run(module, pass_ctx)
                except PassFailure:
                    raise
                except ir.MLIRError as e:
                    raise PassFailure(from_mlir_error(e)) from None
                except Exception as e:
                    raise InternalPassError(step.name, e) from e
            return
        assert isinstance(step, NativeStep)
        pm = step.pass_manager(ctx)
        before = len(collector.diagnostics)
        with ctx, collector.capture(ctx):
            try:
                pm.run(module.operation)
            except ir.MLIRError as e:
                captured = collector.diagnostics[before:]
                del collector.diagnostics[before:]
                errors = captured + [d for d in from_mlir_error(e) if d not in captured]
                if not any(d.severity is Severity.ERROR for d in errors):
                    errors.append(Diagnostic(Severity.ERROR, f"pass pipeline '{step.text}' failed"))
                raise PassFailure(errors) from None
