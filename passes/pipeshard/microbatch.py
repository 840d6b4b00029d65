"""Microbatch analysis of a training step: which ops run once per
microbatch, which dim of each of their values is the batch, and where the batch ends.

Reads a `FunctionGraph` of the step and the batch arguments; writes nothing (pure
analysis: `analyze_microbatches` -> `MicrobatchSplit`, or `MicrobatchError` naming the
op that prevents the split). `accumulation.split_step` does the rewrite.

Algorithm
---------
1. Batch axes (`sharding.batch_dims.batch_axes`): the dims the ops' factors link to
   dim 0 of the batch arguments (union-find over (value, dim)), so cotangent seeds and
   masks built from constants join the batch too, not only what flows forward from it;
   and the dims a reshape folded the batch into behind another dim (MoE's
   [top-k choice x tokens] layout: `folded`), which shrink by M like the others. A value
   with two batch dims, and an argument that meets the batch without being a batch
   argument, are rejected.
2. Parts. HOISTED = batch-shaped ops that do not read the batch arguments but differ
   from example to example (an iota over the batch, what is computed from it: the
   counters and bits of a dropout mask; ops the per-example checks refuse, such as
   threefry's loop): they run once in the apply part on the whole batch, and the
   microbatch part reads slices of their results, as it reads the batch arguments'.
   CORE = the other ops with a batch-carrying result (per-example work) and ops where the
   batch ends (a batch-carrying input, no batch-carrying result: the *sums*). FEED = the
   other ancestors of CORE (parameter casts, constants). Ops reading only batch-free
   values after the batch ended are the APPLY part (run once).
3. Checks. Every op where the batch ends must sum over it: reduce with an add body and a
   zero init over the batch dim, a dot_general or convolution contracting it, a
   scatter-add into zeros. Core ops whose attributes pick examples (a slice, a sort, a
   reverse, a window along the batch, a non-splat constant) are rejected, as are ops with
   no rule (custom_call, while, rng). A sum whose result feeds per-example work again is
   a cross-example statistic (batch norm), and a reduce_window whose window spans the
   batch a cumulative reduction (a cumsum over the tokens of all examples: MoE capacity
   positions): both rejected unless `allow_statistics` (or M = 1, where the one
   microbatch is the batch), and then computed per microbatch.
4. Boundary. The sums that the apply part reads: accumulated over microbatches, they
   equal the full-batch values exactly (constants such as 1/B stay as they were, so a
   mean over the batch is the sum of the microbatch terms). FEED ops that the apply part
   also reads are computed there once and passed in; statistic paths are computed in
   both parts (per microbatch inside, from the full sums in the apply part).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import stablehlo

from alpa_mlir.dialect_utils.flops import ELEMENTWISE
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode
from alpa_mlir.dialect_utils.op_factors import elementwise_chlo
from alpa_mlir.passes.sharding.batch_dims import batch_axes

from .step_analysis import ancestors, op_inputs

# Ops the rewrite can run per microbatch: `_check_core` knows the attributes with which
# they could pick examples, and `accumulation` shrinks the attributes that hold the batch
# size. (Which dims carry the batch comes from the op sharding rules: `batch_dims`.)
_KNOWN = ELEMENTWISE | frozenset(
    "stablehlo." + n
    for n in ("slice", "dynamic_slice", "pad", "reverse", "dynamic_update_slice",
              "concatenate", "sort", "reduce_window", "select_and_scatter",
              "reduce_precision", "optimization_barrier", "broadcast_in_dim", "transpose",
              "reshape", "dot_general", "convolution", "reduce", "gather", "scatter", "iota",
              "constant", "bitcast_convert")
) | {"sdy.sharding_constraint", "chlo.top_k"}


class MicrobatchError(ValueError):
    """The step cannot be split into microbatches; `op` (if any) is the culprit."""

    def __init__(self, message: str, op: OpNode | None = None, where: ir.Location | None = None) -> None:
        super().__init__(message)
        self.op = op
        self.where = where

    @property
    def location(self) -> ir.Location | None:
        return self.where if self.op is None else self.op.location


@dataclass(frozen=True)
class MicrobatchSplit:
    """How one step splits into a per-microbatch part and an apply part."""

    num_microbatches: int
    batch_args: Mapping[int, int]
    """Batch argument index -> its batch dim."""
    dims: Mapping[ir.Value, int]
    """Every batch-carrying value -> its batch dim (shrunk by num_microbatches)."""
    micro: tuple[int, ...]
    """Ops (FunctionGraph indices, program order) that run once per microbatch."""
    main: tuple[int, ...]
    """Ops that run once, in the apply part (statistic paths can be in both)."""
    inputs: tuple[ValueNode, ...]
    """Values defined outside the microbatch part that it reads (arguments first)."""
    boundary: tuple[ValueNode, ...]
    """Sums over the batch that the apply part (or the function's results) reads."""
    statistics: tuple[int, ...]
    """Sums whose results also feed per-example work (accepted with allow_statistics)."""
    cumulative: tuple[int, ...] = ()
    """Cumulative reductions along the batch (a cumsum over the tokens of all examples:
    MoE capacity positions), accepted with allow_statistics: each microbatch runs them
    over its own examples (`accumulation` shrinks their windows)."""
    hoisted: tuple[int, ...] = ()
    """Batch-shaped ops that do not read the batch (dropout bits from a key, example
    indices): run once in the apply part on the whole batch; the microbatch part reads
    slices of their results, like a batch argument's."""

    def sliced(self, v: ValueNode) -> bool:
        """`v` is defined outside the microbatch part and passed in as M slices."""
        if v.is_argument:
            return v.index in self.batch_args
        return v.value in self.dims and v.producer in self.hoisted

    def shrunk_shape(self, v: ValueNode) -> tuple[int, ...]:
        """`v`'s shape inside the microbatch part."""
        shape = list(v.info.shape)
        d = self.dims.get(v.value)
        if d is not None:
            shape[d] //= self.num_microbatches
        return tuple(shape)


def analyze_microbatches(
    graph: FunctionGraph,
    batch_args: Iterable[int],
    num_microbatches: int,
    *,
    allow_statistics: bool = False,
    marked: Iterable[ir.Value] = (),
) -> MicrobatchSplit:
    """Split `graph` (module docstring). `marked`: values declared to be the gradient
    sums (a `@alpa.grad_marker`'s operands): they and everything they are computed from
    run per microbatch and are accumulated, whatever reads them runs once. Raises
    MicrobatchError."""
    if num_microbatches < 1:
        raise MicrobatchError(f"num-microbatches must be >= 1, got {num_microbatches}")
    args = sorted(set(batch_args))
    if not args:
        raise MicrobatchError("no batch arguments: name them with batch-args=")
    dims, interleaved = _batch_axes(graph, args)
    for arg in graph.args:
        if arg.index not in args and arg.value in dims:
            raise MicrobatchError(
                f"argument {arg.index} (tensor<{_type_text(arg)}>) meets the batch on its dim "
                f"{dims[arg.value]}, but it is not a batch argument (those are "
                f"{', '.join(map(str, args))}): name the batch arguments with batch-args=",
                where=arg.value.location)
    _check_sizes(graph, args, dims, num_microbatches)
    inputs = [op_inputs(graph, node) for node in graph.ops]
    carrying = {
        node.index for node in graph.ops if any(r.value in dims for r in node.results)
    }
    users = _users(graph, inputs)
    hoisted, support = _hoisted(graph, args, inputs, users, carrying, dims, interleaved)
    carrying -= hoisted
    ends = {
        node.index for node in graph.ops
        if node.index not in carrying and node.index not in hoisted
        and any(v.value in dims and v.producer not in hoisted for v in inputs[node.index])
    }
    core = carrying | ends
    live_ends = {i for i in ends if users[i] or _returned(graph, i)}
    for i in sorted(live_ends):
        _check_sum(graph, graph.ops[i], dims)
    cumulative = []
    for i in sorted(carrying):
        if _cumulative(graph.ops[i], dims):
            if not allow_statistics and num_microbatches > 1:
                raise MicrobatchError(
                    f"'{graph.ops[i].name}' is a cumulative reduction along the batch (a cumsum "
                    "over the examples, or over the tokens of all examples as in MoE capacity "
                    "positions): each microbatch would count only its own examples; pass "
                    "allow-per-microbatch-statistics=true to accept that", graph.ops[i])
            cumulative.append(i)
            continue
        _check_core(graph.ops[i], dims)
    feed = ancestors(inputs, core) - core - hoisted
    after_end = _descendants(users, ends)
    statistics = sorted(i for i in ends if _descendants(users, [i]) & core)
    if statistics and not allow_statistics and num_microbatches > 1:
        op = graph.ops[statistics[0]]
        raise MicrobatchError(
            f"'{op.name}' sums over the batch and its result feeds per-example work again "
            "(a cross-example statistic such as batch norm): microbatches would each use "
            "their own statistics; pass allow-per-microbatch-statistics=true to accept that",
            op,
        )
    main = (set(range(len(graph.ops))) - core - feed) | support
    for i in sorted(feed, reverse=True):
        if any(u in main for u in users[i]) or _returned(graph, i):
            main.add(i)
    micro = (core | feed) - {i for i in main if i not in after_end}
    micro |= _read_by(users, support, micro)
    forced = {graph.node(v) for v in marked}
    for v in forced:
        if v.value in dims:
            raise MicrobatchError(
                f"a value marked as a gradient (tensor<{_type_text(v)}>) still carries the batch",
                graph.producer(v))
    marked_ops = ancestors(inputs, [v.producer for v in forced if v.producer is not None])
    pulled = {i for i in marked_ops if i in main and i in after_end and i not in feed}
    micro |= pulled
    main -= pulled
    micro_values = {r.value for i in micro for r in graph.ops[i].results}
    seen: set[ir.Value] = set()
    used: list[ValueNode] = []
    for i in sorted(micro):
        for v in inputs[i]:
            if v.value not in micro_values and v.value not in seen:
                seen.add(v.value)
                used.append(v)
    used.sort(key=lambda v: (v.producer is not None, v.index if v.producer is None else v.producer))
    boundary: list[ValueNode] = []
    for i in sorted(micro):
        if i in main:
            continue
        for r in graph.ops[i].results:
            read_outside = any(u in main for u, _ in _value_users(graph, r)) or graph.result_positions(r)
            if read_outside:
                if i not in ends and r not in forced:
                    raise MicrobatchError(
                        f"'{graph.ops[i].name}' is per-microbatch work whose result the apply "
                        "part reads directly (not through a sum over the batch)", graph.ops[i])
                boundary.append(r)
    return MicrobatchSplit(
        num_microbatches=num_microbatches,
        batch_args={a: dims[graph.args[a].value] for a in args if graph.args[a].value in dims},
        dims=dims,
        micro=tuple(sorted(micro)),
        main=tuple(sorted(main)),
        inputs=tuple(used),
        boundary=tuple(boundary),
        statistics=tuple(statistics),
        cumulative=tuple(cumulative),
        hoisted=tuple(sorted(hoisted)),
    )


# ----------------------------------------------------------------------------- axes


def _batch_axes(graph: FunctionGraph, batch_args: Sequence[int]
                ) -> tuple[dict[ir.Value, int], frozenset[ir.Value]]:
    """Every batch-carrying value -> its batch dim, and the values among them whose
    examples a reshape interleaved (the batch folded behind another dim)."""
    for a in batch_args:
        if not 0 <= a < len(graph.args):
            raise MicrobatchError(f"batch argument {a} is out of range: the function has "
                                  f"{len(graph.args)} arguments")
        if graph.args[a].info.rank == 0:
            raise MicrobatchError(f"batch argument {a} is a scalar: it has no batch dim")
    found = batch_axes(graph, batch_args, folded=True)
    for twice in found.conflicts:
        raise MicrobatchError(
            f"a value of type tensor<{_type_text(twice.value)}> has two batch dims "
            f"({twice.first} and {twice.second})", twice.where)
    for bad in found.folded_conflicts:
        raise MicrobatchError(
            f"'{bad.where.name}' finds the batch of tensor<{_type_text(bad.value)}> at another "
            "place than its other operands and results do (a reshape that splits the examples "
            "or interleaves them differently): gradient accumulation cannot follow them",
            bad.where)
    return {**found.dims, **found.folded}, found.interleaved


def _check_sizes(
    graph: FunctionGraph, batch_args: Sequence[int], dims: Mapping[ir.Value, int], m: int
) -> None:
    for a in batch_args:
        v = graph.args[a]
        size = v.info.shape[0]
        if size % m:
            raise MicrobatchError(
                f"batch argument {a} (tensor<{_type_text(v)}>) has batch size {size}, "
                f"which num-microbatches={m} does not divide")
    for node in graph.ops:
        for r in node.results:
            d = dims.get(r.value)
            if d is not None and r.info.shape[d] % m:
                raise MicrobatchError(
                    f"'{node.name}' has a batch dim of size {r.info.shape[d]} "
                    f"(tensor<{_type_text(r)}>), which num-microbatches={m} does not divide",
                    node)


# ----------------------------------------------------------------------------- hoisting


def _hoisted(graph: FunctionGraph, batch_args: Sequence[int], inputs: Sequence[Sequence[ValueNode]],
             users: Sequence[set[int]], carrying: set[int], dims: Mapping[ir.Value, int],
             interleaved: Set[ir.Value]) -> tuple[set[int], set[int]]:
    """Batch-shaped ops that do not read the batch but differ from example to example:
    computed per microbatch they would repeat the first microbatch's values (an iota over
    the batch, the counters of a dropout mask's random bits) or could not be split at all
    (threefry's loop, a non-splat constant). They run once, on the whole batch. Returns
    them, and the *support*: the batch-shaped ops they read that are the same for every
    example (a splat, a broadcast key), computed in the apply part for them and, where
    the microbatch part reads them too, there as well.
    A microbatch's slice of a value whose batch is folded behind another dim is not a
    block of it: such values, and what is computed from them, run in the microbatch part
    (from the slices of the unfolded values they read); a source that is itself folded
    is refused."""
    readers = {u for a in batch_args for u, _ in _value_users(graph, graph.args[a])}
    free = {i for i in carrying if i not in readers | _descendants(users, readers)}
    sources = {i for i in free if _example_specific(graph.ops[i], inputs[i], dims)}
    hoisted = (_descendants(users, sources) & free) | sources
    folds = {i for i in hoisted if any(r.value in interleaved for r in graph.ops[i].results)}
    moved = (_descendants(users, folds) | folds) & hoisted
    for i in sorted(moved & sources):
        raise MicrobatchError(
            f"'{graph.ops[i].name}' differs from example to example without reading the batch "
            "(an iota or random bits over it) and lays the batch out behind another dim: a "
            "microbatch's part of it is not a block; build it with the batch as its own dim, "
            "or run without microbatches", graph.ops[i])
    hoisted -= moved
    support: set[int] = set()
    stack = list(hoisted)
    while stack:
        for v in inputs[stack.pop()]:
            p = v.producer
            if p is not None and p in free and p not in hoisted and p not in support:
                support.add(p)
                stack.append(p)
    return hoisted, support


def _read_by(users: Sequence[set[int]], candidates: set[int], readers: set[int]) -> set[int]:
    """The candidates whose results `readers` (or candidates so found) read."""
    found: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i in candidates - found:
            if users[i] & (readers | found):
                found.add(i)
                changed = True
    return found


def _example_specific(node: OpNode, reads: Sequence[ValueNode], dims: Mapping[ir.Value, int]) -> bool:
    """`node` (batch-shaped, not reading the batch) cannot be computed per microbatch: it
    has no rule, fails the per-example checks, or makes its batch dim from values that do
    not carry it in a way that is not the same for every example."""
    try:
        _check_core(node, dims)
    except MicrobatchError:
        return True
    if any(v.value in dims for v in reads):
        return False
    out = node.results[0]
    d = dims.get(out.value)
    if d is None or out.info.shape[d] == 1:
        return False
    name = node.name
    if name == "stablehlo.constant":
        return False  # a splat: _check_core refused the others
    if name == "stablehlo.iota":
        return node.int_attr("iota_dimension") == d
    if name == "stablehlo.broadcast_in_dim":
        source = node.broadcast_dims
        return d in source and node.operands[0].info.shape[source.index(d)] != 1
    return name not in ELEMENTWISE and not elementwise_chlo(node.op)


# ----------------------------------------------------------------------------- checks


def _cumulative(node: OpNode, dims: Mapping[ir.Value, int]) -> bool:
    """`node` is a reduce_window whose window spans the whole batch dim, padded on one
    side by all but one element, with unit strides and dilations: a cumulative reduction
    (cumsum, cummax; forward or reversed) along the batch."""
    if node.name != "stablehlo.reduce_window":
        return False
    d = dims.get(node.results[0].value)
    if d is None:
        return False
    size = node.operands[0].info.shape[d]
    window = node.int_array("window_dimensions") or ()
    pads = window_padding(node)
    unit = all(
        (node.int_array(a) or (1,) * len(window))[d] == 1
        for a in ("window_strides", "base_dilations", "window_dilations"))
    return unit and window[d] == size and pads[d] in ((size - 1, 0), (0, size - 1))


def window_padding(node: OpNode) -> list[tuple[int, int]]:
    """A reduce_window's (low, high) padding per dim."""
    flat = node.int_array("padding") or (0,) * (2 * node.operands[0].info.rank)
    return [(flat[k], flat[k + 1]) for k in range(0, len(flat), 2)]


def _check_core(node: OpNode, dims: Mapping[ir.Value, int]) -> None:
    """A per-example op must treat the examples independently."""
    name = node.name
    if name == "stablehlo.while":
        raise MicrobatchError(
            "a loop over per-example values whose trip count is not a constant (or that is too "
            "long to unroll): gradient accumulation unrolls counted loops (scan, fori_loop with "
            "static bounds) only", node)
    if name not in _KNOWN and not elementwise_chlo(node.op):
        raise MicrobatchError(
            f"gradient accumulation has no rule for '{name}' on per-example values", node)
    out = node.results[0]
    d = dims.get(out.value)
    if d is None:
        return
    if name == "stablehlo.constant":
        if not ir.DenseElementsAttr(node.op.attributes["value"]).is_splat:
            raise MicrobatchError(
                "a constant with per-example entries (not a splat) cannot be split into "
                "microbatches", node)
    elif name in ("stablehlo.reverse",) and d in node.dimensions:
        raise _mixes("'stablehlo.reverse' reverses the order of the examples (a flip of the batch dim)", node)
    elif name == "stablehlo.sort" and node.int_attr("dimension") == d:
        raise _mixes("'stablehlo.sort' sorts over the batch (a sort, argsort or top-k across examples)", node)
    elif name == "chlo.top_k" and d == out.info.rank - 1:
        raise _mixes("'chlo.top_k' picks the top examples of the batch (top-k across examples)", node)
    elif name in ("stablehlo.reduce_window", "stablehlo.select_and_scatter"):
        window = node.int_array("window_dimensions") or ()
        strides = node.int_array("window_strides") or ()
        if (window and window[d] != 1) or (strides and strides[d] != 1):
            raise _mixes(f"'{name}' has a window over the batch (pooling or a cumulative sum across "
                         "examples)", node)
    elif name == "stablehlo.slice":
        start = node.int_array("start_indices") or ()
        strides = node.int_array("strides") or ()
        if start[d] != 0 or (strides and strides[d] != 1):
            raise _mixes("'stablehlo.slice' selects examples (x[:k] or x[::s] on the batch dim)", node)
    elif name == "stablehlo.pad":
        for attr in ("edge_padding_low", "edge_padding_high", "interior_padding"):
            if (node.int_array(attr) or (0,) * out.info.rank)[d] != 0:
                raise _mixes("'stablehlo.pad' pads the batch (adds examples)", node)
    elif name == "stablehlo.concatenate" and node.int_attr("dimension") == d:
        raise _mixes("'stablehlo.concatenate' concatenates along the batch (joins batches)", node)
    elif name == "stablehlo.dynamic_update_slice":
        update = node.operands[1]
        if update.value not in dims:
            raise _mixes("'stablehlo.dynamic_update_slice' writes into selected examples "
                         "(x.at[i].set(...) on the batch dim)", node)
    if name in ("stablehlo.gather", "stablehlo.scatter"):
        operand = node.operands[0]
        if operand.value in dims and not _operand_batch_ok(node, dims[operand.value]):
            raise _mixes(f"'{name}' indexes across examples (indices into the batch dim)", node)


_PICKS = {
    "stablehlo.slice": "'stablehlo.slice' selects examples (x[:k] or x[::s] on the batch dim)",
    "stablehlo.dynamic_slice": "'stablehlo.dynamic_slice' selects examples (x[i] on the batch dim)",
    "stablehlo.gather": "'stablehlo.gather' indexes across examples (indices into the batch dim)",
}
"""Ops that end the batch by picking examples out of it: what the user wrote."""


def _mixes(what: str, node: OpNode) -> MicrobatchError:
    """An op whose per-example results depend on other examples."""
    return MicrobatchError(
        f"{what}: a microbatch holds only some of the examples, so it cannot compute this; "
        "keep such work within each example (or do it before the step), or run with "
        "num-microbatches=1", node)


def _operand_batch_ok(node: OpNode, d: int) -> bool:
    """The gather/scatter operand's batch dim is a batching dim or a full window dim."""
    if node.name == "stablehlo.gather":
        dn = stablehlo.GatherDimensionNumbers(node.op.attributes["dimension_numbers"])
        if d in list(dn.operand_batching_dims):
            return True
        sizes = node.int_array("slice_sizes") or ()
        return d not in list(dn.collapsed_slice_dims) and sizes[d] == node.operands[0].info.shape[d]
    sdn = stablehlo.ScatterDimensionNumbers(node.op.attributes["scatter_dimension_numbers"])
    if d in list(sdn.input_batching_dims):
        return True
    skipped = set(sdn.inserted_window_dims) | set(sdn.input_batching_dims)
    window = [k for k in range(node.operands[0].info.rank) if k not in skipped]
    if d not in window:
        return False
    updates = node.operands[len(node.operands) // 2 + 1]
    u = list(sdn.update_window_dims)[window.index(d)]
    return updates.info.shape[u] == node.operands[0].info.shape[d]


def _check_sum(graph: FunctionGraph, node: OpNode, dims: Mapping[ir.Value, int]) -> None:
    """Where the batch ends, the op must sum over it."""
    name = node.name
    carrying = [(o, dims[o.value]) for o in node.operands if o.value in dims]
    if name not in _KNOWN and not elementwise_chlo(node.op):
        raise MicrobatchError(f"gradient accumulation has no rule for '{name}' on per-example values", node)
    if name == "stablehlo.reduce":
        n = len(node.operands) // 2
        if (n == 1 and _is_add_body(node.op) and _is_zero(graph, node.operands[1])
                and all(d in node.dimensions for _, d in carrying)):
            return
        raise MicrobatchError(
            "'stablehlo.reduce' over the batch is not a sum with a zero init (a max, an "
            "argmax, ...): gradient accumulation can only split sums over the batch", node)
    if name == "stablehlo.dot_general":
        dd = node.dot_dims
        contracted = [set(dd.lhs_contracting), set(dd.rhs_contracting)]
        if all(
            d in contracted[k] for k, o in enumerate(node.operands[:2])
            for d in ([dims[o.value]] if o.value in dims else [])
        ):
            return
    elif name == "stablehlo.convolution":
        cd = node.conv_dims
        feature = {0: cd.input_feature, 1: cd.kernel_input_feature}
        if cd.feature_group_count == 1 and cd.batch_group_count == 1 and all(
            dims[o.value] == feature[k] for k, o in enumerate(node.operands[:2]) if o.value in dims
        ):
            return
    elif name == "stablehlo.scatter":
        n = len(node.operands) // 2
        if (n == 1 and _is_add_body(node.op) and node.operands[0].value not in dims
                and _is_zero(graph, node.operands[0])):
            return
        raise MicrobatchError(
            "'stablehlo.scatter' over the batch is not a scatter-add into zeros", node)
    elif name == "stablehlo.reshape" and carrying:
        raise MicrobatchError(
            "'stablehlo.reshape' splits the batch dim over several dims (or merges it with "
            "part of another), so no dim of its result holds whole examples: a microbatch's "
            "examples are not a block of it; reshape whole examples (or whole dims) only, or "
            "run without microbatches", node)
    elif name in _PICKS and carrying:
        raise _mixes(_PICKS[name], node)
    elif name in _KNOWN and carrying:
        raise MicrobatchError(
            f"'{name}' picks examples out of the batch (its result has no batch dim): "
            "gradient accumulation can only split sums over the batch", node)
    raise MicrobatchError(
        f"'{name}' combines examples in a way gradient accumulation cannot split "
        "(only sums over the batch can be accumulated)", node)


def _is_add_body(op: ir.Operation) -> bool:
    if len(op.regions) != 1:
        return False
    body = [o.operation for o in op.regions[0].blocks[0].operations]
    return len(body) == 2 and body[0].name == "stablehlo.add"


def _is_zero(graph: FunctionGraph, v: ValueNode) -> bool:
    """A splat zero constant, possibly broadcast or converted."""
    node = graph.producer(v)
    while node is not None and node.name in ("stablehlo.broadcast_in_dim", "stablehlo.convert",
                                             "stablehlo.reshape"):
        node = graph.producer(node.operands[0])
    if node is None or node.name != "stablehlo.constant":
        return False
    attr = ir.DenseElementsAttr(node.op.attributes["value"])
    if not attr.is_splat:
        return False
    splat = attr.get_splat_value()
    for kind in (ir.FloatAttr, ir.IntegerAttr, ir.BoolAttr):  # any width: bf16 too
        try:
            return not kind(splat).value  # 0.0, -0.0, 0, false
        except ValueError:  # not this kind of attribute
            continue
    return False


# ----------------------------------------------------------------------------- graph helpers


def _users(graph: FunctionGraph, inputs: Sequence[Sequence[ValueNode]]) -> list[set[int]]:
    users: list[set[int]] = [set() for _ in graph.ops]
    for i, values in enumerate(inputs):
        for v in values:
            if v.producer is not None:
                users[v.producer].add(i)
    return users


def _value_users(graph: FunctionGraph, v: ValueNode) -> list[tuple[int, int]]:
    found = [(node.index, k) for node, k in graph.users(v)]
    found += [(node.index, -1) for node in graph.nested_users(v)]
    return found


def _returned(graph: FunctionGraph, op: int) -> bool:
    return any(r.producer == op for r in graph.returned)


def _descendants(users: Sequence[set[int]], seeds: Iterable[int]) -> set[int]:
    """Ops reachable from the results of `seeds` (the seeds themselves excluded)."""
    found: set[int] = set()
    stack = [u for s in seeds for u in users[s]]
    while stack:
        i = stack.pop()
        if i in found:
            continue
        found.add(i)
        stack.extend(users[i])
    return found


def _type_text(v: ValueNode) -> str:
    return "x".join([*map(str, v.info.shape), v.info.dtype])
