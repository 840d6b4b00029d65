"""alpa-inline-calls: inline every `func.call` into its caller (jaxlib's native `inline`
pass leaves StableHLO bodies alone in this build: no inliner interface is registered)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from jax.extend.mlir import ir, passmanager

from alpa_mlir.dialect_utils.graph import functions

from .pass_base import Pass, PassContext

MAX_ROUNDS = 64  # nesting depth of calls we unfold (StableHLO has no recursion)


def inline_calls(module: ir.Module) -> int:
    """Replace each `func.call` of a function defined in `module` by a copy of the callee's
    body. Returns the number of calls inlined. Callees left unused stay (run symbol-dce)."""
    funcs = functions(module)
    total = 0
    for _ in range(MAX_ROUNDS):
        calls: list[ir.Operation] = []

        def visit(op: ir.Operation, calls: list[ir.Operation] = calls) -> ir.WalkResult:
            if op.name == "func.call":
                calls.append(op)
            return ir.WalkResult.ADVANCE

        for f in funcs.values():
            f.walk(visit)
        calls = [c for c in calls if _callee(c) in funcs]
        if not calls:
            return total
        for call in calls:
            _inline_one(call, funcs[_callee(call)])
            total += 1
    raise ValueError(f"calls nested deeper than {MAX_ROUNDS} levels (recursion?)")


def inlined_main(module: ir.Module, ctx: PassContext, pass_name: str) -> ir.Operation:
    """@main with every call inlined and dead private functions dropped: what the
    planning passes analyze. Fails (naming `pass_name`) when there is no @main."""
    funcs = functions(module)
    if "main" not in funcs:
        found = ", ".join(f"@{n}" for n in funcs) or "none"
        ctx.fail(f"{pass_name} needs a @main function (found: {found})", module.operation.location)
    try:
        inline_calls(module)
    except ValueError as e:
        ctx.fail(str(e), module.operation.location)
    passmanager.PassManager.parse("builtin.module(symbol-dce)", context=module.context).run(module.operation)
    return functions(module)["main"]


def _callee(call: ir.Operation) -> str:
    return str(ir.FlatSymbolRefAttr(call.attributes["callee"]).value)


def _inline_one(call: ir.Operation, callee: ir.Operation) -> None:
    block = callee.regions[0].blocks[0]
    mapping: dict[ir.Value, ir.Value] = dict(zip(block.arguments, call.operands, strict=True))
    ip = ir.InsertionPoint(call)
    returned: list[ir.Value] = []
    for op in block.operations:
        operation = op.operation
        if operation.name == "func.return":
            returned = [mapping.get(v, v) for v in operation.operands]
            break
        clone = operation.clone(ip)
        remap_operands(clone, mapping)
        for old, new in zip(operation.results, clone.results, strict=True):
            mapping[old] = new
    for result, value in zip(call.results, returned, strict=True):
        result.replace_all_uses_with(value)
    call.erase()


def remap_operands(op: ir.Operation, mapping: dict[ir.Value, ir.Value]) -> None:
    """Point the clone (and ops nested in it) at the caller's values."""

    def visit(inner: ir.Operation) -> ir.WalkResult:
        for i, v in enumerate(inner.operands):
            if v in mapping:
                inner.operands[i] = mapping[v]
        return ir.WalkResult.ADVANCE

    op.walk(visit)


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

    keep_dead: bool = field(default=False, metadata={"help": "keep private functions left without callers"})

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        try:
            inline_calls(module)
        except ValueError as e:
            ctx.fail(str(e), module.operation.location)
        if not self.keep_dead:
            passmanager.PassManager.parse("builtin.module(symbol-dce)", context=module.context).run(module.operation)
