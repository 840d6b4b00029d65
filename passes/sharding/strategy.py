"""What one op may do under a mesh, as values: `Strategy`, `Follow`, `Free`, and the
`RuleContext` the generators read.

`factor_strategies.strategies_for` makes each op one of:
- a decision node: a list of strategies (the ILP picks one), for contractions and
  gathers/scatters (`factor_strategies.enumerate_strategies`);
- a `Follow`: the op takes whatever layout one operand's producer chose, mapped through
  the op's factors (Alpa's follow merging for cheap ops,
  `factor_strategies.follow_layouts`);
- `Free`: constants, iota, broadcast scalars make any layout at no cost;
- without a rule (an unknown `custom_call`): one replicated strategy, and the caller
  warns.
Op semantics come from `dialect_utils.op_factors` (Shardy's op sharding rules); there is
no per-op table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alpa_mlir.dialect_utils.collective_kind import CollectiveKind
from alpa_mlir.dialect_utils.graph import OpNode
from alpa_mlir.dialect_utils.op_factors import FactorTable

from .cluster import ClusterSpec
from .mesh import Axes, LogicalMesh
from .spec import TensorSpec


@dataclass(frozen=True)
class PlannedCollective:
    """A collective a strategy itself performs (reported as a prediction)."""

    kind: CollectiveKind
    axes: Axes
    nbytes: float  # full size of the tensor the collective produces


@dataclass(frozen=True)
class Strategy:
    """Output layouts, required operand layouts (None: no requirement), own cost
    (compute plus the strategy's own collectives) and its compute part alone."""

    name: str
    outputs: tuple[TensorSpec, ...]
    inputs: tuple[TensorSpec | None, ...]
    cost: float = 0.0
    collectives: tuple[PlannedCollective, ...] = ()
    compute: float = 0.0


@dataclass(frozen=True)
class Follow:
    """Take the layout of one operand's producer; `derive(k, layout)` maps operand k's
    layout to this op's strategy. `operands` are the candidates in order of preference:
    the planner follows the one whose producer offers the most layouts (a broadcast
    constant offers fewer than a computed activation), the first on ties."""

    operands: tuple[int, ...]
    derive: Callable[[int, TensorSpec], Strategy]


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


def compute_dtype(node: OpNode) -> str:
    """The element type an op computes in, for its peak FLOP rate: its first operand's
    (a dot of fp16 operands runs on fp16 tensor cores whatever it accumulates in), else
    its first result's."""
    values = node.operands or node.results
    return values[0].info.dtype if values else ""


@dataclass(frozen=True)
class RuleContext:
    mesh: LogicalMesh
    flop_cost: float  # seconds per FLOP on one device, for a dtype `dtype_flop_costs` lacks
    options: Options = field(default_factory=Options)
    factors: FactorTable = field(default_factory=dict)  # op -> its factors (op_factors)
    dtype_flop_costs: Mapping[str, float] = field(default_factory=dict)  # per element type (ClusterSpec)
    # The generators' memo of layouts derived per (rule, operand, layout): one planning
    # run's, filled as it goes.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def seconds_per_flop(self, node: OpNode) -> float:
        """One device's seconds per FLOP of `node`, at the peak of its `compute_dtype`."""
        return self.dtype_flop_costs.get(compute_dtype(node), self.flop_cost)

    @classmethod
    def for_cluster(cls, mesh: LogicalMesh, cluster: ClusterSpec, factors: FactorTable,
                    options: Options | None = None) -> RuleContext:
        """The context that prices ops on `cluster`'s devices: its peak FLOP/s, per dtype
        where the cluster gives one."""
        return cls(mesh, 1.0 / cluster.peak_flops, options or Options(), factors, cluster.flop_costs())
