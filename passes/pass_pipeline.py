"""Textual pass pipelines: `builtin.module(p1{opt=v},func.func(canonicalize),p2)`.

The parser turns the text into `Element`s; `build_steps` resolves each top-level element
to one of our Python passes (by registered name) or to a native MLIR pipeline element run
through jaxlib's `PassManager.parse`. Errors point at the column of the pipeline text:
`<pass-pipeline>:1:COL: error: ...`.
"""

from __future__ import annotations

from dataclasses import dataclass

from jax.extend.mlir import ir, passmanager

from alpa_mlir.dialect_utils.diagnostics import Diagnostic, DiagnosticError, Severity, SourceLoc

from .options import OptionError
from .pass_base import Pass
from .registry import get_pass_class

PIPELINE_BUFFER = "<pass-pipeline>"
ROOT_ANCHOR = "builtin.module"
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class PipelineError(DiagnosticError):
    """A malformed pipeline, an unknown pass, or a bad option."""

    @classmethod
    def at(cls, message: str, col: int) -> PipelineError:
        return cls([Diagnostic(Severity.ERROR, message, SourceLoc(PIPELINE_BUFFER, 1, col))])


@dataclass(frozen=True)
class Element:
    """One pipeline element: `name`, `name{options}` or `anchor(children)`."""

    name: str
    options: str | None
    children: tuple[Element, ...] | None
    col: int  # 1-based column of the name in the pipeline text
    text: str  # the element's exact text


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def error(self, message: str, at: int | None = None) -> PipelineError:
        return PipelineError.at(message, (self.i if at is None else at) + 1)

    def skip_ws(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def element_list(self, closing: str) -> tuple[Element, ...]:
        elements: list[Element] = []
        while True:
            self.skip_ws()
            if self.peek() == closing or (closing == "" and self.peek() == ""):
                if not elements and closing == ")":
                    return ()
                if elements and self.text[self.i - 1] == ",":
                    raise self.error("expected a pass name after ','")
                return tuple(elements)
            elements.append(self.element())
            self.skip_ws()
            if self.peek() == ",":
                self.i += 1
                continue
            if self.peek() == closing or (closing == "" and self.peek() == ""):
                return tuple(elements)
            got = repr(self.peek()) if self.peek() else "end of pipeline"
            want = f"',' or '{closing}'" if closing else "','"
            raise self.error(f"expected {want}, got {got}")

    def element(self) -> Element:
        start = self.i
        while self.peek() and self.peek() in _NAME_CHARS:
            self.i += 1
        name = self.text[start:self.i]
        if not name:
            got = repr(self.peek()) if self.peek() else "end of pipeline"
            raise self.error(f"expected a pass name, got {got}")
        options = None
        if self.peek() == "{":
            options = self.braced()
        children = None
        if self.peek() == "(":
            self.i += 1
            children = self.element_list(")")
            if self.peek() != ")":
                raise self.error(f"expected ')' to close '{name}('")
            self.i += 1
        return Element(name, options, children, start + 1, self.text[start:self.i])

    def braced(self) -> str:
        open_at = self.i
        depth, quote = 0, ""
        while self.i < len(self.text):
            ch = self.text[self.i]
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    self.i += 1
                    return self.text[open_at + 1:self.i - 1]
            self.i += 1
        raise self.error("unterminated '{' in pass options", at=open_at)


def parse_pipeline(text: str) -> tuple[Element, ...]:
    """Parse pipeline text into its top-level elements. `builtin.module(...)` around the
    list is optional."""
    parser = _Parser(text)
    elements = parser.element_list("")
    if len(elements) == 1 and elements[0].name == ROOT_ANCHOR and elements[0].children is not None:
        if elements[0].options is not None:
            raise PipelineError.at(f"'{ROOT_ANCHOR}' takes no options", elements[0].col)
        return elements[0].children
    return elements


@dataclass(frozen=True)
class PythonStep:
    """One of our passes."""

    pass_: Pass
    col: int

    @property
    def name(self) -> str:
        return self.pass_.NAME


@dataclass(frozen=True)
class NativeStep:
    """A native pipeline element (`canonicalize`, `func.func(cse)`, ...)."""

    text: str
    col: int

    @property
    def name(self) -> str:
        return self.text

    def pass_manager(self, ctx: ir.Context) -> passmanager.PassManager:
        return passmanager.PassManager.parse(f"{ROOT_ANCHOR}({self.text})", context=ctx)


Step = PythonStep | NativeStep


def build_steps(text: str, ctx: ir.Context) -> tuple[Step, ...]:
    """Resolve a pipeline: our passes by name, everything else checked against jaxlib's
    pass registry. Raises PipelineError."""
    steps: list[Step] = []
    for element in parse_pipeline(text):
        cls = get_pass_class(element.name)
        if cls is not None:
            if element.children is not None:
                raise PipelineError.at(f"'{element.name}' is a pass, not an op anchor: remove '(...)'", element.col)
            try:
                steps.append(PythonStep(cls.from_options(element.options or ""), element.col))
            except OptionError as e:
                raise PipelineError.at(str(e), element.col) from None
            continue
        _check_no_python_pass_nested(element)
        steps.append(NativeStep(element.text, element.col))
        _check_native(steps[-1], ctx)  # type: ignore[arg-type]
    return tuple(steps)


def _check_no_python_pass_nested(element: Element) -> None:
    for child in element.children or ():
        if get_pass_class(child.name) is not None:
            raise PipelineError.at(
                f"'{child.name}' runs on the whole module: place it at the top level of the "
                f"pipeline, not inside '{element.name}(...)'",
                child.col,
            )
        _check_no_python_pass_nested(child)


def _check_native(step: NativeStep, ctx: ir.Context) -> None:
    try:
        step.pass_manager(ctx)
    except ValueError as e:
        message = str(e)
        if "does not refer to a registered pass" in message:
            name = step.text.split("{")[0].split("(")[0]
            inner = message.split("'")[1] if message.count("'") >= 2 else name
            raise PipelineError.at(f"unknown pass '{inner}'", step.col) from None
        first = next((line.strip() for line in message.splitlines() if line.strip()), message)
        first = first.replace("<Pass-Options-Parser>: ", "")
        raise PipelineError.at(f"invalid pipeline element '{step.text}': {first}", step.col) from None
