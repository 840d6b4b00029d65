"""The base of every alpa-mlir pass.

A pass is a frozen dataclass whose fields are its options (see `options`), with a
registered kebab-case `NAME`, a one-line `SUMMARY`, and one method, `run(module, ctx)`,
that rewrites an `ir.Module` in place. The class docstring is the pass's documentation
(`alpa-opt --list-passes` prints it).

    @dataclass(frozen=True)
    class MyPass(Pass):
        NAME: ClassVar[str] = "alpa-my-pass"
        SUMMARY: ClassVar[str] = "what it does"
        threshold: int = field(default=3, metadata={"help": "..."})

        def run(self, module: ir.Module, ctx: PassContext) -> None: ...

Passes report through `ctx`: `ctx.warning(msg, loc)` for degraded-but-correct results,
`ctx.fail(msg, loc)` (raises) for errors. They never print.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.diagnostics import (
    Diagnostic,
    DiagnosticCollector,
    DiagnosticError,
    Severity,
    from_mlir_error,
    source_loc,
)
from alpa_mlir.dialect_utils.types import first_dynamic

from .options import (
    OptionError,
    OptionSpec,
    format_value,
    option_specs,
    parse_value,
    split_option_text,
)


class PassFailure(DiagnosticError):
    """A pass could not do its job; carries the diagnostics that say why."""


@dataclass
class PassContext:
    """What a running pass may use besides the module: the diagnostics sink."""

    diagnostics: DiagnosticCollector = field(default_factory=DiagnosticCollector)
    pass_name: str = ""

    def warning(self, message: str, loc: ir.Location | None = None) -> None:
        self.diagnostics.warning(message, loc)

    def remark(self, message: str, loc: ir.Location | None = None) -> None:
        self.diagnostics.remark(message, loc)

    def fail(self, message: str, loc: ir.Location | None = None) -> NoReturn:
        raise PassFailure([Diagnostic(Severity.ERROR, message, source_loc(loc))])


@dataclass(frozen=True)
class Pass:
    """Base class; subclasses are frozen dataclasses of options."""

    NAME: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""
    STATIC_SHAPES: ClassVar[bool] = True
    """The pass needs every shape static (sizes, costs, splits): a module with a
    dynamic shape is refused before it runs (`require_static_shapes`)."""

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        raise NotImplementedError

    def checked_run(self, module: ir.Module, ctx: PassContext) -> None:
        """`run`, after the input checks every pass shares (static shapes where needed):
        what pipelines and `apply` call."""
        if self.STATIC_SHAPES:
            require_static_shapes(module, self.NAME)
        self.run(module, ctx)

    def apply(self, module: ir.Module) -> list[Diagnostic]:
        """Run on `module` outside any pipeline (for embedding): returns the warnings;
        raises PassFailure on error. Verifies the result."""
        ctx = PassContext(pass_name=self.NAME)
        with module.context, ir.Location.unknown(module.context):
            self.checked_run(module, ctx)
        verify_module(module, self.NAME)
        return list(ctx.diagnostics.diagnostics)

    @classmethod
    def options(cls) -> list[OptionSpec]:
        return option_specs(cls)

    @classmethod
    def from_options(cls, text: str = "") -> Pass:
        """Build from the inside of `{...}` in a pipeline. Raises OptionError."""
        specs = {s.name: s for s in cls.options()}
        values: dict[str, Any] = {}
        for key, raw in split_option_text(text):
            spec = specs.get(key)
            if spec is None:
                known = ", ".join(specs) or "none"
                raise OptionError(f"{cls.NAME} has no option '{key}' (options: {known})")
            if raw is None and spec.type is not bool:
                raise OptionError(f"option '{key}' of {cls.NAME} needs a value")
            if spec.field in values:
                raise OptionError(f"option '{key}' of {cls.NAME} is given twice")
            try:
                values[spec.field] = True if raw is None else parse_value(raw, spec.type)
            except OptionError as e:
                raise OptionError(f"bad value for option '{key}' of {cls.NAME}: {e}") from None
        try:
            return cls(**values)
        except (ValueError, TypeError) as e:
            raise OptionError(f"invalid options for {cls.NAME}: {e}") from None

    def pipeline_text(self) -> str:
        """`name{opt=value ...}` with every option (parses back to an equal pass)."""
        parts = [f"{s.name}={format_value(getattr(self, s.field))}" for s in self.options()]
        return self.NAME + ("{" + " ".join(parts) + "}" if parts else "")

    def changed_options(self) -> dict[str, Any]:
        return {
            s.name: getattr(self, s.field)
            for s in self.options()
            if getattr(self, s.field) != s.default
        }


def describe(cls: type[Pass]) -> str:
    """Human documentation for --list-passes: summary, docstring, options."""
    lines = [f"{cls.NAME}: {cls.SUMMARY}"]
    for spec in cls.options():
        lines.append(
            f"    {spec.name}={spec.format_default()}  ({spec.type_name()}) {spec.help}".rstrip()
        )
    return "\n".join(lines)


def is_pass_class(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, Pass) and dataclasses.is_dataclass(obj)


def require_static_shapes(module: ir.Module, pass_name: str) -> None:
    """Raise PassFailure at the first value with a dynamic shape."""
    found = first_dynamic(module.operation)
    if found is not None:
        raise PassFailure([Diagnostic(
            Severity.ERROR,
            f"{pass_name}: dynamic shapes are not supported: {found.what} is {found.type}; "
            "export the step with concrete shapes (jax.jit(...).lower(...) on arrays, or "
            "jax.export without symbolic dims)",
            source_loc(found.location))])


def verify_module(module: ir.Module, after: str) -> None:
    """Raise PassFailure if the module does not verify (after pass `after`)."""
    try:
        ok = module.operation.verify()
    except ir.MLIRError as e:
        raise PassFailure(
            [*from_mlir_error(e), Diagnostic(Severity.ERROR, f"module failed verification after pass '{after}'")]
        ) from None
    if not ok:
        raise PassFailure([Diagnostic(Severity.ERROR, f"module failed verification after pass '{after}'")])
