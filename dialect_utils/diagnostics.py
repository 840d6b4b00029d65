"""MLIR diagnostics as Python values, and their `file:line:col: severity: message` form.

Native passes and the parser report through MLIR's diagnostic engine; our Python passes
report through `DiagnosticCollector.emit`. Both end up as `Diagnostic` values that tools
print the same way.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jax.extend.mlir import ir

# The buffer name jaxlib's parser gives text parsed from a string.
PARSER_BUFFER_NAME = "-"

_FILE_LINE_COL = re.compile(r'"((?:[^"\\]|\\.)*)":(\d+):(\d+)')


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"
    REMARK = "remark"


@dataclass(frozen=True)
class SourceLoc:
    file: str
    line: int
    col: int

    def format(self, buffer_name: str) -> str:
        name = buffer_name if self.file == PARSER_BUFFER_NAME else self.file
        return f"{name}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str
    loc: SourceLoc | None = None
    notes: tuple[Diagnostic, ...] = ()

    def format(self, buffer_name: str) -> str:
        where = self.loc.format(buffer_name) if self.loc else f"{buffer_name}:0:0"
        lines = [f"{where}: {self.severity.value}: {self.message}"]
        lines.extend(note.format(buffer_name) for note in self.notes)
        return "\n".join(lines)


class DiagnosticError(Exception):
    """An error that carries diagnostics (parse errors, pass failures, bad options)."""

    def __init__(self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.format(PARSER_BUFFER_NAME) for d in self.diagnostics))

    @classmethod
    def single(cls, message: str, loc: SourceLoc | None = None) -> DiagnosticError:
        return cls([Diagnostic(Severity.ERROR, message, loc)])


def module_location(module: ir.Module) -> ir.Location:
    """Where whole-module diagnostics point: the `module` op's line, or for an implicit
    module (functions at the top of the file, no location of its own) its first op's,
    so both spellings of one file report the same place."""
    own = module.operation.location
    loc = source_loc(own)
    first = next(iter(module.body.operations), None)
    if (loc is None or loc.line == 0) and first is not None:
        return first.operation.location
    return own


def source_loc(loc: ir.Location | None) -> SourceLoc | None:
    """The first file:line:col inside a location (name, callsite and fused locs unwrap)."""
    if loc is None:
        return None
    match = _FILE_LINE_COL.search(str(loc))
    if match is None:
        return None
    return SourceLoc(match.group(1), int(match.group(2)), int(match.group(3)))


_SEVERITIES = {
    "ERROR": Severity.ERROR,
    "WARNING": Severity.WARNING,
    "NOTE": Severity.NOTE,
    "REMARK": Severity.REMARK,
}


def from_mlir(diag: Any) -> Diagnostic:
    """Convert an `ir.Diagnostic` or `ir.DiagnosticInfo` (from an MLIRError)."""
    severity = _SEVERITIES.get(str(diag.severity).rsplit(".", 1)[-1], Severity.ERROR)
    notes = tuple(from_mlir(n) for n in getattr(diag, "notes", ()))
    return Diagnostic(severity, str(diag.message), source_loc(diag.location), notes)


def from_mlir_error(error: ir.MLIRError) -> list[Diagnostic]:
    diags = [from_mlir(d) for d in error.error_diagnostics]
    if not diags:
        diags = [Diagnostic(Severity.ERROR, str(error.message))]
    return diags


@dataclass
class DiagnosticCollector:
    """Collects every diagnostic: MLIR's (while `capture` is active) and ours (`emit`)."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def emit(self, severity: Severity, message: str, loc: ir.Location | None = None) -> None:
        self.diagnostics.append(Diagnostic(severity, message, source_loc(loc)))

    def warning(self, message: str, loc: ir.Location | None = None) -> None:
        self.emit(Severity.WARNING, message, loc)

    def remark(self, message: str, loc: ir.Location | None = None) -> None:
        self.emit(Severity.REMARK, message, loc)

    def extend(self, diags: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
        for d in diags:
            if d not in self.diagnostics:
                self.diagnostics.append(d)

    @contextmanager
    def capture(self, ctx: ir.Context) -> Iterator[DiagnosticCollector]:
        """Route MLIR's diagnostics on `ctx` into this collector while active."""

        def handler(diag: Any) -> bool:
            self.diagnostics.append(from_mlir(diag))
            return True

        handle: Any = ctx.attach_diagnostic_handler(handler)
        try:
            yield self
        finally:
            handle.detach()

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)
