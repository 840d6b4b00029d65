"""Strategies of contractions: `dot_general` and `convolution`.

Every mesh axis (of size > 1) takes one role: split a batch dim, a free (space) dim of
either side, the contracting dim, or none (the work is repeated along that axis). Splitting
the contraction leaves partial sums: an all-reduce over those axes (or, with
prefer-reduce-scatter, a reduce-scatter when the output is also split on them). The
output spec follows from the roles; operand specs are what the roles require.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from alpa_mlir.dialect_utils.graph import OpNode

from .mesh import LogicalMesh
from .spec import TensorSpec, is_valid
from .strategy import PlannedCollective, RuleContext, Strategy


@dataclass(frozen=True)
class Role:
    """Where one mesh axis goes: per operand dim / output dim indices (None: not there)."""

    name: str
    lhs: int | None
    rhs: int | None
    out: int | None
    contracting: bool = False


def _enumerate(node: OpNode, ctx: RuleContext, roles: list[Role]) -> list[Strategy]:
    """All role assignments; as in Alpa, ones that leave a mesh axis idle (role R) are
    offered only when no assignment uses every axis (tiny or indivisible dims)."""
    every_axis = _assignments(node, ctx, [r for r in roles if r.name != "R"])
    return every_axis or _assignments(node, ctx, roles)


def _assignments(node: OpNode, ctx: RuleContext, roles: list[Role]) -> list[Strategy]:
    mesh = ctx.mesh
    axes = [a for a in range(mesh.ndim) if mesh.shape[a] > 1]
    lhs_info, rhs_info = node.operands[0].info, node.operands[1].info
    out_info = node.results[0].info
    strategies: list[Strategy] = []
    for choice in itertools.product(roles, repeat=len(axes)):
        lhs: list[list[int]] = [[] for _ in range(lhs_info.rank)]
        rhs: list[list[int]] = [[] for _ in range(rhs_info.rank)]
        out: list[list[int]] = [[] for _ in range(out_info.rank)]
        reduce_axes: list[int] = []
        for axis, role in zip(axes, choice, strict=True):
            if role.lhs is not None:
                lhs[role.lhs].append(axis)
            if role.rhs is not None:
                rhs[role.rhs].append(axis)
            if role.out is not None:
                out[role.out].append(axis)
            if role.contracting:
                reduce_axes.append(axis)
        lhs_spec = tuple(tuple(d) for d in lhs)
        rhs_spec = tuple(tuple(d) for d in rhs)
        out_spec = tuple(tuple(d) for d in out)
        if not (is_valid(lhs_spec, lhs_info.shape, mesh) and is_valid(rhs_spec, rhs_info.shape, mesh)
                and is_valid(out_spec, out_info.shape, mesh)):
            continue
        compute = ctx.compute_cost(node, (out_spec,)) * _contraction_share(choice, axes, mesh.shape)
        name = "x".join(role.name for role in choice) or "single"
        if not reduce_axes:
            strategies.append(Strategy(name, (out_spec,), (lhs_spec, rhs_spec), compute))
            continue
        group = tuple(reduce_axes)
        local = out_info.nbytes / _pieces(out_spec, mesh.shape)
        scattered = _reduce_scatter_layouts(out_spec, group, out_info.shape, mesh) if ctx.options.prefer_reduce_scatter else []
        for scatter_spec in scattered:
            strategies.append(Strategy(
                name + "-rs", (scatter_spec,), (lhs_spec, rhs_spec),
                compute + mesh.reduce_scatter_cost(local, group),
                (PlannedCollective("reduce-scatter", group, local),),
            ))
        if not scattered:
            strategies.append(Strategy(
                name, (out_spec,), (lhs_spec, rhs_spec),
                compute + mesh.all_reduce_cost(local, group),
                (PlannedCollective("all-reduce", group, local),),
            ))
    return strategies


def _reduce_scatter_layouts(
    out_spec: TensorSpec, group: tuple[int, ...], shape: tuple[int, ...], mesh: LogicalMesh
) -> list[TensorSpec]:
    """Output layouts that scatter the partial sums over `group`: the group's axes
    appended (minor) to one output dim that stays divisible."""
    layouts = []
    for d in range(len(out_spec)):
        spec = tuple(tuple(dim) + group if i == d else tuple(dim) for i, dim in enumerate(out_spec))
        if is_valid(spec, shape, mesh):
            layouts.append(spec)
    return layouts


def _pieces(spec: TensorSpec, shape: tuple[int, ...]) -> int:
    n = 1
    for dim in spec:
        for a in dim:
            n *= shape[a]
    return n


def _contraction_share(choice: tuple[Role, ...], axes: list[int], shape: tuple[int, ...]) -> float:
    """compute_cost divides by the output's pieces; contracting splits also divide the
    work (not the output), so scale by 1/their size."""
    f = 1.0
    for axis, role in zip(axes, choice, strict=True):
        if role.contracting:
            f /= shape[axis]
    return f


def dot_general(node: OpNode, ctx: RuleContext) -> list[Strategy]:
    dims = node.dot_dims
    lhs_rank, rhs_rank = node.operands[0].info.rank, node.operands[1].info.rank
    lhs_free = [d for d in range(lhs_rank) if d not in dims.lhs_batch and d not in dims.lhs_contracting]
    rhs_free = [d for d in range(rhs_rank) if d not in dims.rhs_batch and d not in dims.rhs_contracting]
    nb = len(dims.lhs_batch)
    roles = [Role("R", None, None, None)]
    roles += [Role(f"B{i}", lb, rb, i) for i, (lb, rb) in enumerate(zip(dims.lhs_batch, dims.rhs_batch, strict=True))]
    roles += [Role(f"L{i}", d, None, nb + i) for i, d in enumerate(lhs_free)]
    roles += [Role(f"N{i}", None, d, nb + len(lhs_free) + i) for i, d in enumerate(rhs_free)]
    roles += [
        Role(f"K{i}", lc, rc, None, contracting=True)
        for i, (lc, rc) in enumerate(zip(dims.lhs_contracting, dims.rhs_contracting, strict=True))
    ]
    return _enumerate(node, ctx, roles)


def convolution(node: OpNode, ctx: RuleContext) -> list[Strategy]:
    d = node.conv_dims
    roles = [Role("R", None, None, None)]
    if d.batch_group_count == 1:
        roles.append(Role("B", d.input_batch, None, d.output_batch))
    if d.feature_group_count == 1 and d.batch_group_count == 1:
        roles.append(Role("O", None, d.kernel_output_feature, d.output_feature))
        roles.append(Role("I", d.input_feature, d.kernel_input_feature, None, contracting=True))
    return _enumerate(node, ctx, roles)
