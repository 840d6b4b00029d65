"""`--list-passes`: our passes (from their docstrings and options) and the native ones."""

from __future__ import annotations

import inspect

from jax.extend.mlir import ir

from alpa_mlir.passes import get_pass_class, pass_names
from alpa_mlir.passes.native import NATIVE_PASSES, native_pass_defaults
from alpa_mlir.passes.pass_base import describe


def list_passes(ctx: ir.Context) -> str:
    lines = ["alpa-mlir passes (Python):"]
    for name in pass_names():
        cls = get_pass_class(name)
        assert cls is not None
        lines.append("  " + describe(cls).replace("\n", "\n  "))
        doc = inspect.getdoc(cls) or ""
        body = doc.split("\n", 1)[1].strip() if "\n" in doc else ""
        if body:
            lines.extend("      " + line if line else "" for line in body.splitlines())
        lines.append("")
    lines.append("native MLIR passes (jaxlib), usable in the same pipelines:")
    for p in NATIVE_PASSES:
        try:
            defaults = native_pass_defaults(p, ctx)
        except ValueError:
            continue  # not registered in this jaxlib build
        where = "" if p.anchor == "builtin.module" else f"  [nest in {p.anchor}(...)]"
        lines.append(f"  {p.name}: {p.summary}{where}")
        if defaults.startswith(p.name + "{"):  # single passes only, not whole pipelines
            lines.append(f"      defaults: {defaults}")
    return "\n".join(lines) + "\n"
