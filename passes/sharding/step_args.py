"""Which arguments of a training step are what, read from the program itself.

A training step `(params, opt_state, batch, ...) -> (params', opt_state', loss, ...)`
reaches us flattened, with or without donation. Its arguments fall into three roles:

- **state**: arguments the step returns updated (parameters, optimizer state, step
  counters). Found, in order of precedence, from `state-args=`; from donation
  (`tf.aliasing_output`, which also names the result); else from the results matched to
  the arguments by position and type, the way `jax.jit` flattens `(params, opt_state,
  ...) -> (params', opt_state', ...)`: up to the first position whose types differ, an
  argument is state when the result at its position is an *update* of it: reached from
  it through elementwise ops (`p - lr * g`, `b1 * mu + ...`, `count + 1`), converts,
  selects and control flow, never through a contraction or a reduction. (In `(x, w) ->
  (y, w')` the output y has x's type but comes from a dot: x is not state.) A match that
  leaves no argument to be the batch is not taken: such a function is no training step.
- **batch**: from `batch-args=`, else the other arguments whose dim 0 is the common batch
  size (the dim 0 most of them share; ties: the larger). RNG keys (`ui32[2]`, `ui32[4]`)
  are not batch.
- **other**: the rest (RNG keys, scalars such as a learning rate): passed whole.

Pure analysis over a `FunctionGraph`; `StepArgs.source` says how the state was found, so
reports can show it.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.attributes import donated_args
from alpa_mlir.dialect_utils.flops import ELEMENTWISE
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode
from alpa_mlir.dialect_utils.op_factors import elementwise_chlo

_KEY_SHAPES = ((2,), (4,))  # threefry and rbg keys as raw uint32 data


class StateSource(enum.StrEnum):
    OPTION = "state-args"
    DONATION = "donation"
    POSITIONS = "results matched by position and type"
    NONE = "none"


class StepArgsError(ValueError):
    """Options that name arguments the function does not have."""


@dataclass(frozen=True)
class StepArgs:
    """The roles of a step's arguments."""

    state: Mapping[int, int | None]
    """State argument -> the result it is updated into (None: not known)."""
    batch: tuple[int, ...]
    batch_size: int | None
    source: StateSource
    num_args: int

    @property
    def other(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.num_args) if i not in self.state and i not in self.batch)

    @property
    def updates(self) -> dict[int, int]:
        """State argument -> result, where the result is known (for layout sharing)."""
        return {a: r for a, r in self.state.items() if r is not None}

    def describe(self) -> dict[str, object]:
        """The roles as report data."""
        return {"state": sorted(self.state), "state_from": self.source.value, "batch": list(self.batch),
                "batch_size": self.batch_size, "other": list(self.other)}


def check_roles(batch_args: Sequence[int], state_args: Sequence[int], num_args: int | None = None) -> None:
    """Raise StepArgsError when the options name an argument below 0 (or, given
    `num_args`, past the last), one argument twice, or one argument in both."""
    for name, given in (("batch-args", batch_args), ("state-args", state_args)):
        text = f"{name}={','.join(map(str, given))}"
        if any(i < 0 for i in given):
            raise StepArgsError(f"{text}: argument indices are >= 0")
        if len(set(given)) != len(given):
            raise StepArgsError(f"{text} names an argument twice")
        for i in given:
            if num_args is not None and i >= num_args:
                raise StepArgsError(f"{name} names argument {i}, but @main has {num_args} arguments")
    both = sorted(set(batch_args) & set(state_args))
    if both:
        raise StepArgsError(f"argument {both[0]} is in both batch-args and state-args")


def infer_step_args(graph: FunctionGraph, batch_args: Sequence[int] = (),
                    state_args: Sequence[int] = ()) -> StepArgs:
    """The roles of `graph`'s arguments (module docstring). Raises StepArgsError on
    options `check_roles` refuses."""
    n = len(graph.args)
    check_roles(batch_args, state_args, n)
    state, source = _state(graph, state_args)
    if source is StateSource.POSITIONS and not batch_args and not any(
            i not in state and _may_be_batch(graph, i) for i in range(n)):
        state, source = {}, StateSource.NONE  # no argument left for a batch: not a training step
    if batch_args:
        batch = tuple(sorted(batch_args))
        sizes = {graph.args[i].info.shape[0] for i in batch if graph.args[i].info.rank}
        return StepArgs(state, batch, sizes.pop() if len(sizes) == 1 else None, source, n)
    candidates = [i for i in range(n) if i not in state and _may_be_batch(graph, i)]
    counts = Counter(graph.args[i].info.shape[0] for i in candidates)
    if not counts:
        return StepArgs(state, (), None, source, n)
    size = max(counts, key=lambda s: (counts[s], s))
    batch = tuple(i for i in candidates if graph.args[i].info.shape[0] == size)
    return StepArgs(state, batch, size, source, n)


def _state(graph: FunctionGraph, state_args: Sequence[int]) -> tuple[dict[int, int | None], StateSource]:
    donated = donated_args(graph.func_op)
    if state_args:
        return {i: donated.get(i, _same_position(graph, i)) for i in sorted(state_args)}, StateSource.OPTION
    if donated:
        return dict(donated), StateSource.DONATION
    found: dict[int, int | None] = {}
    consumers = _consumers(graph)
    for i, (arg, result) in enumerate(zip(graph.args, graph.returned, strict=False)):
        if arg.value.type != result.value.type:
            break
        if _updates(consumers, arg, result):
            found[i] = i
    return found, (StateSource.POSITIONS if found else StateSource.NONE)


_UPDATE_OPS = ELEMENTWISE | {"stablehlo.case", "stablehlo.if", "stablehlo.while",
                             "stablehlo.optimization_barrier", "stablehlo.custom_call"}
"""Ops through which an argument's value reaches its update: elementwise arithmetic,
converts and selects, control flow (optax.MultiSteps, scanned layers), barriers and
sharding annotations."""


def _consumers(graph: FunctionGraph) -> dict[ir.Value, list[OpNode]]:
    """Value -> the top-level ops that read it (as an operand or inside a region)."""
    found: dict[ir.Value, list[OpNode]] = {}
    for node in graph.ops:
        for v in (*node.operands, *graph.captured(node)):
            found.setdefault(v.value, []).append(node)
    return found


def _updates(consumers: Mapping[ir.Value, list[OpNode]], arg: ValueNode, result: ValueNode) -> bool:
    """Whether `result` is reached from `arg` through update ops only (module docstring)."""
    seen = {arg.value}
    frontier = [arg.value]
    while frontier:
        value = frontier.pop()
        if value == result.value:
            return True
        for node in consumers.get(value, ()):
            if node.name not in _UPDATE_OPS and not elementwise_chlo(node.op):
                continue
            for r in node.results:
                if r.value not in seen and r.value.type == arg.value.type:
                    seen.add(r.value)
                    frontier.append(r.value)
    return False


def _same_position(graph: FunctionGraph, i: int) -> int | None:
    returned = graph.returned
    return i if i < len(returned) and returned[i].value.type == graph.args[i].value.type else None


def _may_be_batch(graph: FunctionGraph, i: int) -> bool:
    info = graph.args[i].info
    if info.rank == 0:
        return False
    return not (info.shape in _KEY_SHAPES and info.dtype in ("ui32", "u32", "uint32"))
