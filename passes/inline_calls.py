"""alpa-inline-calls: inline every `func.call` into its caller (jaxlib's native `inline`
pass leaves StableHLO bodies alone in this build: no inliner interface is registered)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from jax.extend.mlir import ir, passmanager

from alpa_mlir.dialect_utils.diagnostics import module_location
from alpa_mlir.dialect_utils.inlining import inline_calls

from .pass_base import Pass, PassContext


@dataclass(frozen=True)
class InlineCallsPass(Pass):
    """Inline every call of a function defined in the module, then drop dead functions.

    Reads: a module whose functions call private helpers (JAX exports `@relu`, `@_where`,
    ... as `func.call`s).
    Writes: the same computation with the callees' bodies copied into each caller and
    unused private functions removed (with `symbol-dce`).
    Algorithm: repeatedly clone callee bodies at call sites, mapping callee arguments to
    call operands, until no call to a defined function is left.
    """

    NAME: ClassVar[str] = "alpa-inline-calls"
    SUMMARY: ClassVar[str] = "inline func.call of functions defined in the module"
    STATIC_SHAPES: ClassVar[bool] = False  # shapes are only copied

    keep_dead: bool = field(default=False, metadata={"help": "keep private functions left without callers"})

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        try:
            inline_calls(module)
        except ValueError as e:
            ctx.fail(str(e), module_location(module))
        if not self.keep_dead:
            passmanager.PassManager.parse("builtin.module(symbol-dce)", context=module.context).run(module.operation)
