"""Which dim of each value carries the batch: the dims that the ops' factors link to dim 0
of the batch arguments (one union-find over (value, dim) pairs).

The one owner of batch-dim propagation: force-data-parallel and layer construction
(`batch_dims`) and gradient accumulation (`batch_axes`, which also reports values with
two batch dims) read it. Op semantics come from the op sharding rules
(`dialect_utils.op_factors`); nothing here knows an op by name except the data-flow
ops, which have no rule:

- two dims of an op's operands and results are the same axis when one factor is the
  major (first non-trivial) factor of both, and they have the same size or one of them
  spans several factors (a reshape `32 -> 4x8` links the 32-dim to the 4-dim): an
  elementwise op's equal dims, a dot's batch, free and contracted dims, a reduce's kept
  dims, a gather's index batch dims with the result's ...; a slice, pad or concatenate
  along a dim changes its size, so that dim is not linked;
- data flow: an `optimization_barrier` links operand i with result i; a `while` links
  its operand, the condition and body arguments, the body's yielded value and its
  result, position by position; a `case` links each branch's yielded value with the
  result; the ops inside their regions link as anywhere else.
The batch is the connected component of the batch arguments' dim 0, so cotangent seeds
and masks built from constants that meet per-example values join it too, not only what
flows forward from the batch.

*Folded* batch dims (`batch_axes(..., folded=True)`, read by gradient accumulation): a
reshape can fold the batch behind another dim (`[k, B*T, E] -> [k*B*T, E]`, MoE
routing), so that dim's major factor is not the batch and the union-find above does not
reach it. Those are found by following the batch *factor* through the ops' rules: a
value's batch position is (dim, inner), the dim holding the batch and the size of what
lies inside each example's block of it (`T` above); in an op, the factor that covers
that block carries it to the other operands and results, each at the dim holding that
factor and the inner size of the factors after it. Iterated to a fixpoint, forward and
backward. A value reached at two positions is reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import control_flow
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode
from alpa_mlir.dialect_utils.op_factors import FactorTable, OpFactors, factor_rules

Axis = tuple[ir.Value, int]


class DimLinks:
    """Union-find over (value, dim)."""

    def __init__(self) -> None:
        self.parent: dict[Axis, Axis] = {}

    def find(self, a: Axis) -> Axis:
        parent = self.parent
        root = a
        while parent.get(root, root) != root:
            root = parent[root]
        while a != root:
            parent[a], a = root, parent.get(a, a)
        return root

    def union(self, a: Axis, b: Axis) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


@dataclass(frozen=True)
class TwoBatchDims:
    """A value linked to the batch on two dims."""

    value: ValueNode
    first: int
    second: int
    where: OpNode | None  # its producer, in the graph it belongs to (None: an argument)


@dataclass(frozen=True)
class FoldedTwice:
    """An op that meets the batch at two positions of one value (folded dims)."""

    value: ValueNode
    where: OpNode


@dataclass(frozen=True)
class BatchAxes:
    dims: dict[ir.Value, int]  # every batch-carrying value (nested ones too) -> its batch dim
    conflicts: tuple[TwoBatchDims, ...]  # values with two batch dims (the first one is kept)
    folded: dict[ir.Value, int] = field(default_factory=dict)
    """Top-level values whose batch is folded behind another dim -> that dim (only when
    asked for; disjoint from `dims`)."""
    folded_conflicts: tuple[FoldedTwice, ...] = ()
    interleaved: frozenset[ir.Value] = frozenset()
    """The folded values whose batch is not the major part of its dim (other examples'
    elements lie between one example's): a microbatch's part of them is not a block."""


def batch_axes(graph: FunctionGraph, batch_args: Iterable[int],
               factors: FactorTable | None = None, *, folded: bool = False) -> BatchAxes:
    """The batch dims of every value of `graph` (regions included) linked to dim 0 of
    the batch arguments (module docstring). `factors`: the module's op rules (read from
    the module when not given). `folded`: also the top-level values whose batch is
    folded behind another dim."""
    batch_args = list(batch_args)
    table = factor_rules(graph.func_op) if factors is None else factors
    links = DimLinks()
    for graph_of, node in _ops(graph):
        _link_op(links, graph_of, node, table)
    roots = {links.find((graph.args[a].value, 0)) for a in batch_args if graph.args[a].info.rank}
    dims: dict[ir.Value, int] = {}
    conflicts: list[TwoBatchDims] = []
    for graph_of, value in _values(graph):
        for d in range(value.info.rank):
            if links.find((value.value, d)) not in roots:
                continue
            if value.value in dims:
                conflicts.append(TwoBatchDims(value, dims[value.value], d, graph_of.producer(value)))
                continue
            dims[value.value] = d
    if not folded:
        return BatchAxes(dims, tuple(conflicts))
    sizes = {graph.args[a].info.shape[0] for a in batch_args if graph.args[a].info.rank}
    if len(sizes) != 1:
        return BatchAxes(dims, tuple(conflicts))
    batch = sizes.pop()
    position, twice = _folded(graph, table, dims, batch)
    more = {v: p[0] for v, p in position.items() if v not in dims}
    interleaved = frozenset(v for v, (d, inner) in position.items()
                            if v in more and _shape(v)[d] != batch * inner)
    return BatchAxes(dims, tuple(conflicts), more, twice, interleaved)


def batch_dims(graph: FunctionGraph, batch_args: Iterable[int],
               factors: FactorTable | None = None) -> dict[ir.Value, int]:
    """value -> its batch dim, for the values that have one (a value linked on two dims
    keeps the first)."""
    return batch_axes(graph, batch_args, factors).dims


def _ops(graph: FunctionGraph) -> Iterator[tuple[FunctionGraph, OpNode]]:
    """Every op, with the graph it belongs to; ops of while bodies and case branches too."""
    for node in graph.ops:
        yield graph, node
        if node.name in (control_flow.WHILE, control_flow.CASE, control_flow.IF):
            for i in range(len(node.op.regions)):
                yield from _ops(graph.region(node, i))


def _values(graph: FunctionGraph) -> Iterator[tuple[FunctionGraph, ValueNode]]:
    for arg in graph.args:
        yield graph, arg
    for node in graph.ops:
        for r in node.results:
            yield graph, r
        if node.name in (control_flow.WHILE, control_flow.CASE, control_flow.IF):
            for i in range(len(node.op.regions)):
                yield from _values(graph.region(node, i))


def _link_same(links: DimLinks, a: ValueNode, b: ValueNode) -> None:
    if a.info.shape == b.info.shape:
        for d in range(a.info.rank):
            links.union((a.value, d), (b.value, d))


def _link_op(links: DimLinks, graph: FunctionGraph, node: OpNode, factors: FactorTable) -> None:
    name = node.name
    if name == control_flow.OPTIMIZATION_BARRIER:
        for operand, result in zip(node.operands, node.results, strict=True):
            _link_same(links, operand, result)
        return
    if name == control_flow.WHILE:
        cond, body = graph.region(node, 0), graph.region(node, 1)
        for r, result in enumerate(node.results):
            for other in (node.operands[r], cond.args[r], body.args[r], body.returned[r]):
                _link_same(links, other, result)
        return
    if name in (control_flow.CASE, control_flow.IF):
        for i in range(len(node.op.regions)):
            branch = graph.region(node, i)
            for result, yielded in zip(node.results, branch.returned, strict=True):
                _link_same(links, yielded, result)
        return
    rule = factors.get(node.op)
    if rule is not None:
        _link_factors(links, node, rule)


def _link_factors(links: DimLinks, node: OpNode, rule: OpFactors) -> None:
    """Dims sharing a major factor (module docstring): dims of equal size link with each
    other, and a dim spanning several factors links with all of them."""
    values = [*node.operands, *node.results]
    by_size: dict[tuple[int, int], Axis] = {}  # (major factor, dim size) -> first such dim
    spanning: dict[int, list[Axis]] = {}  # major factor -> dims spanning several factors
    for value, tensor in zip(values, rule.tensors(), strict=False):
        if value.info.rank != len(tensor):
            continue
        for d, dim in enumerate(tensor):
            spanned = [f for f in dim if rule.sizes[f] > 1]
            if not spanned:
                continue
            axis = (value.value, d)
            key = (spanned[0], value.info.shape[d])
            if key in by_size:
                links.union(by_size[key], axis)
            else:
                by_size[key] = axis
            if len(spanned) > 1:
                spanning.setdefault(spanned[0], []).append(axis)
    for (major, _), axis in by_size.items():
        for other in spanning.get(major, ()):
            links.union(axis, other)


# ----------------------------------------------------------------------------- folded

Position = tuple[int, int]  # (dim holding the batch, size inside each example's block)


def _folded(graph: FunctionGraph, table: FactorTable, dims: dict[ir.Value, int], batch: int
            ) -> tuple[dict[ir.Value, Position], tuple[FoldedTwice, ...]]:
    """The batch position of every top-level value the batch reaches, through the
    union-find's dims and reshapes that fold it (module docstring), and the ops that
    meet a value at two positions."""
    position: dict[ir.Value, Position] = {}
    for v in (*graph.args, *(r for node in graph.ops for r in node.results)):
        d = dims.get(v.value)
        if d is not None and v.info.shape[d] % batch == 0:
            position[v.value] = (d, v.info.shape[d] // batch)
    twice: dict[ir.Value, FoldedTwice] = {}
    changed = True
    while changed:
        changed = False
        for node in graph.ops:
            carried = _carried(node, table.get(node.op), position, batch)
            if carried is None:  # the positions of its values disagree
                carried = [(v, (-1, 0)) for v in (*node.operands, *node.results) if v.value in position]
            for v, p in carried:
                if v.value not in position:
                    position[v.value] = p
                    changed = True
                elif position[v.value] != p and v.value not in dims and v.value not in twice:
                    twice[v.value] = FoldedTwice(v, node)
    return position, tuple(twice.values())


def _carried(node: OpNode, rule: OpFactors | None, position: dict[ir.Value, Position],
             batch: int) -> list[tuple[ValueNode, Position]] | None:
    """Where `node` carries the batch of its positioned values to its other values; None
    when those values hold it at places that no one factor of the op covers."""
    values = [*node.operands, *node.results]
    if node.name == control_flow.OPTIMIZATION_BARRIER:
        pairs = list(zip(node.operands, node.results, strict=True))
        pairs += [(b, a) for a, b in pairs]
        return [(b, position[a.value]) for a, b in pairs if a.value in position]
    if rule is None:
        return []
    tensors = rule.tensors()
    if len(tensors) != len(values) or any(v.info.rank != len(t) for v, t in zip(values, tensors, strict=True)):
        return []
    covering: tuple[int, int] | None = None  # (factor, batch block's inner size inside it)
    for v, tensor in zip(values, tensors, strict=True):
        p = position.get(v.value)
        if p is None or not _exact(rule, tensor[p[0]], v.info.shape[p[0]]):
            continue
        found = _covering_factor(rule, tensor[p[0]], p[1], batch)
        if found is None or (covering is not None and found != covering):
            return None
        covering = found
    if covering is None:
        return []
    factor, inside = covering
    out: list[tuple[ValueNode, Position]] = []
    for v, tensor in zip(values, tensors, strict=True):
        for d, dim in enumerate(tensor):
            if factor in dim and _exact(rule, dim, v.info.shape[d]):
                after = dim[dim.index(factor) + 1:]
                out.append((v, (d, inside * math.prod(rule.sizes[f] for f in after))))
    return out


def _shape(v: ir.Value) -> list[int]:
    return list(ir.RankedTensorType(v.type).shape)


def _exact(rule: OpFactors, dim: tuple[int, ...], size: int) -> bool:
    """`dim`'s factors make up its size (not so where a slice or pad changes it)."""
    return math.prod(rule.sizes[f] for f in dim) == size


def _covering_factor(rule: OpFactors, dim: tuple[int, ...], inner: int, batch: int
                     ) -> tuple[int, int] | None:
    """The factor of `dim` that holds the whole batch block (`batch` examples of `inner`
    elements each), and the block's inner size measured inside that factor."""
    after = 1
    for f in reversed(dim):
        size = rule.sizes[f]
        if inner % after == 0 and (size * after) % (batch * inner) == 0 and after <= inner:
            return f, inner // after
        after *= size
        if after > inner:
            return None
    return None

