"""The strategy graph of one function: a decision node per argument and per op, follow
links, resharding edges, liveness; and its translation into an `ilp.IlpProblem`.

    args ──► op ──► op(follow) ──► ...      node = strategies of one value producer
             ▲        edges carry resharding costs producer layout -> required layout
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode

from .ilp import IlpEdge, IlpNode, IlpPairConstraint, IlpProblem
from .mesh import LogicalMesh
from .spec import TensorSpec, enumerate_specs, replicated, resharding_cost, shard_count
from .strategy import Follow, Free, RuleContext, Strategy, strategies_for

# Replicated copies of an argument cost this fraction of what moving its per-device
# bytes over the fastest link costs: a tie-breaker toward sharded parameters.
REPLICATION_PENALTY = 1e-3


@dataclass
class PlanNode:
    """One decision node: an argument or a top-level op."""

    index: int
    strategies: list[Strategy]
    op: OpNode | None = None  # None for an argument
    arg: ValueNode | None = None
    follow: int | None = None  # plan node whose choice this node copies
    fallback: bool = False  # no rule knew the op: replicated
    free: bool = False  # any layout at no cost (constants, iota, broadcast scalars)

    @property
    def name(self) -> str:
        if self.op is not None:
            return f"{self.op.name}#{self.op.index}"
        assert self.arg is not None
        return f"arg{self.arg.index}"


@dataclass
class StrategyGraph:
    graph: FunctionGraph
    mesh: LogicalMesh
    nodes: list[PlanNode] = field(default_factory=list)
    producer: dict[ir.Value, tuple[int, int]] = field(default_factory=dict)  # value -> (node, result)
    edges: list[IlpEdge] = field(default_factory=list)

    def output_spec(self, value: ValueNode, choices: tuple[int, ...]) -> TensorSpec:
        n, r = self.producer[value.value]
        return self.nodes[n].strategies[choices[n]].outputs[r]

    def root(self, index: int) -> int:
        """The node whose choice `index` copies (itself when it follows nobody)."""
        while self.nodes[index].follow is not None:
            follow = self.nodes[index].follow
            assert follow is not None
            index = follow
        return index

    @property
    def fallbacks(self) -> list[PlanNode]:
        return [n for n in self.nodes if n.fallback]


ArgLayouts = Callable[[ValueNode, list[TensorSpec]], list[TensorSpec]]
# Narrow an op's strategies (options such as force-data-parallel); may return them all.
OpStrategies = Callable[[OpNode, list[Strategy]], list[Strategy]]


def build(
    graph: FunctionGraph,
    ctx: RuleContext,
    donated: frozenset[int] = frozenset(),
    arg_layouts: ArgLayouts | None = None,
    op_strategies: OpStrategies | None = None,
) -> StrategyGraph:
    """The strategy graph of `graph`. `donated` argument indices are aliased to results:
    an elementwise op that can follow such an argument's layout does (the optimizer
    update of a donated parameter keeps the parameter's layout, as the alias requires).
    `arg_layouts(arg, every valid layout)` may narrow an argument's layouts (options such
    as force-data-parallel); it must leave at least one."""
    sg = StrategyGraph(graph, ctx.mesh)
    min_beta = min((b for b in ctx.mesh.beta if b > 0), default=0.0)
    for arg in graph.args:
        specs: list[TensorSpec] = list(enumerate_specs(arg.info.shape, ctx.mesh)) if arg.info.rank else [()]
        if arg_layouts is not None:
            specs = arg_layouts(arg, specs)
        strategies = [
            Strategy(
                "arg",
                (spec,),
                (),
                REPLICATION_PENALTY * min_beta * arg.info.nbytes / shard_count(spec, ctx.mesh),
            )
            for spec in specs
        ]
        _add(sg, PlanNode(len(sg.nodes), strategies, arg=arg), [arg])
    cache: dict[tuple[TensorSpec, TensorSpec, int], float] = {}
    for op in graph.ops:
        result, known = strategies_for(op, ctx)
        if isinstance(result, Follow):
            src, r = _follow_source(sg, op, result, donated)
            strategies = [result.derive(s.outputs[r]) for s in sg.nodes[src].strategies]
            node = PlanNode(len(sg.nodes), strategies, op=op, follow=src)
        elif isinstance(result, Free):
            outputs = tuple(replicated(v.info.rank) for v in op.results)
            free = Strategy("free", outputs, tuple(None for _ in op.operands), 0.0)
            node = PlanNode(len(sg.nodes), [free], op=op, free=True)
        else:
            if op_strategies is not None and known:
                result = op_strategies(op, result)
            node = PlanNode(len(sg.nodes), result, op=op, fallback=not known)
        _add(sg, node, list(op.results))
        _connect(sg, node, cache, ctx.options.allow_all_to_all)
        _connect_captured(sg, node, cache, ctx.options.allow_all_to_all)
    return sg


def _follow_source(sg: StrategyGraph, op: OpNode, follow: Follow, donated: frozenset[int]) -> tuple[int, int]:
    """The producer (node, result) a follow op takes its layout from: not a free producer
    if possible; then a donated argument of the same shape (so its update keeps the
    argument's layout, as the alias requires); then the most layouts; then operand order."""

    def preference(k: int) -> tuple[bool, bool, int]:
        n, _ = sg.producer[op.operands[k].value]
        node, root = sg.nodes[n], sg.nodes[sg.root(n)]
        donated_root = (
            root.arg is not None
            and root.arg.index in donated
            and op.operands[k].info.shape == root.arg.info.shape
        )
        return (not node.free, donated_root, len(node.strategies))

    best = max(follow.operands, key=preference)
    return sg.producer[op.operands[best].value]


def _add(sg: StrategyGraph, node: PlanNode, values: list[ValueNode]) -> None:
    sg.nodes.append(node)
    for r, v in enumerate(values):
        sg.producer[v.value] = (node.index, r)


def _connect(
    sg: StrategyGraph,
    node: PlanNode,
    cache: dict[tuple[TensorSpec, TensorSpec, int], float],
    allow_all_to_all: bool,
) -> None:
    assert node.op is not None
    for k, operand in enumerate(node.op.operands):
        if all(s.inputs[k] is None for s in node.strategies):
            continue
        src, r = sg.producer[operand.value]
        if sg.nodes[src].free:
            continue
        nbytes = operand.info.nbytes
        rows = []
        for s in sg.nodes[src].strategies:
            have = s.outputs[r]
            row = []
            for t in node.strategies:
                want = t.inputs[k]
                if want is None:
                    row.append(0.0)
                    continue
                key = (have, want, nbytes)
                if key not in cache:
                    cache[key] = resharding_cost(have, want, nbytes, sg.mesh, allow_all_to_all)
                row.append(cache[key])
            rows.append(tuple(row))
        sg.edges.append(IlpEdge(src, node.index, tuple(rows)))


def _connect_captured(
    sg: StrategyGraph,
    node: PlanNode,
    cache: dict[tuple[TensorSpec, TensorSpec, int], float],
    allow_all_to_all: bool,
) -> None:
    """Values an op uses inside its regions (a `case` branch returning an outer value) are
    needed whole there: an edge that pays for gathering them."""
    assert node.op is not None
    for value in sg.graph.captured(node.op):
        src, r = sg.producer[value.value]
        if sg.nodes[src].free:
            continue
        want = replicated(value.info.rank)
        rows = []
        for s in sg.nodes[src].strategies:
            key = (s.outputs[r], want, value.info.nbytes)
            if key not in cache:
                cache[key] = resharding_cost(s.outputs[r], want, value.info.nbytes, sg.mesh, allow_all_to_all)
            rows.append(tuple(cache[key] for _ in node.strategies))
        sg.edges.append(IlpEdge(src, node.index, tuple(rows)))


@dataclass(frozen=True)
class ReshardedUse:
    """An operand use whose required layout differs from what its producer made."""

    node: PlanNode
    operand: int
    value: ValueNode
    have: TensorSpec
    want: TensorSpec


def resharded_uses(sg: StrategyGraph, choices: tuple[int, ...]) -> list[ReshardedUse]:
    """Under a plan, every use that needs a reshard (free producers excepted: their
    consumers get their piece locally)."""
    uses = []
    for node in sg.nodes:
        if node.op is None or node.free:
            continue
        strategy = node.strategies[choices[node.index]]
        for k, operand in enumerate(node.op.operands):
            want = strategy.inputs[k]
            if want is None or operand.info.rank == 0 or operand.info.dtype == "token":
                continue
            src, r = sg.producer[operand.value]
            have = sg.nodes[src].strategies[choices[src]].outputs[r]
            if not sg.nodes[src].free and have != want:
                uses.append(ReshardedUse(node, k, operand, have, want))
    return uses


def alias_pairs(sg: StrategyGraph, aliases: dict[int, int]) -> list[IlpPairConstraint]:
    """Donated argument i and result j (`tf.aliasing_output = j`) share a layout."""
    pairs = []
    for i, j in sorted(aliases.items()):
        if j >= len(sg.graph.returned):
            continue
        arg_node = sg.producer[sg.graph.args[i].value][0]
        res_node, r = sg.producer[sg.graph.returned[j].value]
        if res_node == arg_node:
            continue
        if sg.root(res_node) == arg_node and all(
            sa.outputs[0] == sb.outputs[r]
            for sa, sb in zip(sg.nodes[arg_node].strategies, sg.nodes[res_node].strategies, strict=True)
        ):
            continue  # the result follows the argument layout for layout: always satisfied
        allowed = tuple(
            (a, b)
            for a, sa in enumerate(sg.nodes[arg_node].strategies)
            for b, sb in enumerate(sg.nodes[res_node].strategies)
            if sa.outputs[0] == sb.outputs[r]
        )
        if allowed:
            pairs.append(IlpPairConstraint(arg_node, res_node, allowed))
    return pairs


def _last_uses(sg: StrategyGraph) -> dict[int, int]:
    """Per plan node, the index of the last op using its outputs (the op count for
    returned values); captured uses inside regions count."""
    last_use: dict[int, int] = {}
    for op in sg.graph.ops:
        for operand in [*op.operands, *sg.graph.captured(op)]:
            last_use[sg.producer[operand.value][0]] = op.index
    for v in sg.graph.returned:
        last_use[sg.producer[v.value][0]] = len(sg.graph.ops)
    return last_use


def live_sets(sg: StrategyGraph) -> list[tuple[int, ...]]:
    """Plan nodes whose outputs are alive at each op (arguments live throughout): a sweep
    over [producer, last use] intervals."""
    end = len(sg.graph.ops)
    last_use = _last_uses(sg)
    live = {n.index for n in sg.nodes if n.arg is not None}
    expiring: dict[int, list[int]] = {}
    sets = []
    op_nodes = {n.op.index: n.index for n in sg.nodes if n.op is not None}
    for t in range(end):
        node = op_nodes.get(t)
        if node is not None:
            live.add(node)
            expiring.setdefault(last_use.get(node, t), []).append(node)
        sets.append(tuple(sorted(live)))
        for done in expiring.pop(t, []):
            live.discard(done)
    return sets


def peak_bytes(sg: StrategyGraph, choices: tuple[int, ...]) -> float:
    """Estimated peak per-device bytes of live values under a plan: arguments throughout,
    each op's results from the op to their last use (no buffer reuse, no fusion)."""
    last_use = _last_uses(sg)

    def size(node: PlanNode) -> float:
        values = [node.arg] if node.arg is not None else list(node.op.results) if node.op is not None else []
        outputs = node.strategies[choices[node.index]].outputs
        return sum(v.info.nbytes / shard_count(outputs[r], sg.mesh) for r, v in enumerate(values))

    live = sum(size(n) for n in sg.nodes if n.arg is not None)
    freed: dict[int, float] = {}
    peak = live
    for node in sg.nodes:
        if node.op is None:
            continue
        t = node.op.index
        live += size(node)
        peak = max(peak, live)
        freed[last_use.get(node.index, t)] = freed.get(last_use.get(node.index, t), 0.0) + size(node)
        live -= freed.pop(t, 0.0)
    return peak


def to_problem(
    sg: StrategyGraph,
    pairs: list[IlpPairConstraint],
    memory_budget: float | None,
) -> IlpProblem:
    mesh = sg.mesh
    nodes = []
    for n in sg.nodes:
        values = [n.arg] if n.arg is not None else list(n.op.results) if n.op is not None else []
        memory = tuple(
            sum(v.info.nbytes / shard_count(s.outputs[r], mesh) for r, v in enumerate(values))
            for s in n.strategies
        )
        nodes.append(IlpNode(tuple(s.cost for s in n.strategies), n.follow, memory, n.name))
    return IlpProblem(
        tuple(nodes),
        tuple(sg.edges),
        tuple(pairs),
        tuple(live_sets(sg)) if memory_budget is not None else (),
        memory_budget,
    )
