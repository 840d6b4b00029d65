"""Layer-level rematerialization (activation recomputation) in the microbatch function.

Reads: the per-microbatch function of a split step (`accumulation.split_step`), every op
carrying `alpa.layer` and `alpa.phase`.
Writes: the same function in which no op outside the forward phase reads a forward
value computed inside its own layer: it reads a copy recomputed right before it instead
(the forward ops of that layer, cloned with `alpa.phase = "backward"`). The forward ops
are untouched, so the loss and every value another layer reads are the same values.

What that buys: `fragments.write_mpmd` puts the clones in the backward fragment of the
layer's stage, so between a microbatch's forward and backward fragments a stage keeps
only what its layers read from outside themselves (the layer inputs: Alpa's
checkpointing at layer boundaries, `remat_mode="fine_grained_remat"`), at the price of
running each layer's forward twice. `stage_cost` charges exactly that (activation bytes
= the layer's inputs, latency + the forward compute).

Algorithm: for every use of a value v by a non-forward op B, where v's producer is a
forward op of B's layer, replace the use by clone(v); clone(v) clones v's producer
after cloning its operands the same way (operands from other layers, from the function's
arguments or from non-forward ops are used as they are), memoized per layer, each clone
inserted before the first op that needs it. Program order is kept: a clone's operands
are the originals' (which come earlier) or earlier clones.
"""

from __future__ import annotations

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode

from ..inline_calls import remap_operands
from .accumulation import LAYER_ATTR

PHASE_ATTR = "alpa.phase"
FORWARD = "forward"


def _phase(node: OpNode) -> str:
    attrs = node.op.attributes
    return str(ir.StringAttr(attrs[PHASE_ATTR]).value) if PHASE_ATTR in attrs else "backward"


def _layer(node: OpNode) -> int | None:
    attrs = node.op.attributes
    return int(ir.IntegerAttr(attrs[LAYER_ATTR]).value) if LAYER_ATTR in attrs else None


def rematerialize(function: ir.Operation) -> int:
    """Rewrite `function` in place (module docstring); returns the number of ops cloned."""
    graph = FunctionGraph(function)
    recomputable = {r.value: node for node in graph.ops if _phase(node) == FORWARD
                    for r in node.results}
    clones: dict[tuple[int, ir.Value], ir.Value] = {}  # (layer, original) -> recomputed
    cloned = 0

    def recompute(v: ir.Value, layer: int, before: ir.Operation) -> ir.Value:
        nonlocal cloned
        key = (layer, v)
        if key in clones:
            return clones[key]
        producer = recomputable[v]
        mapping: dict[ir.Value, ir.Value] = {}
        for operand in [*producer.operands, *graph.captured(producer)]:
            if _needs_copy(operand.value, layer):
                mapping[operand.value] = recompute(operand.value, layer, before)
        with function.context:
            clone = producer.op.clone(ir.InsertionPoint(before))
            clone.attributes[PHASE_ATTR] = ir.StringAttr.get("backward")
        remap_operands(clone, mapping)
        cloned += 1
        for old, new in zip(producer.results, clone.results, strict=True):
            clones[(layer, old.value)] = new
        return clones[key]

    def _needs_copy(v: ir.Value, layer: int) -> bool:
        producer = recomputable.get(v)
        return producer is not None and _layer(producer) == layer

    for node in graph.ops:
        layer = _layer(node)
        if _phase(node) == FORWARD or layer is None:
            continue
        op = node.op

        def visit(inner: ir.Operation, layer: int = layer, top: ir.Operation = op) -> ir.WalkResult:
            for i, v in enumerate(inner.operands):
                if _needs_copy(v, layer):
                    inner.operands[i] = recompute(v, layer, top)
            return ir.WalkResult.ADVANCE

        op.walk(visit)
    return cloned
