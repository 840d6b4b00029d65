"""alpa-layer-construction: Alpa's operator clustering of a training step into layers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.attributes import (
    LAYER_ATTR,
    NUM_LAYERS_ATTR,
    PHASE_ATTR,
    Phase,
)
from alpa_mlir.dialect_utils.flops import op_flops
from alpa_mlir.dialect_utils.graph import FunctionGraph

from .inlined_main import inlined_main
from .pass_base import Pass, PassContext
from .pipeshard.layer_clustering import (
    ALPA_EPS,
    ALPA_MIN_HEAVY,
    ClusterOp,
    Edge,
    LayerClusteringError,
    LayerCount,
    LayerPlan,
    auto_num_layers,
    cluster_layers,
)
from .pipeshard.loops import unroll_batch_loops
from .pipeshard.remaining_assignment import (
    OpRole,
    RemainingOp,
    assign_remaining,
    parameter_layers,
)
from .pipeshard.step_analysis import (
    StepAnalysis,
    StepAnalysisError,
    analyze_step,
    op_inputs,
)
from .shared_options import StepArgOptions

HEAVY_OPS = frozenset(("stablehlo.dot_general", "stablehlo.convolution"))


@dataclass(frozen=True)
class _Ids:
    """One id space for assign_remaining: forward ops by position, then arguments, then
    the other ops."""

    forward_pos: Mapping[int, int]  # op index -> position among the forward ops
    num_args: int

    def of_op(self, op: int) -> int:
        pos = self.forward_pos.get(op)
        return pos if pos is not None else len(self.forward_pos) + self.num_args + op

    def of_arg(self, arg: int) -> int:
        return len(self.forward_pos) + arg


@dataclass(frozen=True)
class LayerConstructionPass(StepArgOptions, Pass):
    """Cluster the ops of a training step into layers (Alpa's layer construction).

    Reads: @main, a training step (params, opt_state, batch) -> (params', opt_state',
    loss), donated or not (state and batch arguments inferred: sharding.step_args), whose
    loss is a scalar float result (the last one unless loss-result says otherwise).
    func.call helpers are inlined first, and loops over the batch with a static trip
    count (a scan over layers) are unrolled into one copy of the body per iteration
    (pipeshard.loops), so that their iterations can become layers.
    Writes: `alpa.phase = "forward"|"backward"|"apply"` and `alpa.layer = K : i64` on
    every top-level op of @main, `alpa.num_layers = N : i64` on @main. Apart from the
    unrolled loops nothing else changes (the attributes carry no semantics).
    Algorithm: phases by `pipeshard.step_analysis` (forward = ancestors of the loss;
    backward = the rest of the per-example work, traced by propagating the batch dim;
    apply = what sees the batch only through reduced gradients). The forward ops, in
    program order, go through the clustering DP of `pipeshard.layer_clustering`:
    consecutive layers, each within (1 + eps) x the average FLOPs and with at least
    min-heavy dot/conv ops where possible, minimizing the largest activation bytes a layer
    receives (an op reading only parameters, such as a cast to the compute dtype, goes
    with its first reader). layers=auto picks N as Alpa's search_layer_num does. Backward ops go to the
    layer of the forward values they read, apply ops to the layer of the parameter they
    update (optimizer state follows the one parameter whose update reads it;
    `pipeshard.remaining_assignment`).
    """

    NAME: ClassVar[str] = "alpa-layer-construction"
    SUMMARY: ClassVar[str] = "cluster a training step's ops into layers (Alpa's operator clustering)"

    layers: LayerCount = field(
        default=LayerCount(), metadata={"help": "number of layers, or auto (Alpa's layer-count search)"}
    )
    eps: float = field(
        default=ALPA_EPS, metadata={"help": "each layer's FLOPs within (1 + eps) x the average"}
    )
    min_heavy: int = field(
        default=ALPA_MIN_HEAVY,
        metadata={"help": "dot/conv ops per layer, lowered where there are too few"},
    )
    loss_result: int | None = field(
        default=None, metadata={"help": "index of the loss result (default: the last scalar float)"}
    )

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        func = inlined_main(module, ctx, self.NAME)
        args = self.step_args(FunctionGraph(func), ctx, func.location)
        unroll_batch_loops(func, args.batch)
        graph = FunctionGraph(func)
        try:
            step = analyze_step(graph, args, loss_result=self.loss_result)
        except StepAnalysisError as e:
            ctx.fail(f"{self.NAME}: {e}", func.location)
        layer_of, count = self._layers(ctx, graph, step)
        _write(func, graph, step, layer_of, count)

    def _layers(
        self, ctx: PassContext, graph: FunctionGraph, step: StepAnalysis
    ) -> tuple[tuple[int, ...], int]:
        """The layer of every op of `graph`, and the number of layers."""
        forward = _forward_order(graph, step)
        ids = _Ids({op: pos for pos, op in enumerate(forward)}, len(graph.args))
        cluster_ops = [_cluster_op(graph, i) for i in forward]
        edges = _forward_edges(graph, ids)
        location = graph.func_op.location
        wanted = self.layers.count
        if (wanted or 1) > len(forward):
            ctx.fail(
                f"layers={self.layers} needs at least {wanted or 1} forward ops, but @main has "
                f"{len(forward)} (the ancestors of loss result {step.loss_result})",
                location,
            )
        try:
            count = wanted or auto_num_layers(cluster_ops, edges, eps=self.eps, min_heavy=self.min_heavy)
            plan = cluster_layers(cluster_ops, edges, count, self.eps, self.min_heavy)
        except LayerClusteringError as e:
            ctx.fail(f"layer clustering failed: {e}", location)
        if plan.relaxed_heavy:
            ctx.warning(
                f"no partition into {plan.num_layers} layers gives every layer "
                f"{plan.min_heavy_target} dot/conv ops: used {plan.min_heavy_applied}",
                location,
            )
        return _all_layers(graph, step, ids, plan, edges), plan.num_layers


def _forward_order(graph: FunctionGraph, step: StepAnalysis) -> tuple[int, ...]:
    """The forward ops in program order, except that an op reading only parameters (a
    cast of the weights to the compute dtype at the top of a mixed-precision step, a
    transpose of a tied embedding) moves right before the first forward op that reads
    it through such ops: it then joins that op's layer, and the layer reads the
    parameter itself, not a cast made in layer 0. Still a topological order."""
    forward = step.ops_in(Phase.FORWARD)
    position = {op: pos for pos, op in enumerate(forward)}
    params_only: set[int] = set()
    for op in forward:
        inputs = op_inputs(graph, graph.ops[op])
        if inputs and all((v.producer is None and v.index in step.parameter_args)
                          or (v.producer is not None and v.producer in params_only) for v in inputs):
            params_only.add(op)
    anchor = {op: position[op] for op in forward}
    for op in reversed(forward):  # consumers come later: their anchors are final
        if op not in params_only:
            continue
        results = graph.ops[op].results
        users = [u for r in results for u, _ in graph.users(r)] + [u for r in results for u in graph.nested_users(r)]
        readers = [anchor[u.index] for u in users if u.index in position]
        if readers:
            anchor[op] = min(readers)
    return tuple(sorted(forward, key=lambda op: (anchor[op], op not in params_only, position[op])))


def _cluster_op(graph: FunctionGraph, index: int) -> ClusterOp:
    node = graph.ops[index]
    return ClusterOp(float(op_flops(node)), node.name in HEAVY_OPS)


def _forward_edges(graph: FunctionGraph, ids: _Ids) -> list[Edge]:
    """(src, dst, nbytes, result) between forward positions, one per value and reader."""
    edges: set[tuple[int, int, int, int]] = set()
    for op, dst in ids.forward_pos.items():
        for v in op_inputs(graph, graph.ops[op]):
            src = None if v.producer is None else ids.forward_pos.get(v.producer)
            if src is not None:
                edges.add((src, dst, v.info.nbytes, v.index))
    return sorted(edges)


def _all_layers(
    graph: FunctionGraph, step: StepAnalysis, ids: _Ids, plan: LayerPlan, edges: Sequence[Edge]
) -> tuple[int, ...]:
    forward_layer_of = dict(enumerate(plan.layer_of_op()))
    param_layer_of = _argument_layers(graph, step, ids, forward_layer_of)
    others = [
        RemainingOp(
            ids.of_op(node.index),
            OpRole.APPLY if step.phases[node.index] is Phase.APPLY else OpRole.BACKWARD,
            tuple(_input_ids(graph, node.index, ids)),
        )
        for node in graph.ops
        if step.phases[node.index] is not Phase.FORWARD
    ]
    placed = assign_remaining(
        forward_layer_of, others, forward_edges=edges, param_layer_of=param_layer_of,
        input_layers=_batch_input_layers(graph, step, ids, forward_layer_of),
    ).layer_of
    return tuple(
        forward_layer_of[ids.of_op(i)] if p is Phase.FORWARD else placed[ids.of_op(i)]
        for i, p in enumerate(step.phases)
    )


def _batch_input_layers(
    graph: FunctionGraph, step: StepAnalysis, ids: _Ids, forward_layer_of: Mapping[int, int]
) -> dict[int, frozenset[int]]:
    """Id -> layers of the forward ops reading it, for the arguments that are not
    parameters (the batch)."""
    found: dict[int, set[int]] = {}
    for op in step.ops_in(Phase.FORWARD):
        for v in op_inputs(graph, graph.ops[op]):
            if v.producer is None and v.index not in step.parameter_args:
                found.setdefault(ids.of_arg(v.index), set()).add(forward_layer_of[ids.of_op(op)])
    return {i: frozenset(ls) for i, ls in found.items()}


def _input_ids(graph: FunctionGraph, op: int, ids: _Ids) -> list[int]:
    found: list[int] = []
    for v in op_inputs(graph, graph.ops[op]):
        i = ids.of_arg(v.index) if v.producer is None else ids.of_op(v.producer)
        if i not in found:
            found.append(i)
    return found


def _argument_layers(
    graph: FunctionGraph, step: StepAnalysis, ids: _Ids, forward_layer_of: Mapping[int, int]
) -> dict[int, int]:
    """Id -> layer for the state arguments: a parameter lives with the earliest forward
    op that reads it; an optimizer-state argument with the parameters whose updated
    results depend on it, when those all live in one layer (the step counter of Adam feeds
    every update and gets none)."""
    readers: dict[int, list[int]] = {}
    for op in step.ops_in(Phase.FORWARD):
        for v in op_inputs(graph, graph.ops[op]):
            if v.producer is None and v.index in step.parameter_args:
                readers.setdefault(ids.of_arg(v.index), []).append(ids.of_op(op))
    layers = parameter_layers(readers, forward_layer_of)
    deps = _argument_dependencies(graph)
    for arg in sorted(step.parameter_args):
        if ids.of_arg(arg) in layers:
            continue
        found = {
            layers[ids.of_arg(param)]
            for param, result in step.aliases.items()
            if ids.of_arg(param) in layers
            and result < len(graph.returned)
            and _depends(graph, deps, result, arg)
        }
        if len(found) == 1:
            layers[ids.of_arg(arg)] = found.pop()
    return layers


def _argument_dependencies(graph: FunctionGraph) -> list[int]:
    """Per op, a bit mask of the arguments it transitively reads."""
    masks: list[int] = []
    for node in graph.ops:
        mask = 0
        for v in op_inputs(graph, node):
            mask |= (1 << v.index) if v.producer is None else masks[v.producer]
        masks.append(mask)
    return masks


def _depends(graph: FunctionGraph, deps: Sequence[int], result: int, arg: int) -> bool:
    v = graph.returned[result]
    mask = (1 << v.index) if v.producer is None else deps[v.producer]
    return bool(mask >> arg & 1)


def _write(
    func: ir.Operation, graph: FunctionGraph, step: StepAnalysis, layer_of: Sequence[int], count: int
) -> None:
    i64 = ir.IntegerType.get_signless(64)
    for node, phase, layer in zip(graph.ops, step.phases, layer_of, strict=True):
        node.op.attributes[LAYER_ATTR] = ir.IntegerAttr.get(i64, layer)
        node.op.attributes[PHASE_ATTR] = ir.StringAttr.get(phase.value)
    func.attributes[NUM_LAYERS_ATTR] = ir.IntegerAttr.get(i64, count)
