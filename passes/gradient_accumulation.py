"""alpa-gradient-accumulation: split a training step into microbatches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.graph import FunctionGraph

from .inlined_main import inlined_main
from .pass_base import Pass, PassContext
from .pipeshard.loops import unroll_batch_loops
from .pipeshard.microbatch_split import apply_split, microbatch_split, remove_grad_markers
from .shared_options import StepArgOptions


@dataclass(frozen=True)
class GradientAccumulationPass(StepArgOptions, Pass):
    """Run a training step as M microbatches whose gradient sums are accumulated, then
    apply the update once (Alpa's gradient accumulation).

    Reads: @main, a training step whose batch arguments carry the batch in dim 0 (default:
    inferred, with or without donation: the arguments outside the state whose dim 0 is
    the batch size; sharding.step_args). func.call helpers are inlined first and loops
    over the batch with a static trip count (scan, fori_loop) unrolled (pipeshard.loops).
    Writes: a private @microbatch function (the forward and backward work of one
    microbatch, every batch dim divided by M, adding its sums over the batch into
    accumulators it receives and returns), and @main (same signature) slicing each batch
    argument into M parts, calling @microbatch once per part (`alpa.microbatch = k`)
    and running the rest of the step (the optimizer update) once on the accumulated
    sums; `alpa.num_microbatches = M` on @main, `alpa.kind` on the slices
    ("microbatches") and the zero accumulators ("accumulators").
    Algorithm: `pipeshard.microbatch` finds the batch axis of every value (union of the
    dims each op relates, from dim 0 of the batch arguments; through a reshape that folds
    the batch behind another dim too, as MoE routing lays out its top-k choices) and the
    ops where the batch ends; those must be sums (reduce-add, a contraction over the batch, scatter-add), so
    accumulating them over microbatches gives the full-batch values exactly. Ops that
    mix examples otherwise (batch statistics, sorting or slicing over the batch) are
    reported at their location; batch statistics and cumulative reductions along the
    batch (MoE capacity positions) are accepted with allow-per-microbatch-statistics=true
    (each microbatch then normalizes, or counts, with its own examples).
    Batch-shaped values that do not read the batch but differ from example to example
    (dropout masks drawn from a key argument, an iota over the batch) are computed once
    in @main for the whole batch and sliced like a batch argument, so each microbatch
    gets the very mask the full-batch step draws for its examples.
    A `stablehlo.custom_call @alpa.grad_marker(%g...)` (an identity) declares its
    operands to be the gradient sums: they, and what they are computed from, run per
    microbatch and are accumulated, whatever reads the marker runs once; the markers are
    removed.
    """

    NAME: ClassVar[str] = "alpa-gradient-accumulation"
    SUMMARY: ClassVar[str] = "split a training step into microbatches with gradient accumulation"

    num_microbatches: int = field(default=1, metadata={"help": "number of microbatches M (divides the batch)"})
    allow_per_microbatch_statistics: bool = field(
        default=False,
        metadata={"help": "accept batch statistics (batch norm) and cumulative sums over the "
                          "batch (MoE capacity), computed per microbatch"},
    )

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        main = remove_grad_markers(inlined_main(module, ctx, self.NAME))
        batch = self.step_args(FunctionGraph(main), ctx, main.location).batch
        unroll_batch_loops(main, batch)
        graph = FunctionGraph(main)
        split = microbatch_split(graph, main, ctx, self.NAME, self.num_microbatches, batch,
                                 self.allow_per_microbatch_statistics)
        apply_split(module, main, graph, split, ctx)
