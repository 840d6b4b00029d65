"""Which top-level ops of a training step are forward, backward or apply (pure analysis).

A training step `(params, opt_state, batch) -> (params', opt_state', loss)` as `jax.jit`
exports it, with or without donation: parameters and optimizer state are the *state*
arguments and the batch its batch arguments (`sharding.step_args`: donation, else results
matched to arguments; the arguments with the batch dim), and the loss is a scalar float
result (by default the last one).

Rules, in order, for every top-level op of the function (operands and the values its
regions capture both count as its inputs):

1. FORWARD: an ancestor of the loss result (the loss is computed from its results).
2. BACKWARD: not forward, and either one of its inputs carries the batch (per
   `sharding.batch_dims`: dims the ops' factors link to the batch arguments' dim 0) or
   it is an ancestor of an op result that carries the batch (a cotangent seed, a mask
   or a constant that meets per-example values later).
3. APPLY: everything else: ops that see the batch only through values that no longer
   carry it (a weight gradient after its contraction over the batch, a bias gradient
   after its reduce) and never feed per-example work again: the optimizer update, the
   step counter, gradient transposes and sums.

Why this is workable: gradient accumulation sums per-microbatch values exactly where the
batch ends, and an APPLY op only ever reads such sums or batch-free state, so running it
once on the accumulated values is what the unsplit step does for the ops that are linear
in those sums (transposes, sums of gradient contributions) and, by definition, for the
optimizer update.

Limits: (a) an op that has no op sharding rule (an unknown custom_call) ends the batch,
so per-example work behind it whose results reach a parameter update without meeting
the batch again is classified APPLY; (b) a batch reduction that
is not a sum (a max over the batch feeding only the update) is APPLY-fed as if it were
one: gradient accumulation must check the reductions where the batch ends (alpa-gradient-accumulation does);
(c) the `@alpa.grad_marker` override (alpa-gradient-accumulation) is not read yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.attributes import Phase
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode
from alpa_mlir.passes.sharding.batch_dims import batch_dims
from alpa_mlir.passes.sharding.step_args import StepArgs


class StepAnalysisError(ValueError):
    """The function is not a training step this analysis understands."""


@dataclass(frozen=True)
class StepAnalysis:
    """The phase of every top-level op of a training step, with what decided it."""

    phases: tuple[Phase, ...]  # per op of FunctionGraph.ops, in order
    loss_result: int  # index of the loss among the function's results
    batch_args: frozenset[int]  # arguments whose dim 0 is the batch
    parameter_args: frozenset[int]  # state arguments (params and optimizer state)
    aliases: Mapping[int, int]  # state argument -> the result it is updated into

    def ops_in(self, phase: Phase) -> tuple[int, ...]:
        """Indices of the ops of one phase, in program order."""
        return tuple(i for i, p in enumerate(self.phases) if p is phase)


def default_loss_result(graph: FunctionGraph) -> int | None:
    """The last scalar float result, or None."""
    for i in range(len(graph.returned) - 1, -1, -1):
        info = graph.returned[i].info
        if info.rank == 0 and info.is_float:
            return i
    return None


def op_inputs(graph: FunctionGraph, node: OpNode) -> list[ValueNode]:
    """Operands and the top-level values the op's regions capture."""
    return [*node.operands, *graph.captured(node)]


def ancestors(inputs: Sequence[Sequence[ValueNode]], seeds: Iterable[int]) -> set[int]:
    """The ops in `seeds` and every op they transitively read from; `inputs[i]`: the
    values op i reads (`op_inputs`)."""
    found: set[int] = set()
    stack = list(seeds)
    while stack:
        i = stack.pop()
        if i in found:
            continue
        found.add(i)
        stack.extend(v.producer for v in inputs[i] if v.producer is not None)
    return found


def analyze_step(graph: FunctionGraph, args: StepArgs, *, loss_result: int | None = None) -> StepAnalysis:
    """Classify every top-level op (module docstring); `args` says which arguments are
    state and which the batch (`sharding.step_args`). Raises StepAnalysisError when there
    is no loss to go by."""
    loss = default_loss_result(graph) if loss_result is None else loss_result
    if loss is None:
        raise StepAnalysisError(
            "no scalar float result to treat as the loss (results: "
            + ", ".join(f"tensor<{_type_text(v)}>" for v in graph.returned) + ")"
        )
    if not 0 <= loss < len(graph.returned):
        raise StepAnalysisError(
            f"loss result {loss} is out of range: the function has {len(graph.returned)} results"
        )
    params = frozenset(args.state)
    batch = frozenset(args.batch)
    inputs = [op_inputs(graph, node) for node in graph.ops]
    loss_value = graph.returned[loss]
    forward = set() if loss_value.producer is None else ancestors(inputs, [loss_value.producer])
    per_example = _per_example_ops(graph, inputs, batch_dims(graph, batch))
    phases = tuple(
        Phase.FORWARD if i in forward else Phase.BACKWARD if i in per_example else Phase.APPLY
        for i in range(len(graph.ops))
    )
    return StepAnalysis(phases, loss, batch, params, MappingProxyType(args.updates))


def _per_example_ops(
    graph: FunctionGraph, inputs: Sequence[Sequence[ValueNode]], dims: Mapping[ir.Value, int]
) -> set[int]:
    """Ops that read a batch-carrying value, and the ancestors of batch-carrying results."""
    reads = {i for i, values in enumerate(inputs) if any(v.value in dims for v in values)}
    produces = [node.index for node in graph.ops if any(r.value in dims for r in node.results)]
    return reads | ancestors(inputs, produces)


def _type_text(v: ValueNode) -> str:
    return "x".join([*map(str, v.info.shape), v.info.dtype])
