"""Strategies of `gather` and `scatter` (embedding lookups and their gradients).

gather: a mesh axis may split an output batch dim together with the matching indices
dim (the operand stays whole: each device looks up its own indices), or an offset dim
together with the operand dim it slices whole (Megatron's hidden split of an embedding).
scatter: an axis may split an update window dim with the matching operand and result
dim (taken whole by the window). Splitting scattered updates would need a combiner-aware
reduction of the operand, so it is not offered: such layouts are gathered first.
"""

from __future__ import annotations

import itertools

from jax.extend.mlir.dialects import stablehlo

from alpa_mlir.dialect_utils.graph import OpNode

from .spec import TensorSpec, is_valid
from .strategy import RuleContext, Strategy


def _enumerate(
    node: OpNode, ctx: RuleContext, roles: list[tuple[str, dict[int, int]]], ranks: list[int]
) -> list[Strategy]:
    """roles: (name, {tensor index: dim}) where tensor index len(node.operands) is the
    result. Returns every valid combination (one role per mesh axis)."""
    mesh = ctx.mesh
    axes = [a for a in range(mesh.ndim) if mesh.shape[a] > 1]
    shapes = [o.info.shape for o in node.operands] + [node.results[0].info.shape]
    out: list[Strategy] = []
    for choice in itertools.product(roles, repeat=len(axes)):
        specs: list[list[list[int]]] = [[[] for _ in range(r)] for r in ranks]
        for axis, (_, dims) in zip(axes, choice, strict=True):
            for t, d in dims.items():
                specs[t][d].append(axis)
        frozen: list[TensorSpec] = [tuple(tuple(d) for d in s) for s in specs]
        if not all(is_valid(s, shape, mesh) for s, shape in zip(frozen, shapes, strict=True)):
            continue
        name = "x".join(n for n, _ in choice) or "single"
        out.append(Strategy(name, (frozen[-1],), tuple(frozen[:-1]), 0.0))
    return out


def gather(node: OpNode, ctx: RuleContext) -> list[Strategy] | None:
    dn = stablehlo.GatherDimensionNumbers(node.op.attributes["dimension_numbers"])
    if list(dn.operand_batching_dims):
        return None
    operand, indices = node.operands[0].info, node.operands[1].info
    result = node.results[0].info
    sizes = node.int_array("slice_sizes") or ()
    offset_dims = list(dn.offset_dims)
    ivd = int(dn.index_vector_dim)
    batch_out = [d for d in range(result.rank) if d not in offset_dims]
    batch_idx = [d for d in range(indices.rank) if d != ivd]
    kept_operand = [d for d in range(operand.rank) if d not in set(dn.collapsed_slice_dims)]
    roles: list[tuple[str, dict[int, int]]] = [("R", {})]
    roles += [(f"B{i}", {1: di, 2: do}) for i, (di, do) in enumerate(zip(batch_idx, batch_out, strict=True))]
    roles += [
        (f"O{i}", {0: dop, 2: dout})
        for i, (dop, dout) in enumerate(zip(kept_operand, offset_dims, strict=True))
        if sizes and sizes[dop] == operand.shape[dop]
    ]
    return _enumerate(node, ctx, roles, [operand.rank, indices.rank, result.rank])


def scatter(node: OpNode, ctx: RuleContext) -> list[Strategy] | None:
    if len(node.operands) != 3:
        return None
    dn = stablehlo.ScatterDimensionNumbers(node.op.attributes["scatter_dimension_numbers"])
    if list(dn.input_batching_dims):
        return None
    operand, indices, updates = (o.info for o in node.operands)
    window = list(dn.update_window_dims)
    kept_operand = [d for d in range(operand.rank) if d not in set(dn.inserted_window_dims)]
    roles: list[tuple[str, dict[int, int]]] = [("R", {})]
    roles += [
        (f"W{i}", {0: dop, 2: dup, 3: dop})
        for i, (dop, dup) in enumerate(zip(kept_operand, window, strict=True))
        if updates.shape[dup] == operand.shape[dop]
    ]
    return _enumerate(node, ctx, roles, [operand.rank, indices.rank, updates.rank, operand.rank])
