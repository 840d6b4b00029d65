"""Copying ops between functions: inlining `func.call`s and pointing clones at new values
(jaxlib's native `inline` pass leaves StableHLO bodies alone in this build: no inliner
interface is registered)."""

from __future__ import annotations

from jax.extend.mlir import ir

from .graph import functions

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
