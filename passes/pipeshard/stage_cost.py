"""Stage costs for the stage DP, from the intra-operator pass's cost model.

Reads the per-microbatch function (`accumulation.split_step`) with `alpa.layer` and
`alpa.phase` on its ops, the cluster, and @main's state arguments. Writes nothing.

t(i..j, submesh, (dp, mp)) = sum over layers l in i..j of the optimum of the auto-sharding
ILP of layer l's forward and backward ops alone, on the logical mesh (dp, mp) of the
cluster (its objective is compute time -- FLOPs / device peak, divided over the devices
an op's output is split across -- plus the collectives' alpha-beta time). Memory per
device: the layer's parameters (and optimizer state, split like its parameters by bytes)
as the ILP lays them out, and the gradient accumulators (inputs only backward ops read);
activations = the layer's forward values and forward inputs that backward ops read,
stashed per microbatch in flight; temporaries = the ILP's peak live bytes.

With rematerialization (`remat`, pipeshard.remat): activations = the layer's inputs
that forward ops read from outside the layer, parameters aside (what a stage then keeps
per microbatch), and the latency adds the layer's forward compute (recomputed before the
backward; the forward's collectives are not charged twice).

Approximation, on purpose: layers are costed alone, so the resharding between two layers
of the same stage is not charged (Alpa profiles whole ranges instead). That makes the
cost additive, and layers with equal contents (transformer blocks) are solved once per
logical mesh: the cache key is the layer's outlined function text.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import func

from alpa_mlir.dialect_utils.attributes import LAYER_ATTR, PHASE_ATTR, Phase, layer_of, phase_of
from alpa_mlir.dialect_utils.graph import FunctionGraph, ValueNode
from alpa_mlir.dialect_utils.inlining import remap_operands
from alpa_mlir.dialect_utils.op_factors import FactorTable, factor_rules

from ..sharding import problem
from ..sharding.cluster import ClusterSpec
from ..sharding.ilp import SolverOptions, solve
from ..sharding.mesh import LogicalMesh
from ..sharding.spec import shard_count
from ..sharding.strategy import Options, RuleContext
from .cost_source import StageCost
from .step_analysis import op_inputs
from .submesh_space import SubmeshShape

AXES = ("x", "y")


@dataclass(frozen=True)
class LayerCost:
    latency: float  # compute + communication, seconds per microbatch
    compute: float  # the compute part: FLOPs / peak, over the devices the plan splits over
    param_bytes: float
    activation_bytes: float
    temp_bytes: float

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
                 time_limit: float = 30.0, remat: bool = False) -> None:
        """`state_bytes[l]`: optimizer-state bytes that follow layer l's parameters;
        `param_inputs`: micro-function argument index -> 1 for parameters."""
        self.micro = micro
        self.cluster = cluster
        self.num_layers = num_layers
        self.state_bytes = state_bytes
        self.param_inputs = param_inputs
        self.time_limit = time_limit
        self.remat = remat
        self.stats = CostStats()
        self._layers = _layer_ops(micro, num_layers)
        self._keys: dict[int, str] = {}
        self._outlined: dict[int, tuple[ir.Module, ir.Operation, list[ValueNode]]] = {}
        self._factors: dict[int, FactorTable] = {}  # per outlined layer, for every shape
        self._by_key: dict[tuple[str, tuple[int, int]], LayerCost] = {}
        self._layer_cost: dict[tuple[int, tuple[int, int]], LayerCost] = {}

    def mesh(self, shape: tuple[int, int]) -> LogicalMesh:
        return self.cluster.logical_mesh(shape, AXES)

    def layer(self, layer: int, shape: tuple[int, int]) -> LayerCost:
        found = self._layer_cost.get((layer, shape))
        if found is not None:
            return found
        _, fn, outside = self._outline(layer)
        key = (self._keys[layer], shape)
        cost = self._by_key.get(key)
        if cost is None:
            started = time.perf_counter()
            cost = self._solve(fn, outside, layer, shape)
            self.stats.solves += 1
            self.stats.seconds += time.perf_counter() - started
            self._by_key[key] = cost
        else:
            self.stats.cache_hits += 1
        self._layer_cost[(layer, shape)] = cost
        return cost

    def compute(self, first: int, last: int, shape: tuple[int, int]) -> float:
        """The compute part of t(first..last) on `shape`."""
        return sum(self.layer(k, shape).compute for k in range(first, last + 1))

    def stage(self, first: int, last: int, submesh: SubmeshShape, shape: tuple[int, int]) -> StageCost:
        costs = [self.layer(k, shape) for k in range(first, last + 1)]
        return StageCost(
            latency=sum(c.latency for c in costs),
            param_bytes=sum(c.param_bytes for c in costs),
            activation_bytes=sum(c.activation_bytes for c in costs),
            temp_bytes=max(c.temp_bytes for c in costs),
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
        self._keys[layer] = str(fn)
        entry = (module, fn.operation, outside)
        self._outlined[layer] = entry
        return entry

    def _solve(self, fn: ir.Operation, outside: Sequence[ValueNode], layer: int,
               shape: tuple[int, int]) -> LayerCost:
        mesh = self.mesh(shape)
        graph = FunctionGraph(fn)
        if layer not in self._factors:
            self._factors[layer] = factor_rules(fn)
        ctx = RuleContext(mesh, 1.0 / self.cluster.peak_flops, Options(), self._factors[layer])
        sg = problem.build(graph, ctx)
        solution = solve(problem.to_problem(sg, [], None), SolverOptions(time_limit=self.time_limit))
        choices = solution.choices
        params = 0.0
        param_total = 0.0
        phases = [phase_of(self.micro.ops[i]) for i in self._layers[layer]]
        inputs = activations = resident = 0.0
        for arg, v in zip(graph.args, outside, strict=True):
            if v.is_argument and v.index in self.param_inputs:
                params += arg.info.nbytes / shard_count(sg.output_spec(arg, choices), mesh)
                param_total += arg.info.nbytes
                continue
            held = arg.info.nbytes / shard_count(sg.output_spec(arg, choices), mesh)
            read = {phases[u.index] is Phase.FORWARD for u, _ in graph.users(arg)}
            if True in read:  # an input of the forward (a batch slice, an activation)
                inputs += held
                if False in read:  # ... that the backward reads too: kept till then
                    activations += held
            elif v.is_argument:  # an argument only the backward reads: an accumulator
                resident += held
        # The optimizer state is split like the parameters it follows: by the same
        # fraction of bytes (small replicated vectors do not dilute a large split).
        fraction = params / param_total if param_total else 1.0
        params += self.state_bytes.get(layer, 0.0) * fraction + resident
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
        latency, peak = solution.objective, problem.peak_bytes(sg, choices)
        if self.remat:  # the forward runs again before the backward; only inputs are kept
            forward = sum(c for k, c in op_compute.items() if phases[k] is Phase.FORWARD)
            return LayerCost(latency + forward, compute + forward, params, inputs, peak)
        return LayerCost(latency, compute, params, activations, peak)


def _layer_ops(graph: FunctionGraph, num_layers: int) -> list[list[int]]:
    layers: list[list[int]] = [[] for _ in range(num_layers)]
    for node in graph.ops:
        k = layer_of(node)
        if k is not None and 0 <= k < num_layers:
            layers[k].append(node.index)
    return layers
