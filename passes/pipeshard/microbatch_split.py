"""Gradient accumulation as the passes run it (alpa-gradient-accumulation,
alpa-stage-construction): `@alpa.grad_marker`s removed, the microbatch analysis
(`microbatch.analyze_microbatches`) with the pass's checks and diagnostics, and the
rewrite (`accumulation.split_step`) with its failures reported through the pass's context.
"""

from __future__ import annotations

from collections.abc import Sequence

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.attributes import GRAD_MARKED_ATTR, GRAD_MARKER
from alpa_mlir.dialect_utils.graph import FunctionGraph

from ..pass_base import PassContext
from .accumulation import SplitStep, split_step
from .microbatch import MicrobatchError, MicrobatchSplit, analyze_microbatches


def microbatch_split(graph: FunctionGraph, main: ir.Operation, ctx: PassContext, pass_name: str,
                     num_microbatches: int, batch: Sequence[int],
                     allow_statistics: bool) -> MicrobatchSplit:
    """The analysis of the step whose batch arguments are `batch`, with the pass's checks
    and diagnostics."""
    if num_microbatches < 1:
        ctx.fail(f"{pass_name}: num-microbatches must be >= 1, got {num_microbatches}", main.location)
    if not batch:
        ctx.fail(f"{pass_name}: no batch argument: no argument outside the state has a batch dim "
                 "(name them with batch-args=)", main.location)
    marked = _marked(main)
    try:
        split = analyze_microbatches(graph, batch, num_microbatches, allow_statistics=allow_statistics,
                                     marked=marked)
    except MicrobatchError as e:
        ctx.fail(f"{pass_name}: {e}", e.location or main.location)
    per_microbatch = [*split.statistics, *split.cumulative]
    if per_microbatch and num_microbatches > 1:
        what = [f"{len(split.statistics)} batch statistics"] if split.statistics else []
        if split.cumulative:
            what.append(f"{len(split.cumulative)} cumulative reductions along the batch")
        ctx.warning(
            f"{' and '.join(what)} are computed per microbatch "
            "(allow-per-microbatch-statistics=true): results differ from the full-batch step",
            graph.ops[min(per_microbatch)].location)
    return split


def remove_grad_markers(main: ir.Operation) -> ir.Operation:
    """Replace each `custom_call @alpa.grad_marker` by its operands, remembering them:
    the producing op gets `alpa.grad_marked = [result numbers]` (an argument passed
    straight to a marker is batch-free and needs no mark)."""
    block = main.regions[0].blocks[0]
    for op in list(block.operations):
        operation = op.operation
        attrs = operation.attributes
        if operation.name != "stablehlo.custom_call" or "call_target_name" not in attrs:
            continue
        if ir.StringAttr(attrs["call_target_name"]).value != GRAD_MARKER:
            continue
        for operand, result in zip(operation.operands, operation.results, strict=True):
            owner = operand.owner
            if not isinstance(owner, ir.Block):
                producer = owner.operation
                marks = list(ir.DenseI64ArrayAttr(producer.attributes[GRAD_MARKED_ATTR])) \
                    if GRAD_MARKED_ATTR in producer.attributes else []
                number = list(producer.results).index(operand)
                producer.attributes[GRAD_MARKED_ATTR] = ir.DenseI64ArrayAttr.get(sorted({*marks, number}))
            result.replace_all_uses_with(operand)
        operation.erase()
    return main


def _marked(main: ir.Operation) -> list[ir.Value]:
    found: list[ir.Value] = []
    for op in main.regions[0].blocks[0].operations:
        operation = op.operation
        if GRAD_MARKED_ATTR in operation.attributes:
            found.extend(operation.results[k] for k in ir.DenseI64ArrayAttr(operation.attributes[GRAD_MARKED_ATTR]))
            del operation.attributes[GRAD_MARKED_ATTR]
    return found


def apply_split(module: ir.Module, main: ir.Operation, graph: FunctionGraph,
                split: MicrobatchSplit, ctx: PassContext) -> SplitStep:
    try:
        return split_step(module, main, graph, split)
    except MicrobatchError as e:
        ctx.fail(str(e), e.location or main.location)
