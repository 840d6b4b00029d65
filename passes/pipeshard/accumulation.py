"""Gradient accumulation rewrite: one training step -> M microbatch calls + apply.

Reads @main and its `MicrobatchSplit` (`microbatch.analyze_microbatches`). Writes, in
place:

    func.func private @microbatch(inputs..., microbatch slices..., accumulators...)
        -> (accumulators + this microbatch's sums...)
    func.func @main(<unchanged signature>) attributes {alpa.num_microbatches = M} {
      <the apply part's own ops that do not need the sums (casts, ...)>
      zeros; slices of each batch argument along its batch dim (M equal parts), and of
      each hoisted batch-shaped value (dropout bits: computed once, above)
      %r0 = call @microbatch(..., slice 0, zeros)    {alpa.microbatch = 0}
      %r1 = call @microbatch(..., slice 1, %r0...)   {alpa.microbatch = 1}
      ...
      <the apply part, reading the accumulated sums instead of the full-batch sums>
    }

Inside @microbatch every batch-carrying value has its batch dim divided by M (result
types, splat constants, full slices along the batch); constants such as 1/B are kept,
so summing the microbatch terms gives the full-batch value. Accepted statistics
(`MicrobatchSplit.statistics`) are scaled by M where per-example work reads them: a
sum over a microbatch divided by the full batch's count is 1/M of the microbatch mean.
Accepted cumulative reductions (`MicrobatchSplit.cumulative`) get a window, and padding,
of the microbatch's size. Op attributes (`alpa.layer`, `alpa.phase`) travel with the clones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from jax.extend.mlir import ir
from jax.extend.mlir.dialects import func, stablehlo

from alpa_mlir.dialect_utils.attributes import (
    KIND_ATTR,
    LAYER_ATTR,
    MICROBATCH_ATTR,
    NUM_MICROBATCHES_ATTR,
    PHASE_ATTR,
)
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode, functions
from alpa_mlir.dialect_utils.inlining import remap_operands

from .microbatch import MicrobatchError, MicrobatchSplit, window_padding
from .step_analysis import op_inputs


@dataclass(frozen=True)
class SplitStep:
    """What `split_step` built."""

    function: ir.Operation
    """The private per-microbatch function."""
    calls: tuple[ir.Operation, ...]
    """Its calls in @main, in microbatch order."""
    outside: tuple[ValueNode, ...]
    """The values of @main its leading `num_inputs + num_slices` arguments stand for."""
    num_inputs: int
    """Leading arguments of the function: values computed outside it."""
    num_slices: int
    """Then one argument per batch argument, and per hoisted batch-shaped value
    (`MicrobatchSplit.hoisted`): its microbatch slice."""
    num_accumulators: int
    """Then the accumulators; the function returns them updated."""


def split_step(module: ir.Module, main: ir.Operation, graph: FunctionGraph,
               split: MicrobatchSplit, name: str = "microbatch") -> SplitStep:
    """Rewrite `main` (whose graph is `graph`) into microbatch calls + apply (module
    docstring). Raises MicrobatchError for a statistic that is not a float."""
    name = _unique_name(module, name)
    m = split.num_microbatches
    inputs = [v for v in split.inputs if not split.sliced(v)]
    slices = [graph.args[a] for a in sorted(split.batch_args)]
    slices += [v for v in split.inputs if not v.is_argument and split.sliced(v)]
    in_types = [v.value.type for v in inputs] + [_shrunk_type(split, v) for v in slices]
    acc_types = [v.value.type for v in split.boundary]
    loc = main.location
    with loc:
        fn = func.FuncOp(name, (in_types + acc_types, acc_types), ip=ir.InsertionPoint(main))
        fn.attributes["sym_visibility"] = ir.StringAttr.get("private")
        entry = fn.regions[0].blocks.append(*in_types, *acc_types)
        _fill(entry, graph, split, [*inputs, *slices])
    calls = _rewrite_main(main, graph, split, fn, inputs, slices, acc_types)
    main.attributes[NUM_MICROBATCHES_ATTR] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), m)
    return SplitStep(fn.operation, tuple(calls), (*inputs, *slices), len(inputs), len(slices),
                     len(acc_types))


def _unique_name(module: ir.Module, base: str) -> str:
    taken = set(functions(module))
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def _shrunk_type(split: MicrobatchSplit, v: ValueNode) -> ir.Type:
    t = ir.RankedTensorType(v.value.type)
    return ir.RankedTensorType.get(list(split.shrunk_shape(v)), t.element_type)


def _fill(entry: ir.Block, graph: FunctionGraph, split: MicrobatchSplit,
          outside: Sequence[ValueNode]) -> None:
    """Clone the microbatch ops into `entry`, shrink, accumulate, return."""
    mapping: dict[ir.Value, ir.Value] = {
        v.value: a for v, a in zip(outside, entry.arguments, strict=False)}
    raw: dict[ir.Value, ir.Value] = {}
    statistics = set(split.statistics)
    ip = ir.InsertionPoint(entry)
    for i in split.micro:
        node = graph.ops[i]
        clone = node.op.clone(ip)
        remap_operands(clone, mapping)
        for old, new in zip(node.results, clone.results, strict=True):
            if old.value in split.dims:
                new.set_type(_shrunk_type(split, old))
            mapping[old.value] = new
        _fix_attributes(clone, node, split)
        if i in statistics:
            for old, new in zip(node.results, clone.results, strict=True):
                raw[old.value] = new
                mapping[old.value] = _scaled(new, split.num_microbatches, node, ip)
    accs = list(entry.arguments)[len(outside):]
    sums = []
    for acc, b in zip(accs, split.boundary, strict=True):
        value = raw.get(b.value, mapping[b.value])
        add = stablehlo.AddOp(acc, value, ip=ip)
        _copy_layer(graph.ops[b.producer].op if b.producer is not None else None, add.operation)
        sums.append(add.result)
    func.ReturnOp(sums, ip=ip)


def _copy_layer(source: ir.Operation | None, *targets: ir.Operation) -> None:
    """New ops belong to the layer (and phase) of the op they serve."""
    if source is None:
        return
    for name in (LAYER_ATTR, PHASE_ATTR):
        if name in source.attributes:
            for t in targets:
                t.attributes[name] = source.attributes[name]


def _scaled(value: ir.Value, m: int, node: OpNode, ip: ir.InsertionPoint) -> ir.Value:
    t = ir.RankedTensorType(value.type)
    if not isinstance(t.element_type, (ir.F32Type, ir.F64Type, ir.F16Type, ir.BF16Type)):
        raise MicrobatchError(f"a statistic over the batch of type {t} is not a float", node)
    splat = ir.DenseElementsAttr.get_splat(t, ir.FloatAttr.get(t.element_type, float(m)))
    factor = stablehlo.ConstantOp(splat, ip=ip)
    scaled = stablehlo.MulOp(value, factor.result, ip=ip)
    _copy_layer(node.op, factor.operation, scaled.operation)
    return scaled.result


def _fix_attributes(clone: ir.Operation, node: OpNode, split: MicrobatchSplit) -> None:
    """Shape-carrying attributes of a clone whose batch dim shrank."""
    m = split.num_microbatches
    name = node.name
    out = node.results[0] if node.results else None
    d = None if out is None else split.dims.get(out.value)
    if name == "stablehlo.constant" and d is not None:
        attr = ir.DenseElementsAttr(clone.attributes["value"])
        clone.attributes["value"] = ir.DenseElementsAttr.get_splat(clone.results[0].type, attr.get_splat_value())
    elif name == "stablehlo.slice" and d is not None:
        limits = list(node.int_array("limit_indices") or ())
        limits[d] //= m
        clone.attributes["limit_indices"] = ir.DenseI64ArrayAttr.get(limits)
    elif name == "stablehlo.dynamic_slice" and d is not None:
        sizes = list(node.int_array("slice_sizes") or ())
        sizes[d] //= m
        clone.attributes["slice_sizes"] = ir.DenseI64ArrayAttr.get(sizes)
    elif node.index in split.cumulative and d is not None:
        window = list(node.int_array("window_dimensions") or ())
        padding = window_padding(node)
        window[d] //= m
        low, high = padding[d]
        padding[d] = (window[d] - 1 if low else 0, window[d] - 1 if high else 0)
        clone.attributes["window_dimensions"] = ir.DenseI64ArrayAttr.get(window)
        clone.attributes["padding"] = ir.DenseIntElementsAttr.get(
            np.asarray(padding, dtype=np.int64), type=ir.IntegerType.get_signless(64))  # type: ignore[call-overload]
    elif name == "stablehlo.gather":
        operand = node.operands[0]
        od = split.dims.get(operand.value)
        sizes = list(node.int_array("slice_sizes") or ())
        if od is not None and sizes[od] == operand.info.shape[od] and sizes[od] > 1:
            sizes[od] //= m
            clone.attributes["slice_sizes"] = ir.DenseI64ArrayAttr.get(sizes)


def _rewrite_main(main: ir.Operation, graph: FunctionGraph, split: MicrobatchSplit,
                  fn: func.FuncOp, inputs: Sequence[ValueNode], slices: Sequence[ValueNode],
                  acc_types: Sequence[ir.Type]) -> list[ir.Operation]:
    block = main.regions[0].blocks[0]
    terminator = list(block.operations)[-1].operation
    in_main = set(split.main)
    boundary = {b.value for b in split.boundary}
    post: list[int] = []
    late: set[ir.Value] = set(boundary)
    for node in graph.ops:
        if node.index in in_main and any(v.value in late for v in op_inputs(graph, node)):
            post.append(node.index)
            late.update(r.value for r in node.results)
    for i in post:
        graph.ops[i].op.move_before(terminator)
    anchor = graph.ops[post[0]].op if post else terminator
    ip = ir.InsertionPoint(anchor)
    m = split.num_microbatches
    with main.location:
        accs = [_zeros(t, ip) for t in acc_types]
        parts = [_microbatch_slices(v, split.dims[v.value], m, ip, graph) for v in slices]
        calls: list[ir.Operation] = []
        callee = ir.FlatSymbolRefAttr.get(str(ir.StringAttr(fn.attributes["sym_name"]).value))
        for k in range(m):
            operands = [v.value for v in inputs] + [p[k] for p in parts] + accs
            call = func.CallOp(list(acc_types), callee, operands, ip=ip)
            call.attributes[MICROBATCH_ATTR] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), k)
            accs = list(call.results)
            calls.append(call.operation)
    for b, acc in zip(split.boundary, accs, strict=True):
        b.value.replace_all_uses_with(acc)
    for i in sorted(set(split.micro) - in_main, reverse=True):
        graph.ops[i].op.erase()
    return calls


def _zeros(t: ir.Type, ip: ir.InsertionPoint) -> ir.Value:
    rt = ir.RankedTensorType(t)
    et = rt.element_type
    if isinstance(et, ir.IntegerType):
        zero: ir.Attribute = ir.IntegerAttr.get(et, 0)
    else:
        zero = ir.FloatAttr.get(et, 0.0)
    op = stablehlo.ConstantOp(ir.DenseElementsAttr.get_splat(rt, zero), ip=ip)
    op.operation.attributes[KIND_ATTR] = ir.StringAttr.get("accumulators")
    return op.result


def _microbatch_slices(v: ValueNode, d: int, m: int, ip: ir.InsertionPoint,
                       graph: FunctionGraph) -> list[ir.Value]:
    if m == 1:
        return [v.value]
    shape = list(v.info.shape)
    size = shape[d] // m
    out: list[ir.Value] = []
    for k in range(m):
        start = [0] * len(shape)
        limit = list(shape)
        start[d], limit[d] = k * size, (k + 1) * size
        op = stablehlo.SliceOp(v.value, start, limit, [1] * len(shape), ip=ip)
        op.operation.attributes[KIND_ATTR] = ir.StringAttr.get("microbatches")
        _copy_layer(None if v.producer is None else graph.ops[v.producer].op, op.operation)
        out.append(op.result)
    return out
