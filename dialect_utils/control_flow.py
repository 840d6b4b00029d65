"""Facts about StableHLO control flow: static trip counts of `while` loops.

`lax.scan`, `lax.fori_loop` with static bounds and `lax.map` lower to a `stablehlo.while`
whose carry holds an integer counter: initialized by a constant, compared with a
constant in the condition, stepped by a constant in the body:

    %r:3 = stablehlo.while(%i = %c0, ...) cond {
      %n = stablehlo.constant dense<12> : tensor<i32>
      %lt = stablehlo.compare LT, %i, %n : ...      // or LE, GT, GE, NE; either side
      stablehlo.return %lt
    } do { ...; %next = stablehlo.add %i, %c1; stablehlo.return %next, ... }

`loop_counter` finds that pattern (`static_trip_count`: its trip count); any other loop
has no static trip count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jax.extend.mlir import ir

WHILE = "stablehlo.while"
CASE = "stablehlo.case"
IF = "stablehlo.if"
OPTIMIZATION_BARRIER = "stablehlo.optimization_barrier"

_SWAPPED = {"LT": "GT", "LE": "GE", "GT": "LT", "GE": "LE", "NE": "NE", "EQ": "EQ"}


def int_constant(value: ir.Value) -> int | None:
    """The value of a splat integer `stablehlo.constant` (None for anything else)."""
    owner = value.owner
    if isinstance(owner, ir.Block) or owner.name != "stablehlo.constant":
        return None
    attr = owner.attributes["value"]
    if not isinstance(attr, ir.DenseIntElementsAttr) or not attr.is_splat:
        return None
    return int(ir.IntegerAttr(attr.get_splat_value()).value)


def _block_ops(region: ir.Region) -> list[ir.Operation]:
    return [op.operation for op in region.blocks[0].operations]


@dataclass(frozen=True)
class LoopCounter:
    """The counter of a loop with a static trip count: carried value `index`, from
    `start` by `step`, for `trips` iterations."""

    index: int
    start: int
    step: int
    trips: int


def static_trip_count(loop: ir.Operation) -> int | None:
    """How many times a `stablehlo.while` runs its body, when the counter pattern of the
    module docstring makes it static; None otherwise."""
    counter = loop_counter(loop)
    return None if counter is None else counter.trips


def loop_counter(loop: ir.Operation) -> LoopCounter | None:
    """The counter of a `stablehlo.while` that follows the pattern of the module
    docstring; None for any other loop."""
    if loop.name != WHILE:
        return None
    cond, body = loop.regions[0], loop.regions[1]
    cond_ops = _block_ops(cond)
    if not cond_ops or cond_ops[-1].name != "stablehlo.return":
        return None
    predicate = cond_ops[-1].operands[0].owner
    if isinstance(predicate, ir.Block) or predicate.name != "stablehlo.compare":
        return None
    direction = str(predicate.attributes["comparison_direction"]).split()[-1].rstrip(">")
    lhs, rhs = predicate.operands[0], predicate.operands[1]
    cond_args = list(cond.blocks[0].arguments)
    if lhs in cond_args and int_constant(rhs) is not None:
        k, limit = cond_args.index(lhs), int_constant(rhs)
    elif rhs in cond_args and int_constant(lhs) is not None:
        k, limit, direction = cond_args.index(rhs), int_constant(lhs), _SWAPPED.get(direction, "")
    else:
        return None
    start = int_constant(loop.operands[k])
    step = _step(body, k)
    if start is None or step is None or limit is None or step == 0:
        return None
    trips = _count(start, limit, step, direction)
    return None if trips is None else LoopCounter(k, start, step, trips)


def _step(body: ir.Region, k: int) -> int | None:
    """The constant the body adds to carried value k (None: not `add(arg_k, c)`)."""
    ops = _block_ops(body)
    if not ops or ops[-1].name != "stablehlo.return":
        return None
    arg = body.blocks[0].arguments[k]
    update = ops[-1].operands[k].owner
    if isinstance(update, ir.Block) or update.name not in ("stablehlo.add", "stablehlo.subtract"):
        return None
    a, b = update.operands[0], update.operands[1]
    if a == arg and int_constant(b) is not None:
        step = int_constant(b)
        assert step is not None
        return step if update.name == "stablehlo.add" else -step
    if b == arg and update.name == "stablehlo.add":
        return int_constant(a)
    return None


def _count(start: int, limit: int, step: int, direction: str) -> int | None:
    """Iterations of `for (i = start; i <direction> limit; i += step)`."""
    if direction == "LE":
        direction, limit = "LT", limit + 1
    elif direction == "GE":
        direction, limit = "GT", limit - 1
    if direction == "LT" and step > 0:
        return max(0, math.ceil((limit - start) / step))
    if direction == "GT" and step < 0:
        return max(0, math.ceil((start - limit) / -step))
    if direction == "NE" and (limit - start) % step == 0 and (limit - start) // step >= 0:
        return (limit - start) // step
    return None
