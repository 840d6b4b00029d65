"""Offloading stashed activations to host memory (vPipe's "swap") in an MPMD program.

Reads: an MPMD module in the format of `docs/mpmd-format.md`, as alpa-stage-construction
writes it: in each MPMD function a forward and later a backward fragment per stage, the
ops inside them carrying `alpa.layer`.
Writes: the same module, in which each activation of the chosen layers that a forward
fragment hands to a backward fragment on its own mesh goes through host memory:

```
%a:2 = mpmd.fragment<mesh="stage0", ...> (...) {alpa.kind = "forward"} ...
%h = mpmd.transfer %a#1 : (!mpmd.mesh_tensor<"stage0", T, S>)
                          -> !mpmd.mesh_tensor<"stage0", T, S, memory_kind="pinned_host">
...                                                        (the rest of the pipeline)
%d = mpmd.transfer %h : (!mpmd.mesh_tensor<"stage0", T, S, memory_kind="pinned_host">)
                        -> !mpmd.mesh_tensor<"stage0", T, S>
%g = mpmd.fragment<mesh="stage0", ...> (%d, ...) {alpa.kind = "backward"} ...
```

Between a microbatch's forward and backward the stage's devices then hold none of those
values (the runtime releases the device copy once it is offloaded and copies it back
right before the backward), at the price of two copies over the host link per value and
microbatch. Readers other than the backward fragments of the same mesh (a transfer to the
next stage) still read the forward fragment's result.

Which values: result i of a forward fragment that a backward fragment on the same mesh
reads, in device memory, whose layer is one of `layers`. Its layer is the `alpa.layer` of
the op defining operand i of the fragment's `mpmd.return`, looking through sharding
constraints (`sdy.sharding_constraint`, which carry no layer) to the op they constrain.
A block argument returned as is (a stage input the backward reads too) belongs to the
layer of the first op of the body, in program order, that reads it and has a layer
(again looking through constraints); an argument no such op reads, and a result whose
producer has no layer, are left alone.

Algorithm: per MPMD function (@main and its callees), per forward fragment: collect its
results as above; insert their offload transfers right after the fragment (in result
order) and, for each, one transfer back right before the first backward fragment (program
order) of the mesh that reads it; point the operands of every backward reader of the mesh
at the value brought back. The host copy's type is the result's type with
`memory_kind="pinned_host"` (same mesh, shape and sharding); the copy back has the
result's own type (`dialect_utils.mpmd.with_memory_kind`).
"""

from __future__ import annotations

from collections.abc import Collection

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import mpmd as mpmd_ops

from alpa_mlir.dialect_utils import mpmd
from alpa_mlir.dialect_utils.attributes import layer_of
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode

from .fragments import BACKWARD, FORWARD

HOST_MEMORY = mpmd.MemoryKind.PINNED_HOST


def offload_activations(module: ir.Module, layers: Collection[int]) -> int:
    """Rewrite `module` in place (module docstring); returns the number of values
    offloaded (per forward fragment result, not per microbatch)."""
    wanted = frozenset(layers)
    if not wanted:
        return 0
    return sum(_offload_function(f, wanted) for f in mpmd.program_functions(module).values())


def _offload_function(func_op: ir.Operation, layers: frozenset[int]) -> int:
    graph = FunctionGraph(func_op)
    count = 0
    for node in graph.ops:
        if node.name == mpmd.FRAGMENT and mpmd.fragment_kind(node.op) == FORWARD:
            stashed = _stashed(graph, node, layers)
            _rewrite(node, stashed)
            count += len(stashed)
    return count


def _stashed(graph: FunctionGraph, forward: OpNode, layers: frozenset[int]
             ) -> list[tuple[ValueNode, list[tuple[OpNode, int]]]]:
    """The results of `forward` to offload, each with the (backward fragment, operand
    number) pairs that read it, first reader first."""
    mesh = mpmd.fragment_mesh(forward.op)
    found = []
    for result, layer in zip(forward.results, _result_layers(forward.op), strict=True):
        if layer not in layers or mpmd.memory_kind_of(result.value.type) is not mpmd.MemoryKind.DEVICE:
            continue
        readers = sorted(((user, k) for user, k in graph.users(result)
                          if user.name == mpmd.FRAGMENT and mpmd.fragment_kind(user.op) == BACKWARD
                          and mpmd.fragment_mesh(user.op) == mesh), key=lambda r: r[0].index)
        if readers:
            found.append((result, readers))
    return found


def _rewrite(forward: OpNode, stashed: list[tuple[ValueNode, list[tuple[OpNode, int]]]]) -> None:
    after = forward.op
    for result, readers in stashed:
        value = result.value
        host_type = mpmd.with_memory_kind(value.type, HOST_MEMORY)
        offload = mpmd_ops.TransferOp(host_type, value, loc=forward.op.location, ip=ir.InsertionPoint.after(after))
        after = offload.operation
        first = readers[0][0].op
        back = mpmd_ops.TransferOp(value.type, offload.result, loc=first.location, ip=ir.InsertionPoint(first))
        for reader, k in readers:
            reader.op.operands[k] = back.result


def _result_layers(fragment: ir.Operation) -> list[int | None]:
    """The layer of each result of a fragment (module docstring), None where it has none."""
    body = FunctionGraph(fragment)
    return [_layer(body, v) for v in body.returned]


def _layer(body: FunctionGraph, v: ValueNode) -> int | None:
    while True:
        producer = body.producer(v)
        if producer is None:
            return _first_reader_layer(body, v)
        layer = layer_of(producer)
        if layer is not None or producer.name not in mpmd.SHARDING_ONLY_SDY_OPS:
            return layer
        v = producer.operands[0]


def _first_reader_layer(body: FunctionGraph, arg: ValueNode) -> int | None:
    """The layer of the first op of `body` that reads `arg` and has one, looking through
    the sharding constraints of `arg`."""
    first: tuple[int, int] | None = None  # (op index, layer)
    pending, seen = [arg], set()
    while pending:
        v = pending.pop()
        for user in [u for u, _ in body.users(v)] + body.nested_users(v):
            if user.index in seen:
                continue
            seen.add(user.index)
            layer = layer_of(user)
            if layer is None and user.name in mpmd.SHARDING_ONLY_SDY_OPS:
                pending.extend(user.results)
            elif layer is not None and (first is None or user.index < first[0]):
                first = (user.index, layer)
    return None if first is None else first[1]
