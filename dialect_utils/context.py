"""MLIR contexts that understand everything JAX exports, and module (de)serialization.

The private jaxlib names this needs (jaxlib's dialect registry, the mhlo registration)
are reached through `jax_internals`, the project's one module of private reach; everything
else uses the public `jax.extend.mlir` bindings and the helpers here.
"""

from __future__ import annotations

import io
from pathlib import Path

import jax.extend.mlir  # noqa: F401  (imports the bindings package)
from jax.extend.mlir import ir
from jax.extend.mlir.dialects import chlo, mpmd, sdy, stablehlo

from . import jax_internals

BYTECODE_MAGIC = b"ML\xefR"


def make_context() -> ir.Context:
    """A fresh context with func, stablehlo, chlo, sdy, mpmd and mhlo registered.

    A bare `ir.Context()` cannot parse `func.func`: the upstream dialects have no public
    Python registration, so we take jaxlib's own registry.
    """
    ctx = ir.Context()
    jax_internals.register_jaxlib_dialects(ctx)
    for dialect in (stablehlo, chlo, sdy, mpmd):
        dialect.register_dialect(ctx)
    ctx.load_all_available_dialects()
    return ctx


def is_bytecode(data: bytes) -> bool:
    return data.startswith(BYTECODE_MAGIC)


def parse_module(source: str | bytes, ctx: ir.Context) -> ir.Module:
    """Parse MLIR text or bytecode. Raises `ir.MLIRError` with diagnostics on failure.

    Locations of text input name the buffer "-"; `diagnostics.SourceLoc` formatting
    substitutes the real input name for it.
    """
    with ctx:
        return ir.Module.parse(source)


def parse_file(path: str | Path, ctx: ir.Context) -> ir.Module:
    """Parse a file (text or bytecode); locations carry the file's name."""
    with ctx:
        return ir.Module.parseFile(str(path))


def print_module(module: ir.Module, debug_info: bool = False) -> str:
    """The module's text form (without locations unless `debug_info`)."""
    return str(module.operation.get_asm(enable_debug_info=debug_info))


def module_bytecode(module: ir.Module) -> bytes:
    buf = io.BytesIO()
    module.operation.write_bytecode(buf)
    return buf.getvalue()


def clone_module(module: ir.Module) -> ir.Module:
    """A deep copy of `module` in the same context (via bytecode, keeps locations)."""
    return parse_module(module_bytecode(module), module.context)
