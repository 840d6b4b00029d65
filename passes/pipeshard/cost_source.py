"""What a stage costs, as the stage DP reads it: the record, its memory rule, its sources.

Holds `StageCost` (latency and per-device memory of one stage per microbatch; its
`memory_bytes` is the rule ``param + stashed * activation + temp``), the ways a caller
gives costs (`CostFn`, a function; `CostTable`, a mapping keyed by `CostKey`), and
`CostCache`, which memoizes either. `stash_rule` and `microbatch_phrase` word the
schedules' stash rules (`dialect_utils.schedules.in_flight`) for error messages. Reads
only the cost source it is given; writes nothing but the cache's own entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from alpa_mlir.dialect_utils.schedules import ScheduleKind

from .submesh_space import LogicalShape, SubmeshShape


@dataclass(frozen=True)
class StageCost:
    """The cost of one stage (per microbatch): latency in seconds, and memory per device:
    parameters (with optimizer state), activations stashed per in-flight microbatch, and
    peak temporaries."""

    latency: float
    param_bytes: float = 0.0
    activation_bytes: float = 0.0
    temp_bytes: float = 0.0

    def __post_init__(self) -> None:
        for name in ("latency", "param_bytes", "activation_bytes", "temp_bytes"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"StageCost.{name} must be finite and >= 0, got {value!r}")

    def memory_bytes(self, stashed_microbatches: int) -> float:
        """Peak bytes per device with `stashed_microbatches` microbatches in flight."""
        return self.param_bytes + stashed_microbatches * self.activation_bytes + self.temp_bytes


CostKey = tuple[int, int, SubmeshShape, LogicalShape]
"""(first layer, last layer (inclusive), submesh, logical mesh)."""
CostFn = Callable[[int, int, SubmeshShape, LogicalShape], StageCost | None]
"""cost(i, j, submesh, logical) for layers i..j inclusive; None = infeasible."""
CostTable = Mapping[CostKey, StageCost | None]
"""A precomputed cost table; a missing key is infeasible (None)."""


class CostCache:
    """Memoizes a stage cost function (or table): each argument tuple is costed once.

    Pass one instance to several `plan_stages`/`plan_manual` calls (e.g. for several
    microbatch counts) to share the costs; `calls` counts evaluations of the source and
    `hits` answers served from the cache. The key is the argument tuple; a cost model
    that recognizes equal layer contents (repeated transformer blocks) under different
    indices should also key its own work by content.
    """

    def __init__(self, source: CostFn | CostTable) -> None:
        self._source = source
        self._costs: dict[CostKey, StageCost | None] = {}
        self.calls = 0
        self.hits = 0

    def __call__(
        self, first: int, last: int, submesh: SubmeshShape, logical: LogicalShape
    ) -> StageCost | None:
        key: CostKey = (first, last, submesh, logical)
        if key in self._costs:
            self.hits += 1
            return self._costs[key]
        self.calls += 1
        source = self._source
        result = source.get(key) if isinstance(source, Mapping) else source(*key)
        if result is not None and not isinstance(result, StageCost):
            raise TypeError(
                f"stage cost for layers {first}..{last} on submesh {submesh} logical "
                f"{logical}: expected StageCost or None, got {type(result).__name__}"
            )
        self._costs[key] = result
        return result

    def __len__(self) -> int:
        return len(self._costs)


def microbatch_phrase(n: int) -> str:
    """`n` with its noun, as a message states it: "1 microbatch", "2 microbatches"."""
    return f"{n} microbatch" + ("" if n == 1 else "es")


def stash_rule(schedule: ScheduleKind) -> str:
    """The stash rule of a schedule, as a message states it."""
    if schedule is ScheduleKind.ONE_F_ONE_B:
        return "a stage followed by s - 1 stages stashes min(s, M) microbatches"
    return "every stage stashes all M microbatches"
