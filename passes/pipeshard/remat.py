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

Selective recomputation (layers in `selective`): only the layer's cheap ops
(`RECOMPUTABLE`: elementwise and data movement) are cloned; what its other forward ops
(dots, convolutions, reductions, gathers, ...) produced is read as it is, so it is
stashed instead of the cheap values computed from it (`saved_and_recomputed` says
which). Per microbatch that stashes the values worth their compute and drops the
elementwise chains beside them (a softmax's exponentials, a GELU's intermediates, the
casts of mixed precision), for a fraction of the forward's compute.

Algorithm: walk the non-forward ops in program order; at the first use (at any depth
of the op's regions) of a forward value v of the op's own layer that has no copy yet,
clone the part of the layer's forward that v depends on and that is not copied yet (its
ancestors through forward ops of the same layer), in program order, right before that
op; operands from other layers, from the function's arguments or from non-forward ops
are used as they are. Copies are kept per layer, so each forward op is cloned at most
once. Program order holds: a clone's operands are originals (which come earlier) or
earlier clones.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.attributes import PHASE_ATTR, Phase, layer_of, phase_of
from alpa_mlir.dialect_utils.flops import ELEMENTWISE
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode
from alpa_mlir.dialect_utils.inlining import remap_operands

# What selective recomputation runs again: ops of no FLOPs or one per element.
RECOMPUTABLE = ELEMENTWISE | frozenset("stablehlo." + n for n in (
    "broadcast_in_dim", "reshape", "transpose", "iota", "constant", "slice", "concatenate",
    "pad", "reverse", "bitcast_convert"))


def recomputable(node: OpNode) -> bool:
    return node.name in RECOMPUTABLE and not node.op.regions


def saved_and_recomputed(graph: FunctionGraph, forward: Callable[[OpNode], bool],
                         read_later: Collection[ir.Value]) -> tuple[list[ValueNode], set[int]]:
    """For one layer's ops in `graph` (`forward` tells its forward ops) whose forward
    values `read_later` are read by its backward: what selective recomputation stashes
    (forward values of ops not `recomputable`, and values from outside the forward) and
    the indices of the forward ops it runs again."""
    producer = {r.value: node for node in graph.ops if forward(node) for r in node.results}
    saved: dict[ir.Value, ValueNode] = {}
    again: set[int] = set()
    stack = list(read_later)
    while stack:
        v = stack.pop()
        node = producer.get(v)
        if node is not None and recomputable(node):
            if node.index not in again:
                again.add(node.index)
                stack.extend(u.value for u in [*node.operands, *graph.captured(node)])
        elif v not in saved:
            saved[v] = graph.node(v)
    return list(saved.values()), again


def rematerialize(function: ir.Operation, layers: Collection[int] | None = None,
                  selective: Collection[int] = ()) -> int:
    """Rewrite `function` in place (module docstring) for every layer, or for `layers`
    only (the others keep their forward values), recomputing only the cheap ops of the
    layers in `selective`; returns the number of ops cloned."""
    graph = FunctionGraph(function)
    producer: dict[ir.Value, OpNode] = {r.value: node for node in graph.ops if phase_of(node) is Phase.FORWARD
                                        for r in node.results}
    copies: dict[tuple[int, ir.Value], ir.Value] = {}  # (layer, original) -> recomputed
    cloned = 0

    def own(v: ir.Value, layer: int) -> OpNode | None:
        """v's producer if v is a forward value of `layer` that is to be recomputed."""
        node = producer.get(v)
        if node is None or layer_of(node) != layer:
            return None
        return node if layer not in selective or recomputable(node) else None

    def recompute(v: ir.Value, layer: int, before: ir.Operation) -> ir.Value:
        nonlocal cloned
        needed: dict[int, OpNode] = {}  # op index -> op, the uncopied cone of v
        stack = [v]
        while stack:
            value = stack.pop()
            node = own(value, layer)
            if node is None or (layer, value) in copies or node.index in needed:
                continue
            needed[node.index] = node
            stack.extend(u.value for u in [*node.operands, *graph.captured(node)])
        for index in sorted(needed):
            node = needed[index]
            mapping = {u.value: copies[(layer, u.value)] for u in [*node.operands, *graph.captured(node)]
                       if (layer, u.value) in copies}
            with function.context:
                clone = node.op.clone(ir.InsertionPoint(before))
                clone.attributes[PHASE_ATTR] = ir.StringAttr.get(Phase.BACKWARD)
            remap_operands(clone, mapping)
            cloned += 1
            for old, new in zip(node.results, clone.results, strict=True):
                copies[(layer, old.value)] = new
        return copies[(layer, v)]

    for node in graph.ops:
        layer = layer_of(node)
        if phase_of(node) is Phase.FORWARD or layer is None or (layers is not None and layer not in layers):
            continue

        def visit(inner: ir.Operation, layer: int = layer, top: ir.Operation = node.op) -> ir.WalkResult:
            for i, v in enumerate(inner.operands):
                if own(v, layer) is not None:
                    inner.operands[i] = recompute(v, layer, top)
            return ir.WalkResult.ADVANCE

        node.op.walk(visit)
    return cloned
