"""Clean-ups for an unrolled loop body, on one block (no canonicalizer for StableHLO is
registered in jaxlib's bindings, so the few folds the pipeshard path needs live here).

- `fold_scalar_integers`: an integer/boolean scalar op (add, subtract, multiply, compare,
  select, convert, negate, min, max, clamp) whose operands are constants becomes a
  constant: a reversed scan's index `L - 1 - i` is one once the counter is.
- `forward_slices`: a `dynamic_slice` at constant offsets of a chain of
  `dynamic_update_slice`s at constant offsets reads the update that wrote exactly its
  window (or looks past updates that do not touch it): the residual a scan stacks in its
  forward loop reaches the backward iteration that reads it directly, not through the
  stack of all iterations.
- `static_slices`: a `dynamic_slice` at constant offsets becomes a `slice` (offsets
  clamped as the op clamps them).
- `erase_dead`: side-effect-free ops whose results are unused are erased.
- `sink_views`: views (slices, reshapes, broadcasts, converts) of the function's
  arguments and constants (the slice of this iteration's layer out of a stacked
  parameter, its reshape) move down to just before their first reader, so that they sit
  with the layer that uses them, as a parameter of the unrolled model does; a scalar
  constant read in several places gets one copy per reader.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import stablehlo

from .attributes import alpa_attributes
from .control_flow import int_constant

_BINARY: dict[str, Callable[[int, int], int]] = {
    "stablehlo.add": operator.add,
    "stablehlo.subtract": operator.sub,
    "stablehlo.multiply": operator.mul,
    "stablehlo.minimum": min,
    "stablehlo.maximum": max,
}
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "EQ": operator.eq, "NE": operator.ne, "LT": operator.lt,
    "LE": operator.le, "GT": operator.gt, "GE": operator.ge,
}
_EFFECTS = frozenset(
    "stablehlo." + n for n in ("custom_call", "send", "recv", "infeed", "outfeed", "after_all",
                               "while", "case", "if")
)
"""Kept even when unused (effects, or regions that may hold them)."""


def scalar_constant(v: ir.Value) -> int | None:
    """The value of a rank-0 integer or boolean constant (true is 1), else None."""
    t = ir.RankedTensorType(v.type)
    value = int_constant(v) if t.rank == 0 else None
    if value is not None and ir.IntegerType(t.element_type).width == 1:
        return int(value != 0)
    return value


def _constant(t: ir.RankedTensorType, value: int, ip: ir.InsertionPoint) -> ir.Value:
    et = ir.IntegerType(t.element_type)
    if et.width == 1:
        attr: ir.Attribute = ir.BoolAttr.get(bool(value))
    else:
        bits = et.width
        value &= (1 << bits) - 1
        if not et.is_unsigned and value >= 1 << (bits - 1):
            value -= 1 << bits
        attr = ir.IntegerAttr.get(et, value)
    return stablehlo.ConstantOp(ir.DenseElementsAttr.get_splat(t, attr), ip=ip).result


def _fold(op: ir.Operation) -> int | None:
    name = op.name
    if len(op.results) != 1:
        return None
    t = ir.RankedTensorType(op.results[0].type)
    if t.rank != 0 or not isinstance(t.element_type, ir.IntegerType):
        return None
    found = [scalar_constant(v) for v in op.operands]
    values = [v for v in found if v is not None]
    if not values or len(values) != len(found):
        return None
    if name in _BINARY:
        return _BINARY[name](values[0], values[1])
    if name == "stablehlo.compare":
        direction = str(op.attributes["comparison_direction"]).split()[-1].rstrip(">")
        compare = _COMPARE.get(direction)
        return None if compare is None else int(compare(values[0], values[1]))
    if name == "stablehlo.select":
        return values[1] if values[0] else values[2]
    if name == "stablehlo.negate":
        return -values[0]
    if name == "stablehlo.convert":
        return values[0]
    if name == "stablehlo.clamp":
        return min(max(values[1], values[0]), values[2])
    return None


def fold_scalar_integers(block: ir.Block) -> int:
    """Fold scalar integer ops on constants into constants (module docstring)."""
    folded = 0
    for op in list(block.operations):
        operation = op.operation
        value = _fold(operation)
        if value is None:
            continue
        with operation.location:
            new = _constant(ir.RankedTensorType(operation.results[0].type), value,
                            ir.InsertionPoint(operation))
        operation.results[0].replace_all_uses_with(new)
        operation.erase()
        folded += 1
    return folded


def _offsets(values: Sequence[ir.Value]) -> list[int] | None:
    found = [scalar_constant(v) for v in values]
    return None if any(v is None for v in found) else found  # type: ignore[return-value]


def _window(op: ir.Operation, first: int, sizes: Sequence[int]) -> tuple[list[int], list[int]] | None:
    """(start, size) per dim of a dynamic (update) slice with constant offsets, clamped as
    the op clamps them, or None."""
    starts = _offsets(list(op.operands)[first:])
    if starts is None:
        return None
    shape = ir.RankedTensorType(op.operands[0].type).shape
    return [min(max(s, 0), d - n) for s, d, n in zip(starts, shape, sizes, strict=True)], list(sizes)


def _constant_slices(block: ir.Block) -> Iterator[tuple[ir.Operation, tuple[list[int], list[int]]]]:
    """The dynamic_slices of `block` at constant offsets, with their (clamped) windows."""
    for op in list(block.operations):
        operation = op.operation
        if operation.name != "stablehlo.dynamic_slice":
            continue
        window = _window(operation, 1, list(ir.DenseI64ArrayAttr(operation.attributes["slice_sizes"])))
        if window is not None:
            yield operation, window


def forward_slices(block: ir.Block) -> int:
    """Point dynamic_slices past the dynamic_update_slices that do not change their
    window, or at the update that wrote it (module docstring)."""
    forwarded = 0
    for operation, read in _constant_slices(block):
        source, done = operation.operands[0], False
        while not isinstance(source.owner, ir.Block) and \
                source.owner.operation.name == "stablehlo.dynamic_update_slice":
            dus = source.owner.operation
            update = ir.RankedTensorType(dus.operands[1].type)
            written = _window(dus, 2, update.shape)
            if written == read and update == ir.RankedTensorType(operation.results[0].type):
                operation.results[0].replace_all_uses_with(dus.operands[1])
                done = True
                break
            if written is None or not any(
                    r + n <= w or w + m <= r
                    for r, n, w, m in zip(read[0], read[1], written[0], written[1], strict=True)):
                break  # unknown or overlapping window: the slice reads this update
            source = dus.operands[0]
        if not done and source != operation.operands[0]:
            operation.operands[0] = source
            done = True
        forwarded += done
    return forwarded


def erase_dead(block: ir.Block) -> int:
    """Erase unused side-effect-free ops, last first (module docstring)."""
    erased = 0
    for op in reversed(list(block.operations)):
        operation = op.operation
        if not operation.results or operation.name in _EFFECTS or not operation.name.startswith("stablehlo."):
            continue
        if all(not list(r.uses) for r in operation.results):
            operation.erase()
            erased += 1
    return erased


_VIEWS = frozenset(
    "stablehlo." + n for n in ("constant", "iota", "slice", "dynamic_slice", "reshape",
                               "broadcast_in_dim", "transpose", "convert", "bitcast_convert")
)
"""Ops that only re-shape, re-type or pick out what they read: `sink_views` moves them."""


def sink_views(block: ir.Block) -> int:
    """Move argument/constant-only ops down to their first reader (module docstring)."""
    ops = [o.operation for o in block.operations]
    moved = 0
    views: set[ir.Operation] = set()
    for operation in ops:
        if operation.name not in _VIEWS:
            continue
        if all(isinstance(v.owner, ir.Block) or v.owner.operation in views for v in operation.operands):
            views.add(operation)
    for operation in reversed(ops):
        if operation not in views:
            continue
        readers = [use.owner.operation for r in operation.results for use in r.uses]
        if not readers or any(r.block != block for r in readers):
            continue  # unused, or read inside a region: left where it is
        first = min(readers, key=lambda r: sum(1 for o in readers if o.is_before_in_block(r)))
        operation.move_before(first)
        moved += 1
        if not operation.operands and ir.RankedTensorType(operation.results[0].type).rank == 0:
            for use in list(operation.results[0].uses):  # a scalar constant: one per reader
                reader = use.owner.operation
                if reader != first:
                    reader.operands[use.operand_number] = operation.clone(ir.InsertionPoint(reader)).results[0]
    return moved


def static_slices(block: ir.Block) -> int:
    """Replace dynamic_slices at constant offsets by slices (module docstring)."""
    replaced = 0
    for operation, (starts, sizes) in _constant_slices(block):
        limits = [s + n for s, n in zip(starts, sizes, strict=True)]
        with operation.location:
            new = stablehlo.SliceOp(operation.operands[0], starts, limits, [1] * len(sizes),
                                    ip=ir.InsertionPoint(operation))
        for name, attr in alpa_attributes(operation).items():
            new.operation.attributes[name] = attr
        operation.results[0].replace_all_uses_with(new.result)
        operation.erase()
        replaced += 1
    return replaced
