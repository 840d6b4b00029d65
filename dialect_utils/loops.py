"""Unrolling counted `stablehlo.while` loops.

`jax.lax.scan` and `fori_loop` with constant bounds lower to a while with a counter
(`control_flow.loop_counter`). `unroll` replaces such a loop by as many copies of its
body as it has iterations, in the enclosing block, with the counter a constant in each
copy (so the per-iteration `dynamic_slice`s of stacked layer parameters read constant
offsets) and loop-invariant values computed from constants recomputed in each copy.
"""

from __future__ import annotations

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import stablehlo

from .attributes import alpa_attributes
from .control_flow import loop_counter
from .inlining import remap_operands

MAX_UNROLLED_OPS = 200_000
"""`unroll` refuses a loop whose copies would add more ops than this."""


def unroll(op: ir.Operation) -> bool:
    """Replace the counted while `op` by copies of its body (module docstring). Returns
    False (and leaves `op`) when it is not counted or too long to unroll. Ops cloned out
    of the body take the loop's `alpa.*` attributes that they lack."""
    loop = loop_counter(op)
    if loop is None:
        return False
    body_block = op.regions[1].blocks[0]
    body_ops = [o.operation for o in body_block.operations]
    if loop.trips * len(body_ops) > MAX_UNROLLED_OPS:
        return False
    inherited = alpa_attributes(op)
    counter_type = ir.RankedTensorType(op.operands[loop.index].type)
    ip = ir.InsertionPoint(op)
    current = list(op.operands)
    returned = list(body_ops[-1].operands)
    invariant = {j: chain for j, arg in enumerate(body_block.arguments)
                 if returned[j] == arg and (chain := _constant_chain(op, op.operands[j])) is not None}
    with op.location:
        for trip in range(loop.trips):
            index = loop.start + trip * loop.step
            count = stablehlo.ConstantOp(ir.DenseElementsAttr.get_splat(
                counter_type, ir.IntegerAttr.get(counter_type.element_type, index)), ip=ip)
            current[loop.index] = count.result
            for j, chain in invariant.items():  # each copy computes its own, as unrolled code does
                current[j] = _clone_chain(chain, op.operands[j], ip)
            mapping = dict(zip(body_block.arguments, current, strict=True))
            for inner in body_ops[:-1]:
                clone = inner.clone(ip)
                remap_operands(clone, mapping)
                for name, attr in inherited.items():
                    if name not in clone.attributes:
                        clone.attributes[name] = attr
                for old, new in zip(inner.results, clone.results, strict=True):
                    mapping[old] = new
            current = [mapping.get(v, v) for v in body_ops[-1].operands]
    for result, value in zip(op.results, current, strict=True):
        result.replace_all_uses_with(value)
    op.erase()
    return True


MAX_CHAIN = 64
"""Loop-invariant values computed from constants by at most this many ops are recomputed
in every copy (a causal mask, a scale): one shared copy would tie all iterations together."""


def _constant_chain(loop: ir.Operation, v: ir.Value) -> list[ir.Operation] | None:
    """The ops (in program order) that compute `v` from constants alone, in the block of
    `loop`; None if `v` depends on an argument, an op with regions or effects, or takes
    more than MAX_CHAIN ops."""
    found: set[ir.Operation] = set()
    stack = [v]
    while stack:
        owner = stack.pop().owner
        if isinstance(owner, ir.Block):
            return None
        producer = owner.operation
        if producer in found:
            continue
        if producer.regions or not producer.name.startswith("stablehlo.") or producer.name in (
                "stablehlo.custom_call", "stablehlo.rng", "stablehlo.rng_bit_generator"):
            return None
        found.add(producer)
        if len(found) > MAX_CHAIN:
            return None
        stack.extend(producer.operands)
    return [o.operation for o in loop.block.operations if o.operation in found]


def _clone_chain(chain: list[ir.Operation], v: ir.Value, ip: ir.InsertionPoint) -> ir.Value:
    mapping: dict[ir.Value, ir.Value] = {}
    for original in chain:
        clone = original.clone(ip)
        remap_operands(clone, mapping)
        for old, new in zip(original.results, clone.results, strict=True):
            mapping[old] = new
    return mapping[v]
