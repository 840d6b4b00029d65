"""Which dim of each value carries the batch: forward propagation from the batch
arguments (dim 0) through the graph.

A contraction over the batch (a weight gradient), a reduce over it (the loss), or an op
no rule below knows ends the batch: the value has none. Used by force-data-parallel
(batch dims split over the mesh, everything else replicated); gradient accumulation
will split the same dims into microbatches.
"""

from __future__ import annotations

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.flops import ELEMENTWISE
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode

from .rules import reshape_groups

_SAME_DIMS = ELEMENTWISE | {
    "stablehlo.slice", "stablehlo.dynamic_slice", "stablehlo.pad", "stablehlo.reverse",
    "stablehlo.dynamic_update_slice", "stablehlo.concatenate", "stablehlo.sort",
    "stablehlo.reduce_window", "stablehlo.select_and_scatter", "sdy.sharding_constraint",
}


def batch_dims(graph: FunctionGraph, batch_args: frozenset[int]) -> dict[ir.Value, int]:
    """value -> its batch dim, for the values that have one."""
    dims: dict[ir.Value, int] = {
        a.value: 0 for a in graph.args if a.index in batch_args and a.info.rank
    }
    for op in graph.ops:
        d = _through(op, [dims.get(o.value) for o in op.operands])
        if d is None:
            continue
        for r in op.results:
            if d < r.info.rank and (op.name in _SAME_DIMS or r is op.results[0]):
                dims[r.value] = d
    return dims


def _through(op: OpNode, ins: list[int | None]) -> int | None:
    name = op.name
    if name in _SAME_DIMS:
        out_shape = op.results[0].info.shape
        for o, d in zip(op.operands, ins, strict=True):
            if d is not None and o.info.shape[d] == out_shape[d]:
                return d
        return None
    if name == "stablehlo.dot_general":
        dd = op.dot_dims
        for side, d in enumerate(ins[:2]):
            if d is None:
                continue
            batch = dd.lhs_batch if side == 0 else dd.rhs_batch
            contracting = dd.lhs_contracting if side == 0 else dd.rhs_contracting
            if d in contracting:
                continue
            if d in batch:
                return batch.index(d)
            rank = op.operands[side].info.rank
            free = [i for i in range(rank) if i not in batch and i not in contracting]
            offset = len(dd.lhs_batch) + (0 if side == 0 else _free_count(op, 0))
            return offset + free.index(d)
        return None
    if name == "stablehlo.convolution":
        cd = op.conv_dims
        return cd.output_batch if ins[0] == cd.input_batch else None
    if name == "stablehlo.broadcast_in_dim":
        d = ins[0]
        return None if d is None else op.broadcast_dims[d]
    if name == "stablehlo.transpose":
        d = ins[0]
        return None if d is None else list(op.dimensions).index(d)
    if name == "stablehlo.reduce":
        d = ins[0]
        if d is None or d in op.dimensions:
            return None
        return d - sum(1 for r in op.dimensions if r < d)
    if name == "stablehlo.reshape":
        d = ins[0]
        if d is None:
            return None
        src, dst = op.operands[0].info.shape, op.results[0].info.shape
        for gi, gj in reshape_groups(src, dst):
            major_in = next((i for i in gi if src[i] > 1), None)
            major_out = next((j for j in gj if dst[j] > 1), None)
            if d == major_in and major_out is not None and dst[major_out] % src[d] == 0:
                return major_out
        return None
    if name == "stablehlo.gather":
        d = ins[1]
        if d is None:
            return None
        from jax.extend.mlir.dialects import stablehlo

        dn = stablehlo.GatherDimensionNumbers(op.op.attributes["dimension_numbers"])
        ivd = int(dn.index_vector_dim)
        batch_idx = [i for i in range(op.operands[1].info.rank) if i != ivd]
        batch_out = [i for i in range(op.results[0].info.rank) if i not in list(dn.offset_dims)]
        return batch_out[batch_idx.index(d)] if d in batch_idx else None
    return None


def _free_count(op: OpNode, side: int) -> int:
    dd = op.dot_dims
    batch = dd.lhs_batch if side == 0 else dd.rhs_batch
    contracting = dd.lhs_contracting if side == 0 else dd.rhs_contracting
    return op.operands[side].info.rank - len(batch) - len(contracting)
