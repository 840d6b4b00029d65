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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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
class BatchAxes:
    dims: dict[ir.Value, int]  # every batch-carrying value (nested ones too) -> its batch dim
    conflicts: tuple[TwoBatchDims, ...]  # values with two batch dims (the first one is kept)


def batch_axes(graph: FunctionGraph, batch_args: Iterable[int],
               factors: FactorTable | None = None) -> BatchAxes:
    """The batch dims of every value of `graph` (regions included) linked to dim 0 of
    the batch arguments (module docstring). `factors`: the module's op rules (read from
    the module when not given)."""
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
    return BatchAxes(dims, tuple(conflicts))


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
