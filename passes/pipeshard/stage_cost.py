"""Stage costs for the stage DP, from the intra-operator pass's cost model.

Reads the per-microbatch function (`accumulation.split_step`) with `alpa.layer` and
`alpa.phase` on its ops, the cluster, and @main's state arguments. Writes nothing.

t(i..j, submesh, (dp, mp)) = sum over layers l in i..j of the optimum of the auto-sharding
ILP of layer l's forward and backward ops alone, on the logical mesh (dp, mp) of the
cluster (its objective is compute time -- FLOPs / device peak, divided over the devices
an op's output is split across -- plus the collectives' alpha-beta time). Memory per
device, by component: the layer's parameters as the ILP lays them out; its gradient
accumulators (arguments only backward ops read); its optimizer state (split like its
parameters, by bytes); activations = the layer's forward values and forward inputs that
backward ops read, stashed per microbatch in flight; temporaries = the ILP's peak live
bytes, forward and backward as separate programs that XLA fuses within
(`problem.peak_bytes`). With ZeRO (`zero`, level `zero_stage`), the optimizer state, then the
accumulators, then the parameters are split over all the stage's devices: the ILP
chooses among such layouts only (and so charges the gathers they cause), and the
optimizer state counts as split as far as its parameters' dims allow. With
zero-stage=auto a stage cost holds one way per level (`StageCost.alternatives`).

With rematerialization (`remat`, pipeshard.remat): activations = the layer's inputs
that forward ops read from outside the layer, parameters aside (what a stage then keeps
per microbatch), and the latency adds the layer's forward compute (recomputed before the
backward; the forward's collectives are not charged twice). Selective recomputation
stashes what `remat.saved_and_recomputed` says (laid out as the ILP chose) and adds the
compute of the cheap ops it runs again. With memory-plan=auto a
stage cost carries each layer's keep / recompute / selective / offload costs (`memory_plan`) and the
stage DP picks per layer; offloading crosses the cluster's host link.

Grid mode (`grid`, the batch dim of the microbatch function's values): every layer ILP
chooses only among Megatron-style layouts (`sharding.grid_layouts`: the batch over the
logical mesh's x, weight matrices split over y); it prices the baselines of
benchmarks/plan_quality.py and is no pass option (the fragments the pass writes are
sharded freely).

Approximation, on purpose: layers are costed alone, so the resharding between two layers
of the same stage is not charged (Alpa profiles whole ranges instead). That makes the
cost additive, and layers with equal contents (transformer blocks) are solved once per
logical mesh: the cache key is the layer's outlined function text.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import func

from alpa_mlir.dialect_utils.attributes import (
    LAYER_ATTR,
    PHASE_ATTR,
    Phase,
    Residency,
    layer_of,
    phase_of,
)
from alpa_mlir.dialect_utils.graph import FunctionGraph, ValueNode
from alpa_mlir.dialect_utils.inlining import remap_operands
from alpa_mlir.dialect_utils.op_factors import FactorTable, factor_rules

from ..sharding import grid_layouts, problem
from ..sharding.cluster import ClusterSpec
from ..sharding.ilp import SolverOptions, solve
from ..sharding.mesh import LogicalMesh
from ..sharding.spec import TensorSpec, shard_count
from ..sharding.strategy import RuleContext
from . import zero
from .cost_source import StageCost
from .memory_plan import LayerMemory, MemoryPlanMode, offload_seconds
from .remat import saved_and_recomputed
from .step_analysis import op_inputs
from .submesh_space import SubmeshShape

AXES = ("x", "y")


@dataclass(frozen=True)
class LayerCost:
    """One layer on one logical mesh, its activations kept (module docstring)."""

    latency: float  # compute + communication, seconds per microbatch
    compute: float  # the compute part: FLOPs / peak, over the devices the plan splits over
    param_bytes: float
    activation_bytes: float  # stashed per microbatch when kept
    temp_bytes: float
    grad_bytes: float
    optimizer_bytes: float
    input_bytes: float  # stashed per microbatch when recomputed: the layer's forward inputs
    forward_compute: float  # what recomputing the forward costs
    selective_bytes: float  # stashed per microbatch when only its cheap ops are recomputed
    selective_compute: float  # what recomputing those costs
    # Per argument of the outlined layer: the layout the ILP chose for a parameter or a
    # gradient accumulator, None for the others (what the emitted plan must hold)
    state_specs: tuple[TensorSpec | None, ...] = ()

    @property
    def communication(self) -> float:
        return max(self.latency - self.compute, 0.0)


@dataclass
class CostStats:
    solves: int = 0
    cache_hits: int = 0
    seconds: float = 0.0


class LayerCostModel:
    """Costs of layers on logical meshes of `cluster` (module docstring)."""

    def __init__(self, micro: FunctionGraph, num_layers: int, cluster: ClusterSpec,
                 state_bytes: Mapping[int, float], param_inputs: Mapping[int, int],
                 time_limit: float = 30.0, remat: bool = False, zero_stage: zero.ZeroStage | int = 0,
                 memory_plan: MemoryPlanMode = MemoryPlanMode.FIXED,
                 layer_memory: Sequence[Residency] = (),
                 grid: Mapping[ir.Value, int] | None = None) -> None:
        """`state_bytes[l]`: optimizer-state bytes that follow layer l's parameters;
        `param_inputs`: micro-function argument index -> 1 for parameters;
        `zero_stage`: the ZeRO level, or the levels each stage may take (`zero`: every
        stage cost then carries one way per level); `memory_plan`: AUTO gives every stage
        cost its layers' residency options (`memory_plan`), FIXED keeps every layer's
        activations, or recomputes every layer with `remat`, MANUAL does with each layer
        what `layer_memory` says; `grid`: the batch dim of each value of `micro` that
        has one, to cost Megatron-style grid plans (`sharding.grid_layouts`) instead
        of the ILP's free choice."""
        self.micro = micro
        self.cluster = cluster
        self.num_layers = num_layers
        self.state_bytes = state_bytes
        self.param_inputs = param_inputs
        self.time_limit = time_limit
        self.remat = remat
        self.memory_plan = memory_plan
        self.layer_memory = tuple(layer_memory)
        self.levels = (zero_stage.levels if isinstance(zero_stage, zero.ZeroStage)
                       else (zero.check_level(zero_stage),))
        self.grid = grid
        self.stats = CostStats()
        self._grid_dims: dict[int, dict[ir.Value, int]] = {}  # per outlined layer
        self._layers = _layer_ops(micro, num_layers)
        self._keys: dict[int, str] = {}
        self._outlined: dict[int, tuple[ir.Module, ir.Operation, list[ValueNode]]] = {}
        self._factors: dict[int, FactorTable] = {}  # per outlined layer, for every shape
        self._by_key: dict[tuple[str, tuple[int, int], int], LayerCost] = {}
        self._layer_cost: dict[tuple[int, tuple[int, int], int], LayerCost] = {}

    def variant(self, remat: bool | None = None, memory_plan: MemoryPlanMode | None = None,
                levels: Sequence[int] | None = None) -> LayerCostModel:
        """The same model under another policy (fixed remat, memory plan, ZeRO levels),
        sharing the layer costs solved so far and to come."""
        other = copy.copy(self)
        if remat is not None:
            other.remat = remat
        if memory_plan is not None:
            other.memory_plan = memory_plan
        if levels is not None:
            other.levels = tuple(zero.check_level(level) for level in levels)
        return other

    def mesh(self, shape: tuple[int, int]) -> LogicalMesh:
        return self.cluster.logical_mesh(shape, AXES)

    def layer(self, layer: int, shape: tuple[int, int], level: int | None = None) -> LayerCost:
        """Layer `layer` on the logical mesh `shape` under ZeRO `level` (default: the first
        of the levels)."""
        level = self.levels[0] if level is None else level
        found = self._layer_cost.get((layer, shape, level))
        if found is not None:
            return found
        _, fn, outside = self._outline(layer)
        key = (self._keys[layer], shape, level)
        cost = self._by_key.get(key)
        if cost is None:
            started = time.perf_counter()
            cost = self._solve(fn, outside, layer, shape, level)
            self.stats.solves += 1
            self.stats.seconds += time.perf_counter() - started
            self._by_key[key] = cost
        else:
            self.stats.cache_hits += 1
        self._layer_cost[(layer, shape, level)] = cost
        return cost

    def compute(self, first: int, last: int, shape: tuple[int, int],
                residency: Sequence[Residency] = (), level: int | None = None) -> float:
        """The compute part of t(first..last) on `shape` under ZeRO `level`: recomputed
        forwards included, of every layer with remat, else what `residency` recomputes."""
        total = 0.0
        for n, k in enumerate(range(first, last + 1)):
            c = self.layer(k, shape, level)
            way = Residency.RECOMPUTE if self.remat else residency[n] if n < len(residency) else Residency.KEEP
            total += c.compute + {Residency.RECOMPUTE: c.forward_compute,
                                  Residency.SELECTIVE: c.selective_compute}.get(way, 0.0)
        return total

    def state_layouts(self, first: int, last: int, shape: tuple[int, int],
                      level: int | None = None) -> dict[int, TensorSpec]:
        """Microbatch-function argument index -> the layout the costs of layers
        first..last on `shape` (ZeRO `level`) hold it in, for its parameters and gradient
        accumulators (the first layer that reads one decides): the memory the stage cost
        counts is that of these layouts, so the emitted plan must use them."""
        found: dict[int, TensorSpec] = {}
        for k in range(first, last + 1):
            specs = self.layer(k, shape, level).state_specs
            _, _, outside = self._outline(k)
            for v, spec in zip(outside, specs, strict=True):
                if spec is not None and v.is_argument:
                    found.setdefault(v.index, spec)
        return found

    def _memory(self, c: LayerCost) -> LayerMemory:
        return LayerMemory(c.activation_bytes, c.input_bytes, c.forward_compute,
                           offload_seconds(c.activation_bytes, c.compute, self.cluster.host_link),
                           c.selective_bytes, c.selective_compute)

    def stage(self, first: int, last: int, submesh: SubmeshShape, shape: tuple[int, int]) -> StageCost:
        """Layers first..last on `submesh` as `shape`: one way per ZeRO level, the first
        level's carrying the others as alternatives."""
        first_way, *others = (self._stage(first, last, shape, level) for level in self.levels)
        return replace(first_way, alternatives=tuple(others)) if others else first_way

    def _stage(self, first: int, last: int, shape: tuple[int, int], level: int) -> StageCost:
        costs = [self.layer(k, shape, level) for k in range(first, last + 1)]
        if self.memory_plan is MemoryPlanMode.MANUAL:  # each layer as layer_memory says
            ways = [self._memory(c).cost(self.layer_memory[k]) for k, c in zip(range(first, last + 1), costs,
                                                                               strict=True)]
            latency = sum(c.latency + extra for c, (_, extra) in zip(costs, ways, strict=True))
            activations = sum(stashed for stashed, _ in ways)
        elif self.remat:  # every forward runs again before its backward; only inputs are kept
            latency = sum(c.latency + c.forward_compute for c in costs)
            activations = sum(c.input_bytes for c in costs)
        else:
            latency = sum(c.latency for c in costs)
            activations = sum(c.activation_bytes for c in costs)
        layers: tuple[LayerMemory, ...] = ()
        if self.memory_plan is MemoryPlanMode.AUTO:
            layers = tuple(self._memory(c) for c in costs)
        return StageCost(
            latency=latency,
            param_bytes=sum(c.param_bytes for c in costs),
            activation_bytes=activations,
            temp_bytes=max(c.temp_bytes for c in costs),
            grad_bytes=sum(c.grad_bytes for c in costs),
            optimizer_bytes=sum(c.optimizer_bytes for c in costs),
            layers=layers,
            zero_stage=level,
        )

    def _outline(self, layer: int) -> tuple[ir.Module, ir.Operation, list[ValueNode]]:
        found = self._outlined.get(layer)
        if found is not None:
            return found
        graph = self.micro
        ops = self._layers[layer]
        inside = {r.value for i in ops for r in graph.ops[i].results}
        outside: list[ValueNode] = []
        seen: set[ir.Value] = set()
        for i in ops:
            for v in op_inputs(graph, graph.ops[i]):
                if v.value not in inside and v.value not in seen:
                    seen.add(v.value)
                    outside.append(v)
        member = set(ops)
        results = [r for i in ops for r in graph.ops[i].results
                   if graph.result_positions(r)
                   or any(u.index not in member for u, _ in graph.users(r))
                   or any(u.index not in member for u in graph.nested_users(r))]
        with graph.func_op.context, ir.Location.unknown():
            module = ir.Module.create()
            fn = func.FuncOp("layer", ([v.value.type for v in outside], [r.value.type for r in results]),
                             ip=ir.InsertionPoint(module.body))
            block = fn.regions[0].blocks.append(*[v.value.type for v in outside])
            mapping = dict(zip([v.value for v in outside], block.arguments, strict=True))
            ip = ir.InsertionPoint(block)
            for i in ops:
                clone = graph.ops[i].op.clone(ip)
                remap_operands(clone, mapping)
                for name in (LAYER_ATTR, PHASE_ATTR):
                    if name in clone.attributes:
                        del clone.attributes[name]
                for old, new in zip(graph.ops[i].results, clone.results, strict=True):
                    mapping[old.value] = new
            func.ReturnOp([mapping[r.value] for r in results], ip=ip)
        if self.grid is not None:
            self._grid_dims[layer] = {new: self.grid[old] for old, new in mapping.items() if old in self.grid}
        self._keys[layer] = str(fn)
        entry = (module, fn.operation, outside)
        self._outlined[layer] = entry
        return entry

    def _kinds(self, graph: FunctionGraph, outside: Sequence[ValueNode],
               phases: Sequence[Phase]) -> list[zero.StateKind | None]:
        """Per argument of the outlined layer: a parameter, a gradient accumulator (an
        argument of the microbatch function only backward ops read), or neither."""
        kinds: list[zero.StateKind | None] = []
        for arg, v in zip(graph.args, outside, strict=True):
            if v.is_argument and v.index in self.param_inputs:
                kinds.append(zero.StateKind.PARAMETER)
            elif v.is_argument and all(phases[u.index] is not Phase.FORWARD for u, _ in graph.users(arg)):
                kinds.append(zero.StateKind.GRADIENT)
            else:
                kinds.append(None)
        return kinds

    def _solve(self, fn: ir.Operation, outside: Sequence[ValueNode], layer: int,
               shape: tuple[int, int], level: int) -> LayerCost:
        mesh = self.mesh(shape)
        graph = FunctionGraph(fn)
        if layer not in self._factors:
            self._factors[layer] = factor_rules(fn)
        phases = [phase_of(self.micro.ops[i]) for i in self._layers[layer]]
        kinds = self._kinds(graph, outside, phases)
        split = {arg.index for arg, kind in zip(graph.args, kinds, strict=True)
                 if kind is not None and zero.splits(level, kind)}

        dims = self._grid_dims.get(layer) if self.grid is not None else None

        def layouts(arg: ValueNode, specs: list[TensorSpec]) -> list[TensorSpec]:
            if arg.index in split:
                return zero.narrow(specs, mesh)
            if dims is None:
                return specs
            kind = kinds[arg.index]
            return grid_layouts.argument_layouts(specs, dims.get(arg.value), kind is not None,
                                                 kind is zero.StateKind.PARAMETER, mesh)

        ctx = RuleContext.for_cluster(mesh, self.cluster, self._factors[layer])
        ops = None if dims is None else grid_layouts.op_layouts(dims, mesh)
        sg = problem.build(graph, ctx, arg_layouts=layouts, op_strategies=ops)
        solution = solve(problem.to_problem(sg, [], None), SolverOptions(time_limit=self.time_limit))
        choices = solution.choices
        params = param_total = optimizer_share = 0.0
        inputs = activations = grads = 0.0
        for arg, kind in zip(graph.args, kinds, strict=True):
            spec = sg.output_spec(arg, choices)
            held = arg.info.nbytes / shard_count(spec, mesh)
            if kind is zero.StateKind.PARAMETER:
                params += held
                param_total += arg.info.nbytes
                optimizer_share += (zero.split_bytes(arg.info.nbytes, arg.info.shape, spec, mesh)
                                    if zero.splits(level, zero.StateKind.OPTIMIZER) else held)
            elif kind is zero.StateKind.GRADIENT:
                grads += held
            elif any(phases[u.index] is Phase.FORWARD for u, _ in graph.users(arg)):
                inputs += held  # an input of the forward (a batch slice, an activation)
                if any(phases[u.index] is not Phase.FORWARD for u, _ in graph.users(arg)):
                    activations += held  # ... that the backward reads too: kept till then
        # The optimizer state is split like the parameters it follows: by the same
        # fraction of bytes (small replicated vectors do not dilute a large split).
        fraction = optimizer_share / param_total if param_total else 1.0
        optimizer = self.state_bytes.get(layer, 0.0) * fraction
        for node, phase in zip(graph.ops, phases, strict=True):
            if phase is not Phase.FORWARD:
                continue
            for r in node.results:
                if any(phases[u.index] is not Phase.FORWARD for u, _ in graph.users(r)) or graph.result_positions(r):
                    activations += r.info.nbytes / shard_count(sg.output_spec(r, choices), mesh)
        op_compute: dict[int, float] = {}  # top-level op -> its compute (regions included)
        for node in sg.nodes:
            if node.top is not None:
                compute = node.strategies[choices[node.index]].compute * node.weight
                op_compute[node.top] = op_compute.get(node.top, 0.0) + compute
        compute = sum(op_compute.values())
        # forward and backward run as separate fragments: what crosses is a buffer
        latency = solution.objective
        peak = problem.peak_bytes(sg, choices, lambda n: n.top is not None and phases[n.top] is Phase.FORWARD)
        forward = sum(c for k, c in op_compute.items() if phases[k] is Phase.FORWARD)
        # selective recomputation: the backward's reads of the forward, through cheap ops
        read_later = [v.value for v, kind in zip(graph.args, kinds, strict=True) if kind is None] + [
            r.value for node, phase in zip(graph.ops, phases, strict=True) if phase is Phase.FORWARD
            for r in node.results]
        read_later = [v for v in read_later
                      if any(phases[u.index] is not Phase.FORWARD for u, _ in graph.users(graph.node(v)))]
        saved, again = saved_and_recomputed(graph, lambda n: phases[n.index] is Phase.FORWARD, read_later)
        kind_of = {arg.value: kind for arg, kind in zip(graph.args, kinds, strict=True)}
        selective = sum(v.info.nbytes / shard_count(sg.output_spec(v, choices), mesh) for v in saved
                        if kind_of.get(v.value) is None)
        again_compute = sum(op_compute.get(k, 0.0) for k in again)
        state_specs = tuple(None if kind is None else sg.output_spec(arg, choices)
                            for arg, kind in zip(graph.args, kinds, strict=True))
        return LayerCost(latency, compute, params, activations, peak, grads, optimizer, inputs, forward,
                         selective, again_compute, state_specs)


def _layer_ops(graph: FunctionGraph, num_layers: int) -> list[list[int]]:
    layers: list[list[int]] = [[] for _ in range(num_layers)]
    for node in graph.ops:
        k = layer_of(node)
        if k is not None and 0 <= k < num_layers:
            layers[k].append(node.index)
    return layers
