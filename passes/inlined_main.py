"""The @main that the planning passes analyze (alpa-auto-sharding, -layer-construction,
-gradient-accumulation, -stage-construction): every call inlined, dead private functions
dropped, failures reported through the pass's context."""

from __future__ import annotations

from jax.extend.mlir import ir, passmanager

from alpa_mlir.dialect_utils.diagnostics import module_location
from alpa_mlir.dialect_utils.graph import functions, is_declaration
from alpa_mlir.dialect_utils.inlining import inline_calls

from .pass_base import PassContext


def inlined_main(module: ir.Module, ctx: PassContext, pass_name: str) -> ir.Operation:
    """@main with every call inlined and dead private functions dropped: what the
    planning passes analyze. Fails (naming `pass_name`) when there is no @main."""
    funcs = functions(module)
    if "main" not in funcs:
        found = ", ".join(f"@{n}" for n in funcs) or "none"
        ctx.fail(f"{pass_name} needs a @main function (found: {found})", module_location(module))
    main = funcs["main"]
    if is_declaration(main):
        ctx.fail(f"{pass_name}: @main is a declaration without a body: nothing to transform", main.location)
    try:
        inline_calls(module)
    except ValueError as e:
        ctx.fail(str(e), module_location(module))
    passmanager.PassManager.parse("builtin.module(symbol-dce)", context=module.context).run(module.operation)
    return functions(module)["main"]
