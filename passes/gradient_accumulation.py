"""alpa-gradient-accumulation: split a training step into microbatches (DESIGN 4.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.graph import FunctionGraph

from .inline_calls import inlined_main
from .pass_base import Pass, PassContext
from .pipeshard.accumulation import SplitStep, split_step
from .pipeshard.microbatch import MicrobatchError, MicrobatchSplit, analyze_microbatches
from .pipeshard.step_analysis import donated_args

GRAD_MARKER = "alpa.grad_marker"


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
    A `stablehlo.custom_call @alpa.grad_marker` is not supported yet and is reported.
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
        graph = FunctionGraph(main)
        split = microbatch_split(graph, main, ctx, self.NAME, self.num_microbatches,
                                 self.batch_args, self.allow_per_microbatch_statistics)
        apply_split(module, main, graph, split, ctx)


def microbatch_split(graph: FunctionGraph, main: ir.Operation, ctx: PassContext, pass_name: str,
                     num_microbatches: int, batch_args: tuple[int, ...],
                     allow_statistics: bool) -> MicrobatchSplit:
    """The analysis, with the pass's checks and diagnostics."""
    if num_microbatches < 1:
        ctx.fail(f"{pass_name}: num-microbatches must be >= 1, got {num_microbatches}", main.location)
    for node in graph.ops:
        if node.name == "stablehlo.custom_call" and GRAD_MARKER in str(node.attr("call_target_name")):
            ctx.fail(f"{pass_name}: @{GRAD_MARKER} markers are not supported yet", node.location)
    for i in batch_args:
        if not 0 <= i < len(graph.args):
            ctx.fail(f"batch-args names argument {i}, but @main has {len(graph.args)} arguments",
                     main.location)
    batch = batch_args or tuple(sorted(set(range(len(graph.args))) - set(donated_args(main))))
    try:
        split = analyze_microbatches(graph, batch, num_microbatches, allow_statistics=allow_statistics)
    except MicrobatchError as e:
        ctx.fail(f"{pass_name}: {e}", e.location or main.location)
    if split.statistics and num_microbatches > 1:
        ctx.warning(
            f"{len(split.statistics)} batch statistics are computed per microbatch "
            "(allow-per-microbatch-statistics=true): results differ from the full-batch step",
            graph.ops[split.statistics[0]].location)
    return split


def apply_split(module: ir.Module, main: ir.Operation, graph: FunctionGraph,
                split: MicrobatchSplit, ctx: PassContext) -> SplitStep:
    try:
        return split_step(module, main, graph, split)
    except MicrobatchError as e:
        ctx.fail(str(e), e.location or main.location)
