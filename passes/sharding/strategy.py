"""What one op may do under a mesh: `Strategy`, and the dispatch to per-family rules.

A rule looks at one top-level op and returns either a list of strategies (the op is a
decision node of the ILP) or a `Follow`: the op takes whatever layout one operand's
producer chose, mapped through the op (Alpa's follow merging for cheap ops). Ops no rule
knows get one replicated strategy and a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from alpa_mlir.dialect_utils.flops import op_flops
from alpa_mlir.dialect_utils.graph import OpNode

from .mesh import Axes, LogicalMesh
from .spec import TensorSpec, replicated, shard_count


@dataclass(frozen=True)
class PlannedCollective:
    """A collective a strategy itself performs (reported as a prediction)."""

    kind: str  # all-reduce | all-gather | reduce-scatter | all-to-all
    axes: Axes
    nbytes: float  # full size of the tensor the collective produces


@dataclass(frozen=True)
class Strategy:
    """Output layouts, required operand layouts (None: no requirement), own cost."""

    name: str
    outputs: tuple[TensorSpec, ...]
    inputs: tuple[TensorSpec | None, ...]
    cost: float = 0.0
    collectives: tuple[PlannedCollective, ...] = ()


@dataclass(frozen=True)
class Follow:
    """Take the layout of one operand's producer; `derive` maps it to this op's strategy.
    `operands` are the candidates in order of preference: the planner follows the one
    whose producer offers the most layouts (a broadcast constant offers fewer than a
    computed activation), the first on ties."""

    operands: tuple[int, ...]
    derive: Callable[[TensorSpec], Strategy]


@dataclass(frozen=True)
class Free:
    """The op makes its result in any layout at no cost (constants, iota, broadcast
    scalars): it is no decision of the ILP, and edges out of it cost nothing: XLA builds
    each consumer the piece it needs locally."""


@dataclass(frozen=True)
class Options:
    """Planner options the rules read."""

    allow_all_to_all: bool = True
    prefer_reduce_scatter: bool = False


@dataclass(frozen=True)
class RuleContext:
    mesh: LogicalMesh
    flop_cost: float  # seconds per FLOP on one device
    options: Options = field(default_factory=Options)

    def compute_cost(self, node: OpNode, outputs: tuple[TensorSpec, ...]) -> float:
        """FLOPs of the op divided over the devices its first output is split across."""
        flops = op_flops(node)
        if not flops:
            return 0.0
        pieces = shard_count(outputs[0], self.mesh) if outputs and outputs[0] else 1
        return flops * self.flop_cost / pieces


Rule = Callable[[OpNode, RuleContext], "list[Strategy] | Follow | Free | None"]


def replicated_strategy(node: OpNode, ctx: RuleContext, name: str = "replicated") -> Strategy:
    """Everything replicated: always correct, costs the full compute on every device."""
    outputs = tuple(replicated(r.info.rank) for r in node.results)
    inputs = tuple(replicated(o.info.rank) if o.info.rank else None for o in node.operands)
    return Strategy(name, outputs, inputs, ctx.compute_cost(node, outputs))


def strategies_for(node: OpNode, ctx: RuleContext) -> tuple[list[Strategy] | Follow | Free, bool]:
    """The op's strategies (or follow), and whether a rule knew the op (False: the
    replicated fallback was used and the caller should warn)."""
    from .rules import RULES

    rule = RULES.get(node.name)
    if rule is not None:
        result = rule(node, ctx)
        if result is not None and (isinstance(result, Follow | Free) or result):
            return result, True
    return [replicated_strategy(node, ctx)], rule is not None
