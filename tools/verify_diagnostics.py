"""`--verify-diagnostics`: check produced diagnostics against `expected-*` comments.

MLIR's convention: `// expected-error {{msg}}` on the line of the diagnostic,
`@+N` / `@-N` for N lines below/above, `@above` / `@below`, and `warning`, `remark`,
`note` likewise. A diagnostic matches when its line, severity and message (containing the
expected text) agree. Every expectation must be met and every diagnostic expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alpa_mlir.dialect_utils.diagnostics import Diagnostic, Severity, SourceLoc

_EXPECTED = re.compile(
    r"expected-(?P<kind>error|warning|remark|note)"
    r"(?:\s*@(?P<off>[+-]\d+|above|below|\d+))?\s*\{\{(?P<msg>.*?)\}\}"
)


@dataclass(frozen=True)
class Expectation:
    severity: Severity
    line: int  # the line the diagnostic must be on
    message: str
    comment_line: int
    col: int


def parse_expectations(text: str) -> list[Expectation]:
    out: list[Expectation] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for m in _EXPECTED.finditer(line):
            off = m.group("off")
            if off is None:
                target = lineno
            elif off == "above":
                target = lineno - 1
            elif off == "below":
                target = lineno + 1
            elif off[0] in "+-":
                target = lineno + int(off)
            else:
                target = int(off)
            out.append(Expectation(Severity(m.group("kind")), target, m.group("msg"), lineno, m.start() + 1))
    return out


def check(diagnostics: list[Diagnostic], expectations: list[Expectation], buffer: str) -> list[Diagnostic]:
    """The errors of the comparison (empty when everything matched)."""
    remaining = list(expectations)
    problems: list[Diagnostic] = []
    for d in _flatten(diagnostics):
        line = d.loc.line if d.loc else None
        match = next(
            (e for e in remaining if e.severity is d.severity and e.line == line and e.message in d.message),
            None,
        )
        if match is None:
            problems.append(Diagnostic(Severity.ERROR, f"unexpected {d.severity.value}: {d.message}", d.loc))
        else:
            remaining.remove(match)
    for e in remaining:
        problems.append(
            Diagnostic(
                Severity.ERROR,
                f'expected {e.severity.value} "{e.message}" was not produced',
                SourceLoc(buffer, e.comment_line, e.col),
            )
        )
    return problems


# Notes the verifier attaches for context; like mlir-opt under --verify-diagnostics, they
# are not part of what a test expects.
_CONTEXT_NOTES = ("see current operation",)


def _flatten(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for d in diagnostics:
        if d.severity is Severity.NOTE and d.message.startswith(_CONTEXT_NOTES):
            continue
        out.append(d)
        out.extend(_flatten(list(d.notes)))
    return out
