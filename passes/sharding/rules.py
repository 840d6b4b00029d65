"""The rule table: op name -> strategy rule, and the follow rules of cheap ops.

Follow rules map the layout of one operand (the largest) to the op: elementwise ops keep
it, transpose permutes it, broadcast/reshape/reduce move it to the result's dims. Dims an
op cannot keep split (the sliced, padded, concatenated, sorted or windowed ones, reshape
dims that do not line up) are cleared in the required operand layout, so the edge into
the op pays the all-gather.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from alpa_mlir.dialect_utils.flops import ELEMENTWISE
from alpa_mlir.dialect_utils.graph import OpNode

from . import rules_contraction, rules_indexing
from .mesh import Axes
from .spec import TensorSpec, dim_factor
from .strategy import Follow, Free, PlannedCollective, RuleContext, Strategy


def _clear(spec: TensorSpec, dims: set[int]) -> TensorSpec:
    return tuple(() if i in dims else d for i, d in enumerate(spec))


def _candidates(node: OpNode) -> tuple[int, ...]:
    """Operands of the result's rank, largest first (ties: operand order)."""
    ranked = [(-o.info.num_elements, i) for i, o in enumerate(node.operands) if o.info.rank == node.results[0].info.rank]
    return tuple(i for _, i in sorted(ranked)) or (0,)


def elementwise(node: OpNode, ctx: RuleContext) -> Follow | None:
    if not node.operands or not node.results:
        return None
    out_rank = node.results[0].info.rank

    def derive(spec: TensorSpec) -> Strategy:
        inputs = tuple(spec if o.info.rank == out_rank else None for o in node.operands)
        outputs = tuple(spec for _ in node.results)
        return Strategy("follow", outputs, inputs, ctx.compute_cost(node, outputs))

    return Follow(_candidates(node), derive)


def _follow_clearing(node: OpNode, ctx: RuleContext, fixed: set[int], same_shape_operands: int | None = None) -> Follow:
    """Follow operand 0; dims in `fixed` are unsplit in operand and result."""
    n = len(node.operands) if same_shape_operands is None else same_shape_operands

    def derive(spec: TensorSpec) -> Strategy:
        kept = _clear(spec, fixed)
        inputs = tuple(kept if i < n and o.info.rank == len(kept) else None for i, o in enumerate(node.operands))
        outputs = tuple(kept for _ in node.results)
        return Strategy("follow", outputs, inputs, ctx.compute_cost(node, outputs))

    return Follow((0,), derive)


def slice_like(node: OpNode, ctx: RuleContext) -> Follow:
    """slice, dynamic_slice, pad, reverse, dynamic_update_slice: keep unchanged dims."""
    src = node.operands[0].info.shape
    dst = node.results[0].info.shape
    fixed = {i for i, (a, b) in enumerate(zip(src, dst, strict=True)) if a != b}
    if node.name == "stablehlo.reverse":
        fixed |= set(node.dimensions)
    if node.name == "stablehlo.dynamic_update_slice":
        upd = node.operands[1].info.shape
        fixed |= {i for i, (a, b) in enumerate(zip(src, upd, strict=True)) if a != b}
        return _follow_clearing(node, ctx, fixed, same_shape_operands=2)
    return _follow_clearing(node, ctx, fixed, same_shape_operands=1)


def concatenate(node: OpNode, ctx: RuleContext) -> Follow:
    dim = node.int_attr("dimension") or 0
    return _follow_clearing(node, ctx, {dim})


def sort(node: OpNode, ctx: RuleContext) -> Follow:
    dim = node.int_attr("dimension")
    return _follow_clearing(node, ctx, {dim if dim is not None else node.operands[0].info.rank - 1})


def windowed(node: OpNode, ctx: RuleContext) -> Follow:
    """reduce_window / select_and_scatter: dims with a real window stay whole."""
    window = node.int_array("window_dimensions") or ()
    strides = node.int_array("window_strides") or ()
    fixed = {i for i, w in enumerate(window) if w > 1 or (i < len(strides) and strides[i] > 1)}
    padding = node.int_array("padding") or ()  # flattened [[lo, hi], ...]
    fixed |= {i // 2 for i, p in enumerate(padding) if p}
    n_inputs = len(node.operands) // 2 if node.name == "stablehlo.reduce_window" else 2
    return _follow_clearing(node, ctx, fixed, same_shape_operands=n_inputs)


def transpose(node: OpNode, ctx: RuleContext) -> Follow:
    perm = node.dimensions

    def derive(spec: TensorSpec) -> Strategy:
        out = tuple(spec[p] for p in perm)
        return Strategy("follow", (out,), (spec,), 0.0)

    return Follow((0,), derive)


def broadcast_in_dim(node: OpNode, ctx: RuleContext) -> Free | Follow:
    """A broadcast scalar can take any layout for free; otherwise follow the operand."""
    if node.operands[0].info.rank == 0:
        return source(node, ctx)
    src = node.operands[0].info.shape
    dst = node.results[0].info.shape
    bdims = node.broadcast_dims

    def derive(spec: TensorSpec) -> Strategy:
        out: list[Axes] = [() for _ in dst]
        kept = list(spec)
        for i, d in enumerate(bdims):
            if src[i] == dst[d]:
                out[d] = spec[i]
            else:
                kept[i] = ()
        return Strategy("follow", (tuple(out),), (tuple(kept),), 0.0)

    return Follow((0,), derive)


def reshape_groups(src: tuple[int, ...], dst: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """Consecutive dim groups with equal element counts (size-1 dims join a neighbour)."""
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(src) or j < len(dst):
        gi, gj = [], []
        pi = pj = 1
        while True:
            if pi <= pj and i < len(src):
                gi.append(i)
                pi *= src[i]
                i += 1
            elif j < len(dst):
                gj.append(j)
                pj *= dst[j]
                j += 1
            else:
                gi.extend(range(i, len(src)))
                i = len(src)
                break
            if pi == pj and (i == len(src) or src[i] != 1) and (j == len(dst) or dst[j] != 1) and gi and gj:
                break
        groups.append((gi, gj))
    return groups


def reshape(node: OpNode, ctx: RuleContext) -> Follow:
    src = node.operands[0].info.shape
    dst = node.results[0].info.shape
    groups = reshape_groups(src, dst)
    mesh = ctx.mesh

    def derive(spec: TensorSpec) -> Strategy:
        out: list[Axes] = [() for _ in dst]
        kept = [() for _ in src]  # type: list[Axes]
        for gi, gj in groups:
            major_in = next((d for d in gi if src[d] > 1), None)
            major_out = next((d for d in gj if dst[d] > 1), None)
            if major_in is None or major_out is None:
                continue
            axes = spec[major_in]
            if axes and dst[major_out] % dim_factor(axes, mesh) == 0:
                out[major_out] = axes
                kept[major_in] = axes
        return Strategy("follow", (tuple(out),), (tuple(kept),), 0.0)

    return Follow((0,), derive)


def reduce(node: OpNode, ctx: RuleContext) -> Follow:
    n = len(node.operands) // 2
    reduced = set(node.dimensions)
    mesh = ctx.mesh

    def derive(spec: TensorSpec) -> Strategy:
        out = tuple(d for i, d in enumerate(spec) if i not in reduced)
        partial: Axes = tuple(sorted(a for i, d in enumerate(spec) if i in reduced for a in d))
        inputs = tuple(spec if i < n else None for i in range(len(node.operands)))
        outputs = tuple(out for _ in node.results)
        cost = ctx.compute_cost(node, (spec,))
        collectives: tuple[PlannedCollective, ...] = ()
        if partial:
            local = sum(r.info.nbytes for r in node.results) / max(1, _pieces(out, mesh.shape))
            cost += mesh.all_reduce_cost(local, partial)
            collectives = (PlannedCollective("all-reduce", partial, local),)
        return Strategy("follow", outputs, inputs, cost, collectives)

    return Follow((0,), derive)


def _pieces(spec: TensorSpec, shape: tuple[int, ...]) -> int:
    n = 1
    for d in spec:
        for a in d:
            n *= shape[a]
    return n


def source(node: OpNode, ctx: RuleContext) -> Free:
    """constant / iota / broadcast of a scalar: any layout is free to produce."""
    return Free()


RuleFn = Callable[[OpNode, RuleContext], "list[Strategy] | Follow | Free | None"]

_RULES: dict[str, RuleFn] = {
    "stablehlo.dot_general": rules_contraction.dot_general,
    "stablehlo.convolution": rules_contraction.convolution,
    "stablehlo.broadcast_in_dim": broadcast_in_dim,
    "stablehlo.transpose": transpose,
    "stablehlo.reshape": reshape,
    "stablehlo.reduce": reduce,
    "stablehlo.slice": slice_like,
    "stablehlo.dynamic_slice": slice_like,
    "stablehlo.pad": slice_like,
    "stablehlo.reverse": slice_like,
    "stablehlo.dynamic_update_slice": slice_like,
    "stablehlo.concatenate": concatenate,
    "stablehlo.sort": sort,
    "stablehlo.reduce_window": windowed,
    "stablehlo.select_and_scatter": windowed,
    "stablehlo.constant": source,
    "stablehlo.iota": source,
    "stablehlo.gather": rules_indexing.gather,
    "stablehlo.scatter": rules_indexing.scatter,
}
_RULES.update({name: elementwise for name in ELEMENTWISE})
RULES: Mapping[str, RuleFn] = MappingProxyType(_RULES)
