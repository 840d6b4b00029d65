"""alpa-gradient-accumulation: split a training step into microbatches (DESIGN 4.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.attributes import GRAD_MARKED_ATTR, GRAD_MARKER, donated_args
from alpa_mlir.dialect_utils.graph import FunctionGraph

from .inline_calls import inlined_main
from .pass_base import Pass, PassContext
from .pipeshard.accumulation import SplitStep, split_step
from .pipeshard.microbatch import MicrobatchError, MicrobatchSplit, analyze_microbatches


@dataclass(frozen=True)
class GradientAccumulationPass(Pass):
    """Run a training step as M microbatches whose gradient sums are accumulated, then
    apply the update once (Alpa's gradient accumulation).

    Reads: @main, a training step whose batch arguments (default: the arguments that
    are not donated) carry the batch in dim 0. func.call helpers are inlined first.
    Writes: a private @microbatch function (the forward and backward work of one
    microbatch, every batch dim divided by M, adding its sums over the batch into
    accumulators it receives and returns), and @main (same signature) slicing each batch
    argument into M parts, calling @microbatch once per part (`alpa.microbatch = k`)
    and running the rest of the step (the optimizer update) once on the accumulated
    sums; `alpa.num_microbatches = M` on @main, `alpa.kind` on the slices
    ("microbatches") and the zero accumulators ("accumulators").
    Algorithm: `pipeshard.microbatch` finds the batch axis of every value (union of the
    dims each op relates, from dim 0 of the batch arguments) and the ops where the batch
    ends; those must be sums (reduce-add, a contraction over the batch, scatter-add), so
    accumulating them over microbatches gives the full-batch values exactly. Ops that
    mix examples otherwise (batch statistics, sorting or slicing over the batch) are
    reported at their location; batch statistics are accepted with
    allow-per-microbatch-statistics=true (each microbatch then normalizes with its own).
    A `stablehlo.custom_call @alpa.grad_marker(%g...)` (an identity) declares its
    operands to be the gradient sums: they, and what they are computed from, run per
    microbatch and are accumulated, whatever reads the marker runs once; the markers are
    removed.
    """

    NAME: ClassVar[str] = "alpa-gradient-accumulation"
    SUMMARY: ClassVar[str] = "split a training step into microbatches with gradient accumulation"

    num_microbatches: int = field(default=1, metadata={"help": "number of microbatches M (divides the batch)"})
    batch_args: tuple[int, ...] = field(
        default=(), metadata={"help": "indices of the batch arguments (default: the arguments not donated)"}
    )
    allow_per_microbatch_statistics: bool = field(
        default=False,
        metadata={"help": "accept batch statistics (batch norm), computed per microbatch"},
    )

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        main = inlined_main(module, ctx, self.NAME)
        graph = FunctionGraph(remove_grad_markers(main))
        split = microbatch_split(graph, main, ctx, self.NAME, self.num_microbatches,
                                 self.batch_args, self.allow_per_microbatch_statistics)
        apply_split(module, main, graph, split, ctx)


def microbatch_split(graph: FunctionGraph, main: ir.Operation, ctx: PassContext, pass_name: str,
                     num_microbatches: int, batch_args: tuple[int, ...],
                     allow_statistics: bool) -> MicrobatchSplit:
    """The analysis, with the pass's checks and diagnostics."""
    if num_microbatches < 1:
        ctx.fail(f"{pass_name}: num-microbatches must be >= 1, got {num_microbatches}", main.location)
    for i in batch_args:
        if not 0 <= i < len(graph.args):
            ctx.fail(f"batch-args names argument {i}, but @main has {len(graph.args)} arguments",
                     main.location)
    batch = batch_args or tuple(sorted(set(range(len(graph.args))) - set(donated_args(main))))
    marked = _marked(main)
    try:
        split = analyze_microbatches(graph, batch, num_microbatches, allow_statistics=allow_statistics,
                                     marked=marked)
    except MicrobatchError as e:
        ctx.fail(f"{pass_name}: {e}", e.location or main.location)
    if split.statistics and num_microbatches > 1:
        ctx.warning(
            f"{len(split.statistics)} batch statistics are computed per microbatch "
            "(allow-per-microbatch-statistics=true): results differ from the full-batch step",
            graph.ops[split.statistics[0]].location)
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
