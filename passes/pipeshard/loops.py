"""Loops over per-example values, unrolled for the pipeshard passes.

A `stablehlo.while` that reads the batch (a scan over layers: `nn.scan`,
`jax.lax.scan`, `fori_loop`) is opaque to the microbatch analysis and to layer
clustering. When its trip count is static (`dialect_utils.control_flow.loop_counter`)
it is unrolled in @main, outermost first, until no such loop is left: each iteration's
ops become top-level ops that gradient accumulation can split and layer construction
can cluster (one scan iteration per layer, as in the unrolled twin of the model). The
copies are cleaned up (`dialect_utils.folding`): counters folded to constants, each
residual that the forward scan stacks read straight from the iteration that wrote it,
dead stacks erased, slices of stacked parameters at constant offsets made static slices
and moved next to their readers, so the iterations depend on each other as the unrolled
model's layers do. Loops that do not read the batch (threefry's rounds for a dropout
key, an optimizer's loop) are left as they are: the microbatch analysis computes them
once (`microbatch` hoisting).
"""

from __future__ import annotations

from collections.abc import Iterable

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.folding import (
    erase_dead,
    fold_scalar_integers,
    forward_slices,
    sink_views,
    static_slices,
)
from alpa_mlir.dialect_utils.graph import FunctionGraph
from alpa_mlir.dialect_utils.loops import unroll

from .step_analysis import op_inputs


def unroll_batch_loops(main: ir.Operation, batch_args: Iterable[int]) -> int:
    """Unroll the counted whiles of `main` that read the batch arguments (module
    docstring). Returns the number of loops unrolled."""
    batch = sorted(set(batch_args))
    total = 0
    while True:
        graph = FunctionGraph(main)
        reading = {graph.args[a].value for a in batch}
        loops: list[ir.Operation] = []
        for node in graph.ops:
            if any(v.value in reading for v in op_inputs(graph, node)):
                reading.update(r.value for r in node.results)
                if node.name == "stablehlo.while":
                    loops.append(node.op)
        done = sum(unroll(op) for op in loops)
        if not done:
            return total
        total += done
        block = main.regions[0].blocks[0]
        fold_scalar_integers(block)
        forward_slices(block)
        static_slices(block)
        erase_dead(block)
        sink_views(block)
