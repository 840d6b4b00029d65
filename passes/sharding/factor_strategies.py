"""Strategies from factors: every op that has an op sharding rule gets its strategies
here, from the rule alone (`dialect_utils.op_factors`).

A strategy is an assignment of mesh axes to the op's factors (each mesh axis of size > 1
to at most one factor). Given one, a tensor dim's layout is the axes of its factors,
major factor first; the required operand layouts and the result layouts follow from the
rule. What an assignment costs:
- compute: the op's FLOPs divided over every mesh axis it uses (each splits the work);
- a split reduction factor leaves partial results on its axes: an all-reduce of the
  results over them (one per split reduction factor, as XLA does it), or, with
  prefer-reduce-scatter, a reduce-scatter onto a result dim;
- factors that need replication, permutation factors (pad, slice, reverse, windows:
  Shardy would move data between devices there) and blocked factors are never split:
  an operand laid out along them is gathered on the edge into the op.
A dim spanning several factors (reshape `32 -> 4x8`) may put axes on a minor factor only
when the factors before it are split whole, as Shardy requires.

Decision nodes (`is_decision`): ops where the operands carry different result factors
(dot_general, convolution, gather) or a reduction factor spans two operands (a
contraction, scatter's updates and indices): every valid assignment is enumerated (as in
Alpa, assignments leaving a mesh axis idle only when none uses every axis). Every other
op follows one operand: that operand's layout gives its factors' axes (as far as the
factors allow), the rest follows from the rule. Where XLA's partitioner runs an op
otherwise than Shardy's rule suggests, the rule is adjusted first (`partitioner_rule`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.collective_kind import CollectiveKind
from alpa_mlir.dialect_utils.flops import op_flops
from alpa_mlir.dialect_utils.graph import OpNode
from alpa_mlir.dialect_utils.op_factors import OpFactors, TensorFactors, factor_symbol

from .mesh import Axes, LogicalMesh
from .spec import TensorSpec, is_valid, replicated, shard_count
from .strategy import Follow, Free, PlannedCollective, RuleContext, Strategy

FactorAxes = tuple[Axes, ...]  # per factor, the mesh axes splitting it (major first)

_SOURCES = frozenset(("stablehlo.constant", "stablehlo.iota"))


def strategies_for(node: OpNode, ctx: RuleContext) -> tuple[list[Strategy] | Follow | Free, bool]:
    """The op's strategies (or follow, or free), and whether a rule knew the op (False:
    the replicated fallback was used and the caller should warn)."""
    if node.name in _SOURCES or (
        node.name == "stablehlo.broadcast_in_dim" and node.operands[0].info.rank == 0
    ):
        return Free(), True
    rule = ctx.factors.get(node.op)
    if rule is None:
        return [replicated_strategy(node, ctx)], False
    rule = partitioner_rule(node, rule)
    if is_decision(rule):
        return (enumerate_strategies(node, rule, ctx) or [replicated_strategy(node, ctx)]), True
    candidates = follow_candidates(node, rule)
    if not candidates:
        return [replicated_strategy(node, ctx)], True
    op = _OpCost.of(node, ctx)

    def derive(k: int, spec: TensorSpec) -> Strategy:
        return _strategy(op, follow_layouts(rule, k, spec, ctx), ctx, "follow")[0]

    return Follow(candidates, derive), True


def fallback_name(node: OpNode, quoted: bool = True) -> str:
    """How a warning (or, unquoted, a report) names an op without a rule:
    `'stablehlo.custom_call' @target`, `'stablehlo.rng'`."""
    name = f"'{node.name}'" if quoted else node.name
    attrs = node.op.attributes
    if node.name == "stablehlo.custom_call" and "call_target_name" in attrs:
        return f"{name} @{ir.StringAttr(attrs['call_target_name']).value}"
    return name


def replicated_strategy(node: OpNode, ctx: RuleContext, name: str = "replicated") -> Strategy:
    """Everything replicated: always correct, costs the full compute on every device."""
    outputs = tuple(replicated(r.info.rank) for r in node.results)
    inputs = tuple(replicated(o.info.rank) if o.info.rank else None for o in node.operands)
    compute = op_flops(node) * ctx.seconds_per_flop(node)
    return Strategy(name, outputs, inputs, compute, compute=compute)


# ----------------------------------------------------------------------------- kinds


def partitioner_rule(node: OpNode, rule: OpFactors) -> OpFactors:
    """The rule as XLA's partitioner executes it, where it differs from Shardy's: a
    `reduce` of several inputs (an argmax) over a split dim is not combined across
    devices; XLA gathers its inputs first, so its reduction factors stay whole here."""
    if node.name == "stablehlo.reduce" and len(node.operands) > 2 and rule.reduction:
        return dataclasses.replace(rule, need_replication=rule.need_replication | rule.reduction)
    return rule


def _factors_of(tensor: TensorFactors) -> set[int]:
    return {f for dim in tensor for f in dim}


def is_decision(rule: OpFactors) -> bool:
    """Two operands each carry a splittable result factor the other lacks, or a
    splittable reduction factor spans two operands (module docstring)."""
    in_results = {f for t in rule.results for f in _factors_of(t) if rule.splittable(f)}
    carried = [_factors_of(t) & in_results for t in rule.operands]
    if any(a - b and b - a for a, b in itertools.combinations(carried, 2)):
        return True
    reductions = [f for f in rule.reduction if rule.splittable(f)]
    return any(sum(f in _factors_of(t) for t in rule.operands) >= 2 for f in reductions)


def follow_candidates(node: OpNode, rule: OpFactors) -> tuple[int, ...]:
    """Operands with a splittable factor that is a result's or a reduction (whose split
    leaves partial results), largest first (ties: operand order): the ones a follow op
    may take its layout from."""
    useful = {f for t in rule.results for f in _factors_of(t)} | rule.reduction
    ranked = [
        (-node.operands[k].info.num_elements, k)
        for k, t in enumerate(rule.operands)
        if k < len(node.operands) and any(rule.splittable(f) for f in _factors_of(t) & useful)
    ]
    return tuple(k for _, k in sorted(ranked))


# ----------------------------------------------------------------------------- layouts


def layout(tensor: TensorFactors, axes: FactorAxes) -> TensorSpec:
    """A tensor's layout under an assignment: per dim, its factors' axes, major first."""
    return tuple(tuple(a for f in dim for a in axes[f]) for dim in tensor)


def _valid(rule: OpFactors, axes: FactorAxes, mesh: LogicalMesh) -> bool:
    """Split factors divide evenly; within a dim, a factor carries axes only when every
    factor before it is split whole."""
    for f, ax in enumerate(axes):
        if ax and rule.sizes[f] % mesh.group_size(ax):
            return False
    for tensor in rule.tensors():
        for dim in tensor:
            partial = False
            for f in dim:
                if axes[f] and partial:
                    return False
                if mesh.group_size(axes[f]) != rule.sizes[f]:
                    partial = True
    return True


@dataclass(frozen=True)
class _OpCost:
    """What an op's strategies cost depends on, read once per op."""

    flops: int
    result_bytes: tuple[int, ...]
    result_shapes: tuple[tuple[int, ...], ...]
    seconds_per_flop: float

    @classmethod
    def of(cls, node: OpNode, ctx: RuleContext) -> _OpCost:
        return cls(op_flops(node), tuple(r.info.nbytes for r in node.results),
                   tuple(r.info.shape for r in node.results), ctx.seconds_per_flop(node))


@dataclass(frozen=True)
class _Layouts:
    """An assignment's layouts: required operand layouts (None for scalars), result
    layouts, the devices the work is divided over, and per split reduction factor its
    axes."""

    inputs: tuple[TensorSpec | None, ...]
    outputs: tuple[TensorSpec, ...]
    pieces: int
    partial: tuple[Axes, ...]


def _layouts(rule: OpFactors, axes: FactorAxes, mesh: LogicalMesh) -> _Layouts:
    return _Layouts(
        tuple(layout(t, axes) if t else None for t in rule.operands),
        tuple(layout(t, axes) for t in rule.results),
        mesh.group_size(tuple(a for ax in axes for a in ax)),
        tuple(axes[f] for f in sorted(rule.reduction) if axes[f]),
    )


def _strategy(op: _OpCost, lay: _Layouts, ctx: RuleContext, name: str,
              scatter: bool = False) -> list[Strategy]:
    """The strategy (or, with `scatter`, the reduce-scatter variants) of an assignment."""
    mesh = ctx.mesh
    compute = op.flops * op.seconds_per_flop / lay.pieces
    if not lay.partial:
        return [Strategy(name, lay.outputs, lay.inputs, compute, compute=compute)]
    local = sum(nbytes / shard_count(spec, mesh) for nbytes, spec in zip(op.result_bytes, lay.outputs, strict=True))
    if scatter and len(lay.outputs) == 1 and len(lay.partial) == 1:
        group = lay.partial[0]
        scattered = [
            Strategy(name + "-rs", (spec,), lay.inputs, compute + mesh.reduce_scatter_cost(local, group),
                     (PlannedCollective(CollectiveKind.REDUCE_SCATTER, group, local),), compute)
            for spec in _reduce_scatter_layouts(lay.outputs[0], group, op.result_shapes[0], mesh)
        ]
        if scattered:
            return scattered
    # XLA combines the partial results of each split reduction factor by its own
    # all-reduce (two contracted dims split on x and on y: two all-reduces).
    cost = compute + sum(mesh.all_reduce_cost(local, group) for group in lay.partial)
    collectives = tuple(PlannedCollective(CollectiveKind.ALL_REDUCE, group, local) for group in lay.partial)
    return [Strategy(name, lay.outputs, lay.inputs, cost, collectives, compute)]


def _reduce_scatter_layouts(out: TensorSpec, group: Axes, shape: tuple[int, ...],
                            mesh: LogicalMesh) -> list[TensorSpec]:
    """Result layouts that scatter the partial sums over `group`: the group's axes
    appended (minor) to one result dim that stays divisible."""
    layouts = []
    for d in range(len(out)):
        spec = tuple(tuple(dim) + group if i == d else tuple(dim) for i, dim in enumerate(out))
        if is_valid(spec, shape, mesh):
            layouts.append(spec)
    return layouts


# ----------------------------------------------------------------------------- decisions


def enumerate_strategies(node: OpNode, rule: OpFactors, ctx: RuleContext) -> list[Strategy]:
    """Every valid assignment of the mesh axes to splittable factors (module docstring)."""
    mesh = ctx.mesh
    mesh_axes = [a for a in range(mesh.ndim) if mesh.shape[a] > 1]
    factors = [f for f in range(len(rule.sizes)) if rule.splittable(f)]
    every_axis = _assignments(node, rule, ctx, mesh_axes, factors, idle=False)
    return every_axis or _assignments(node, rule, ctx, mesh_axes, factors, idle=True)


def _assignments(node: OpNode, rule: OpFactors, ctx: RuleContext, mesh_axes: list[int],
                 factors: list[int], idle: bool) -> list[Strategy]:
    choices: list[int | None] = [*factors, None] if idle else list(factors)
    found: list[Strategy] = []
    op = _OpCost.of(node, ctx)
    for choice in itertools.product(choices, repeat=len(mesh_axes)):
        per_factor: list[list[int]] = [[] for _ in rule.sizes]
        for axis, f in zip(mesh_axes, choice, strict=True):
            if f is not None:
                per_factor[f].append(axis)
        axes = tuple(tuple(ax) for ax in per_factor)
        if not _valid(rule, axes, ctx.mesh):
            continue
        name = "x".join("R" if f is None else factor_symbol(f) for f in choice) or "single"
        found.extend(_strategy(op, _layouts(rule, axes, ctx.mesh), ctx, name, ctx.options.prefer_reduce_scatter))
    return found


# ----------------------------------------------------------------------------- follow


def follow_axes(rule: OpFactors, k: int, spec: TensorSpec, mesh: LogicalMesh) -> FactorAxes:
    """The factor assignment that keeps as much of operand k's layout as the rule
    allows: each dim's axes go to its factors major first, a factor taking axes while
    they divide it; a factor that may not be split, or a minor factor after one not split
    whole, ends the dim (the rest of its axes is dropped)."""
    axes: list[Axes] = [() for _ in rule.sizes]
    for dim, dim_axes in zip(rule.operands[k], spec, strict=True):
        i = 0
        for f in dim:
            if i == len(dim_axes):
                break
            if rule.sizes[f] == 1:
                continue
            if not rule.splittable(f) or axes[f]:
                break
            taken: list[int] = []
            while i < len(dim_axes) and rule.sizes[f] % (math.prod(mesh.shape[a] for a in taken) * mesh.shape[dim_axes[i]]) == 0:
                taken.append(dim_axes[i])
                i += 1
            axes[f] = tuple(taken)
            if mesh.group_size(axes[f]) != rule.sizes[f]:
                break
    return _repair(rule, axes, mesh)


def _repair(rule: OpFactors, axes: list[Axes], mesh: LogicalMesh) -> FactorAxes:
    """Drop axes from factors that another tensor of the op cannot lay out (a minor
    factor of one of its dims split while a major one is not split whole)."""
    changed = True
    while changed:
        changed = False
        for tensor in rule.tensors():
            for dim in tensor:
                partial = False
                for f in dim:
                    if axes[f] and partial:
                        axes[f] = ()
                        changed = True
                    if mesh.group_size(axes[f]) != rule.sizes[f]:
                        partial = True
    return tuple(axes)


def follow_layouts(rule: OpFactors, k: int, spec: TensorSpec, ctx: RuleContext) -> _Layouts:
    """The layouts of the op when it takes operand k's layout `spec` (remembered per
    rule, operand and layout: ops of one shape share them)."""
    key = (rule, k, spec)
    found = ctx.memo.get(key)
    if found is None:
        found = ctx.memo[key] = _layouts(rule, follow_axes(rule, k, spec, ctx.mesh), ctx.mesh)
    return found  # type: ignore[no-any-return]
