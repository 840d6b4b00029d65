"""Native MLIR passes (compiled into jaxlib) that alpa-opt pipelines may name.

jaxlib offers no way to enumerate its registered passes, so this is the list we use and
test (each entry must parse in its anchor; see test/unit/test_native_passes.py). Any
other registered native pass works in a pipeline too; these are the ones we list.
"""

from __future__ import annotations

from dataclasses import dataclass

from jax.extend.mlir import ir, passmanager


@dataclass(frozen=True)
class NativePass:
    name: str
    anchor: str  # "builtin.module" or "func.func": where it must be nested
    summary: str

    def pipeline_element(self) -> str:
        return self.name if self.anchor == "builtin.module" else f"{self.anchor}({self.name})"


NATIVE_PASSES: tuple[NativePass, ...] = (
    NativePass("canonicalize", "builtin.module", "canonicalize operations (folding, patterns)"),
    NativePass("cse", "builtin.module", "eliminate common sub-expressions"),
    NativePass("inline", "builtin.module", "inline function calls"),
    NativePass("symbol-dce", "builtin.module", "remove dead private symbols"),
    NativePass("sccp", "builtin.module", "sparse conditional constant propagation"),
    NativePass("topological-sort", "builtin.module", "sort ops topologically in graph regions"),
    NativePass("remove-dead-values", "builtin.module", "remove unused values and arguments"),
    NativePass("sdy-propagation-pipeline", "builtin.module", "Shardy: import, propagate, export shardings"),
    NativePass("sdy-import-pipeline", "builtin.module", "Shardy: import pipeline"),
    NativePass("sdy-export-pipeline", "builtin.module", "Shardy: export pipeline"),
    NativePass("sdy-close-shardings", "builtin.module", "Shardy: close open sharding dimensions"),
    NativePass("sdy-insert-explicit-reshards", "func.func", "Shardy: make reshards explicit"),
    NativePass("sdy-reshard-to-collectives", "func.func", "Shardy: turn reshards into collectives"),
    NativePass("sdy-sharding-constraint-to-reshard", "func.func", "Shardy: constraints to reshards"),
)


def native_pass_defaults(p: NativePass, ctx: ir.Context) -> str:
    """The pass with its option defaults as MLIR prints it (raises ValueError if the
    pass is not registered in this jaxlib)."""
    pm = passmanager.PassManager.parse(f"builtin.module({p.pipeline_element()})", context=ctx)
    text = str(pm)
    prefix, suffix = "builtin.module(", ")"
    body = text[len(prefix):-len(suffix)] if text.startswith(prefix) else text
    if p.anchor != "builtin.module":
        body = body[len(p.anchor) + 1:-1]
    return " ".join(body.split())
