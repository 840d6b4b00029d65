"""The strategy graph of one function: a decision node per argument, per op and per
value where control flow meets, follow links, resharding edges, liveness; and its
translation into an `ilp.IlpProblem`.

    args ──► op ──► op(follow) ──► ...      node = strategies of one value producer
             ▲        edges carry resharding costs producer layout -> required layout

Control flow is part of the one graph (docs/cost-model.md, "control flow"):
- `stablehlo.while`: one JOIN node per loop-carried value, whose layout the operand, the
  body and condition arguments, the body's yielded value and the while result share
  (edges from the operand and from the yielded value pay any resharding). The body's
  ops are nodes like any other; their costs, and the edges into them, count
  trip-count times (`dialect_utils.control_flow.static_trip_count`; a loop without a
  static trip count counts once and is listed in `unknown_trip_counts`).
- `stablehlo.case` / `if`: each branch's ops are nodes; one JOIN node per result,
  reached from every branch's yielded value.
- `stablehlo.optimization_barrier`: no node: each result is its operand's value (same
  producer, same layout).
Time is the node index: nodes are created in program order, region bodies inside.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import control_flow
from alpa_mlir.dialect_utils.flops import ELEMENTWISE
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode

from .factor_strategies import strategies_for
from .ilp import IlpEdge, IlpNode, IlpPairConstraint, IlpProblem, Matrix
from .mesh import LogicalMesh
from .spec import TensorSpec, enumerate_specs, replicated, resharding_cost, shard_count
from .strategy import Follow, Free, RuleContext, Strategy

# Replicated copies of an argument cost this fraction of what moving its per-device
# bytes over the fastest link costs: a tie-breaker toward sharded parameters.
REPLICATION_PENALTY = 1e-3


class NodeKind(enum.Enum):
    ARG = "arg"  # a function argument
    OP = "op"  # an op's results; its strategies say what it needs of its operands
    JOIN = "join"  # a loop-carried value or a case result: control flow meets there


@dataclass
class PlanNode:
    """One decision node."""

    index: int
    strategies: list[Strategy]
    kind: NodeKind
    values: tuple[ValueNode, ...]  # the values it lays out, one per strategy output
    op: OpNode | None = None  # OP: the op; JOIN: the while/case it belongs to
    follow: int | None = None  # plan node whose choice this node copies
    fallback: bool = False  # no rule knew the op: replicated
    free: bool = False  # any layout at no cost (constants, iota, broadcast scalars)
    weight: float = 1.0  # times it runs per call of the function (loop trip counts)
    top: int | None = None  # index of the top-level op it is (or is nested in)

    @property
    def arg(self) -> ValueNode | None:
        return self.values[0] if self.kind is NodeKind.ARG else None

    @property
    def name(self) -> str:
        if self.kind is NodeKind.ARG:
            return f"arg{self.values[0].index}"
        assert self.op is not None
        return f"{self.op.name}#{self.index}" + ("" if self.kind is NodeKind.OP else f".{self.values[0].index}")


@dataclass(frozen=True)
class Join:
    """Where a JOIN node's layout is written: the values flowing into it, each an
    operand of `users[i]` (the while, or a region's terminator), and the loop body's
    argument it is (None for a case result)."""

    node: int
    owner: OpNode
    inflows: tuple[ValueNode, ...]
    users: tuple[tuple[ir.Operation, int], ...]  # (op, operand number) per inflow
    body_arg: ir.Value | None


@dataclass
class StrategyGraph:
    graph: FunctionGraph
    mesh: LogicalMesh
    nodes: list[PlanNode] = field(default_factory=list)
    producer: dict[ir.Value, tuple[int, int]] = field(default_factory=dict)  # value -> (node, result)
    edges: list[IlpEdge] = field(default_factory=list)
    joins: list[Join] = field(default_factory=list)
    barriers: list[OpNode] = field(default_factory=list)  # optimization_barrier ops
    uses: list[tuple[int, int]] = field(default_factory=list)  # (producer node, time of use)
    loops: list[tuple[OpNode, int | None]] = field(default_factory=list)  # while ops, trip counts

    @property
    def unknown_trip_counts(self) -> list[OpNode]:
        return [op for op, trip in self.loops if trip is None]

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
_Cache = dict[tuple[TensorSpec, TensorSpec, int], float]


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
        _add(sg, PlanNode(len(sg.nodes), strategies, NodeKind.ARG, (arg,)))
    _Builder(sg, ctx, donated, op_strategies).block(graph, 1.0, None)
    end = len(sg.nodes)
    sg.uses.extend((sg.producer[v.value][0], end) for v in graph.returned)
    return sg


def _add(sg: StrategyGraph, node: PlanNode) -> None:
    sg.nodes.append(node)
    for r, v in enumerate(node.values):
        sg.producer[v.value] = (node.index, r)


class _Builder:
    """Adds the nodes and edges of one block (and, recursively, its regions)."""

    def __init__(self, sg: StrategyGraph, ctx: RuleContext, donated: frozenset[int],
                 op_strategies: OpStrategies | None) -> None:
        self.sg = sg
        self.ctx = ctx
        self.donated = donated
        self.op_strategies = op_strategies
        self.cache: _Cache = {}
        self.matrices: dict[Any, Matrix] = {}

    def block(self, graph: FunctionGraph, weight: float, top: int | None) -> None:
        for op in graph.ops:
            where = op.index if top is None else top
            if op.name == control_flow.WHILE:
                self.loop(graph, op, weight, where)
            elif op.name in (control_flow.CASE, control_flow.IF):
                self.branches(graph, op, weight, where)
            elif op.name == control_flow.OPTIMIZATION_BARRIER:
                for operand, result in zip(op.operands, op.results, strict=True):
                    self.sg.producer[result.value] = self.sg.producer[operand.value]
                self.sg.barriers.append(op)
            else:
                self.op(graph, op, weight, where)

    def op(self, graph: FunctionGraph, op: OpNode, weight: float, top: int) -> None:
        sg = self.sg
        result, known = strategies_for(op, self.ctx)
        index = len(sg.nodes)
        if isinstance(result, Follow):
            src, r, k = _follow_source(sg, op, result, self.donated)
            strategies = [result.derive(k, s.outputs[r]) for s in sg.nodes[src].strategies]
            node = PlanNode(index, strategies, NodeKind.OP, op.results, op, follow=src)
        elif isinstance(result, Free):
            outputs = tuple(replicated(v.info.rank) for v in op.results)
            free = Strategy("free", outputs, tuple(None for _ in op.operands), 0.0)
            node = PlanNode(index, [free], NodeKind.OP, op.results, op, free=True)
        else:
            if self.op_strategies is not None and known:
                result = self.op_strategies(op, result)
            node = PlanNode(index, result, NodeKind.OP, op.results, op, fallback=not known)
        node.weight, node.top = weight, top
        _add(sg, node)
        for k, operand in enumerate(op.operands):
            if any(s.inputs[k] is not None for s in node.strategies):
                self.edge(operand, node, [s.inputs[k] for s in node.strategies], weight)
            else:
                sg.uses.append((sg.producer[operand.value][0], index))
        # Values used inside the op's own regions (a reduce body, a sort comparator)
        # without being operands are needed whole there.
        for value in graph.captured(op) if len(op.op.regions) else ():
            self.edge(value, node, [replicated(value.info.rank)] * len(node.strategies), weight)

    def edge(self, value: ValueNode, node: PlanNode, wants: list[TensorSpec | None], weight: float) -> None:
        """Resharding costs from `value`'s producer into `node`, which needs `wants[j]`
        under its strategy j (None: no requirement); paid `weight` times."""
        sg = self.sg
        src, r = sg.producer[value.value]
        sg.uses.append((src, node.index))
        if sg.nodes[src].free:
            return
        haves = tuple(s.outputs[r] for s in sg.nodes[src].strategies)
        key = (haves, tuple(wants), value.info.nbytes, weight)
        matrix = self.matrices.get(key)  # repeated layers repeat their edges
        if matrix is None:
            matrix = self.matrices[key] = tuple(
                tuple(0.0 if want is None else self.cost(have, want, value.info.nbytes) * weight for want in wants)
                for have in haves
            )
        sg.edges.append(IlpEdge(src, node.index, matrix))

    def cost(self, have: TensorSpec, want: TensorSpec, nbytes: int) -> float:
        key = (have, want, nbytes)
        found = self.cache.get(key)
        if found is None:
            found = self.cache[key] = resharding_cost(have, want, nbytes, self.sg.mesh,
                                                      self.ctx.options.allow_all_to_all)
        return found

    def join(self, owner: OpNode, result: ValueNode, weight: float, top: int,
             block_args: tuple[ir.Value, ...]) -> PlanNode:
        """A JOIN node for one result of `owner`, also producing `block_args`."""
        sg = self.sg
        specs = list(enumerate_specs(result.info.shape, sg.mesh)) if result.info.rank else [()]
        strategies = [Strategy("join", (spec,), ()) for spec in specs]
        node = PlanNode(len(sg.nodes), strategies, NodeKind.JOIN, (result,), owner, weight=weight, top=top)
        _add(sg, node)
        for arg in block_args:
            sg.producer[arg] = (node.index, 0)
        return node

    def region_uses(self, start_node: int, start_use: int) -> None:
        """Values defined before a region that its ops use stay alive to its end."""
        sg = self.sg
        end = len(sg.nodes) - 1
        outer = {src for src, t in sg.uses[start_use:] if src < start_node and t >= start_node}
        sg.uses.extend((src, end) for src in outer)

    def loop(self, graph: FunctionGraph, op: OpNode, weight: float, top: int) -> None:
        sg = self.sg
        trip = control_flow.static_trip_count(op.op)
        sg.loops.append((op, trip))
        inner = weight * (1 if trip is None else trip)
        cond, body = graph.region(op, 0), graph.region(op, 1)
        start_node, start_use = len(sg.nodes), len(sg.uses)
        joins = []
        for r, (operand, result) in enumerate(zip(op.operands, op.results, strict=True)):
            node = self.join(op, result, weight, top, (cond.args[r].value, body.args[r].value))
            self.edge(operand, node, [s.outputs[0] for s in node.strategies], weight)
            joins.append(node)
        self.block(body, inner, top)
        terminator = _terminator(op.op.regions[1])
        for r, (node, yielded) in enumerate(zip(joins, body.returned, strict=True)):
            self.edge(yielded, node, [s.outputs[0] for s in node.strategies], inner)
            sg.joins.append(Join(node.index, op, (op.operands[r], yielded),
                                 ((op.op, r), (terminator, r)), body.args[r].value))
        self.region_uses(start_node, start_use)

    def branches(self, graph: FunctionGraph, op: OpNode, weight: float, top: int) -> None:
        sg = self.sg
        start_node, start_use = len(sg.nodes), len(sg.uses)
        sg.uses.append((sg.producer[op.operands[0].value][0], start_node))
        regions = [graph.region(op, i) for i in range(len(op.op.regions))]
        for region in regions:
            self.block(region, weight, top)
        for r, result in enumerate(op.results):
            node = self.join(op, result, weight, top, ())
            yielded = tuple(region.returned[r] for region in regions)
            for value in yielded:
                self.edge(value, node, [s.outputs[0] for s in node.strategies], weight)
            users = tuple((_terminator(op.op.regions[i]), r) for i in range(len(regions)))
            sg.joins.append(Join(node.index, op, yielded, users, None))
        self.region_uses(start_node, start_use)


def _terminator(region: ir.Region) -> ir.Operation:
    return list(region.blocks[0].operations)[-1].operation


def _follow_source(sg: StrategyGraph, op: OpNode, follow: Follow, donated: frozenset[int]) -> tuple[int, int, int]:
    """The producer (node, result) a follow op takes its layout from, and the operand:
    not a free producer if possible; then a donated argument of the same shape (so its
    update keeps the argument's layout, as the alias requires); then the most layouts;
    then candidate order."""

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
    src, r = sg.producer[op.operands[best].value]
    return src, r, best


@dataclass(frozen=True)
class ReshardedUse:
    """An operand use whose required layout differs from what its producer made."""

    user: ir.Operation  # the op whose operand it is (a region terminator for a yield)
    operand: int
    value: ValueNode
    have: TensorSpec
    want: TensorSpec


def resharded_uses(sg: StrategyGraph, choices: tuple[int, ...]) -> list[ReshardedUse]:
    """Under a plan, every use that needs a reshard (free producers excepted: their
    consumers get their piece locally), values flowing into JOIN nodes included."""
    uses = []

    def check(user: ir.Operation, k: int, operand: ValueNode, want: TensorSpec | None) -> None:
        if want is None or operand.info.rank == 0 or operand.info.dtype == "token":
            return
        src, r = sg.producer[operand.value]
        have = sg.nodes[src].strategies[choices[src]].outputs[r]
        if not sg.nodes[src].free and have != want:
            uses.append(ReshardedUse(user, k, operand, have, want))

    for node in sg.nodes:
        if node.kind is not NodeKind.OP or node.free:
            continue
        assert node.op is not None
        strategy = node.strategies[choices[node.index]]
        for k, operand in enumerate(node.op.operands):
            check(node.op.op, k, operand, strategy.inputs[k])
    for join in sg.joins:
        want = sg.nodes[join.node].strategies[choices[join.node]].outputs[0]
        for value, (user, k) in zip(join.inflows, join.users, strict=True):
            check(user, k, value, want)
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


# XLA's fusion, as liveness sees it: an elementwise or shape op whose every user absorbs
# it into its own loop (an elementwise op, a broadcast, a reshape, a reduction's input)
# writes no buffer of its own; its operands stay alive until those users run instead.
# XLA duplicates such a producer into several users only when it is cheap, so an
# expensive one (a transcendental, a division) with more than one user keeps its buffer.
_FUSED_SHAPE_OPS = frozenset(("stablehlo.broadcast_in_dim", "stablehlo.reshape", "stablehlo.iota"))
_FUSING_USERS = ELEMENTWISE | frozenset(("stablehlo.broadcast_in_dim", "stablehlo.reshape", "stablehlo.reduce"))
_EXPENSIVE = frozenset("stablehlo." + n for n in (
    "atan2", "cbrt", "cosine", "divide", "exponential", "exponential_minus_one", "log", "log_plus_one",
    "logistic", "power", "remainder", "rsqrt", "sine", "sqrt", "tan", "tanh")) | frozenset(
    n for n in ELEMENTWISE if n.startswith("chlo."))


# Which program (fragment) a plan node runs in, where one function is cut into several:
# a value read by another program is that program's input, a buffer of its own.
Fragment = Callable[[PlanNode], object]


def fused_nodes(sg: StrategyGraph, fragment: Fragment | None = None) -> frozenset[int]:
    """Plan nodes XLA fuses into all their users (the rule above): only direct operand
    uses by fusing ops of the same `fragment`, none inside a region, none returned."""
    users: dict[int, set[int]] = {}
    for src, t in sg.uses:
        users.setdefault(src, set()).add(t)
    fused = set()
    for node in sg.nodes:
        if node.kind is not NodeKind.OP or node.op is None or node.index not in users:
            continue
        name = node.op.name
        if name not in ELEMENTWISE and name not in _FUSED_SHAPE_OPS:
            continue
        readers = users[node.index]
        if len(readers) > 1 and name in _EXPENSIVE:
            continue
        if all(_reads_directly(sg, t, node.index) for t in readers) and (
                fragment is None or all(fragment(sg.nodes[t]) == fragment(node) for t in readers)):
            fused.add(node.index)
    return frozenset(fused)


def _reads_directly(sg: StrategyGraph, t: int, src: int) -> bool:
    if t >= len(sg.nodes):
        return False  # returned
    user = sg.nodes[t]
    if user.kind is not NodeKind.OP or user.op is None or user.op.name not in _FUSING_USERS:
        return False
    return any(sg.producer.get(v.value, (-1, 0))[0] == src for v in user.op.operands)


def _last_uses(sg: StrategyGraph, fused: frozenset[int] = frozenset()) -> dict[int, int]:
    """Per plan node, the time (node index) of its outputs' last use (one past the last
    node for returned values); uses inside a region count to the region's end. A
    `fused` node's operands are used until its own last use (its users read them)."""
    last_use: dict[int, int] = {}
    operands: dict[int, set[int]] = {}
    for src, t in sg.uses:
        if t > last_use.get(src, -1):
            last_use[src] = t
        if t in fused:
            operands.setdefault(t, set()).add(src)
    for t in sorted(fused, reverse=True):  # users come later: theirs are final already
        end = last_use.get(t, t)
        for src in operands.get(t, ()):
            last_use[src] = max(last_use.get(src, src), end)
    return last_use


def _node_bytes(sg: StrategyGraph, node: PlanNode, strategy: Strategy) -> float:
    return sum(v.info.nbytes / shard_count(spec, sg.mesh) for v, spec in zip(node.values, strategy.outputs, strict=True))


def live_sets(sg: StrategyGraph, maximal: bool = False) -> list[tuple[int, ...]]:
    """Plan nodes whose outputs are alive at each op or join node (arguments live
    throughout): a sweep over [producer, last use] intervals; nodes XLA fuses into their
    users (`fused_nodes`) hold no buffer and are never live. `maximal`: only the sets
    after which some value dies (and the last): every other one is contained in the
    next, so these bound the peak alike, and there are far fewer of them."""
    fused = fused_nodes(sg)
    last_use = _last_uses(sg, fused)
    live = {n.index for n in sg.nodes if n.kind is NodeKind.ARG}
    expiring: dict[int, list[int]] = {}
    sets = []
    last = max((n.index for n in sg.nodes if n.kind is not NodeKind.ARG), default=-1)
    for node in sg.nodes:
        if node.kind is NodeKind.ARG:
            continue
        t = node.index
        if t not in fused:
            live.add(t)
            expiring.setdefault(max(last_use.get(t, t), t), []).append(t)
        dying = expiring.pop(t, [])
        if not maximal or dying or t == last:
            sets.append(tuple(sorted(live)))
        for done in dying:
            live.discard(done)
    return sets


def peak_bytes(sg: StrategyGraph, choices: tuple[int, ...], fragment: Fragment | None = None) -> float:
    """Estimated peak per-device bytes of live values under a plan: arguments throughout,
    each node's values from the node to their last use, none for nodes XLA fuses into
    their users (`fused_nodes`, within a `fragment`); no other buffer reuse."""
    fused = fused_nodes(sg, fragment)
    last_use = _last_uses(sg, fused)
    live = sum(_node_bytes(sg, n, n.strategies[choices[n.index]]) for n in sg.nodes if n.kind is NodeKind.ARG)
    freed: dict[int, float] = {}
    peak = live
    for node in sg.nodes:
        if node.kind is NodeKind.ARG:
            continue
        t = node.index
        if t not in fused:
            size = _node_bytes(sg, node, node.strategies[choices[t]])
            live += size
            peak = max(peak, live)
            end = max(last_use.get(t, t), t)
            freed[end] = freed.get(end, 0.0) + size
        live -= freed.pop(t, 0.0)
    return peak


def to_problem(
    sg: StrategyGraph,
    pairs: list[IlpPairConstraint],
    memory_budget: float | None,
) -> IlpProblem:
    nodes = []
    for n in sg.nodes:
        memory = tuple(_node_bytes(sg, n, s) for s in n.strategies)
        nodes.append(IlpNode(tuple(s.cost * n.weight for s in n.strategies), n.follow, memory, n.name))
    return IlpProblem(
        tuple(nodes),
        tuple(sg.edges),
        tuple(pairs),
        tuple(live_sets(sg, maximal=True)) if memory_budget is not None else (),
        memory_budget,
    )
