"""What a stage costs, as the stage DP reads it: the record, its memory rule, its sources.

Holds `StageCost` (latency and per-device memory of one stage per microbatch, component
by component; its `memory_bytes` is the rule ``resident + (stashed - 1) * activation +
max(temp, activation)`` with resident = parameters + gradient accumulators + optimizer
state: the temporaries of a layer's forward and backward hold one microbatch's
activations themselves, so the microbatch being worked on is not counted twice (measured
against the runtime: benchmarks/memory_fidelity.py); with per-layer
memory options, `plan` picks each layer's residency, `memory_plan`), the ways a caller
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

from .memory_plan import LayerMemory, StagePlanChoice, choose, frontier
from .submesh_space import LogicalShape, SubmeshShape


@dataclass(frozen=True)
class StageCost:
    """The cost of one stage (per microbatch): latency in seconds, and memory per device:
    parameters, gradient accumulators, optimizer state, activations stashed per
    in-flight microbatch, and peak temporaries."""

    latency: float
    param_bytes: float = 0.0
    activation_bytes: float = 0.0
    temp_bytes: float = 0.0
    grad_bytes: float = 0.0
    optimizer_bytes: float = 0.0
    layers: tuple[LayerMemory, ...] = ()
    """Per layer, what keeping / recomputing / offloading its activations costs: when
    given, `plan` picks per layer (memory-plan=auto); `latency` and `activation_bytes`
    are then those of keeping every layer's."""
    zero_stage: int = 0
    """The ZeRO level these figures are for."""
    alternatives: tuple[StageCost, ...] = ()
    """Other ways to run the same stage (other ZeRO levels, zero-stage=auto): `fastest`
    and `latency_at` take the fastest way that fits."""

    def __post_init__(self) -> None:
        for name in ("latency", "param_bytes", "activation_bytes", "temp_bytes", "grad_bytes",
                     "optimizer_bytes"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"StageCost.{name} must be finite and >= 0, got {value!r}")

    @property
    def resident_bytes(self) -> float:
        """What a device holds for the whole step: parameters, gradient accumulators and
        optimizer state."""
        return self.param_bytes + self.grad_bytes + self.optimizer_bytes

    def memory_bytes(self, stashed_microbatches: int, activation_bytes: float | None = None) -> float:
        """Peak bytes per device with `stashed_microbatches` microbatches in flight, each
        stashing `activation_bytes` (default: this cost's) (module docstring)."""
        a = self.activation_bytes if activation_bytes is None else activation_bytes
        return self.resident_bytes + (stashed_microbatches - 1) * a + max(self.temp_bytes, a)

    def most_stashed(self, stashed_microbatches: int, device_memory_bytes: float) -> float | None:
        """The most bytes per microbatch the stage may stash with `stashed_microbatches` in
        flight within `device_memory_bytes` (the largest a with memory_bytes(n, a) within
        it); None when not even a = 0 fits."""
        n = max(stashed_microbatches, 1)
        free = device_memory_bytes - self.resident_bytes
        if self.temp_bytes > free:
            return None
        if n * self.temp_bytes <= free:  # a >= temp: n * a <= free
            return free / n
        return (free - self.temp_bytes) / (n - 1)  # a < temp (n > 1 here)

    @property
    def least_activation_bytes(self) -> float:
        """Bytes stashed per microbatch under the leanest memory plan."""
        return frontier(self.layers).stashed[0] if self.layers else self.activation_bytes

    def plan(self, stashed_microbatches: int, device_memory_bytes: float | None) -> StagePlanChoice | None:
        """The fastest memory plan with `stashed_microbatches` in flight within
        `device_memory_bytes` (None: no limit), or None when none fits. Without `layers`
        the stage's one way, if it fits."""
        if not self.layers:
            if device_memory_bytes is not None and self.memory_bytes(stashed_microbatches) > device_memory_bytes:
                return None
            return StagePlanChoice(0.0, self.activation_bytes, ())
        most = math.inf if device_memory_bytes is None else self.most_stashed(stashed_microbatches,
                                                                              device_memory_bytes)
        return None if most is None else choose(self.layers, most)

    @property
    def ways(self) -> tuple[StageCost, ...]:
        """This way and its alternatives."""
        return (self, *self.alternatives)

    def fastest(self, stashed_microbatches: int, device_memory_bytes: float | None
                ) -> tuple[StageCost, StagePlanChoice] | None:
        """Of `ways`, the fastest with a memory plan that fits (`plan`) and that plan;
        ties: the first. None when none fits."""
        best: tuple[StageCost, StagePlanChoice] | None = None
        for way in self.ways:
            found = way.plan(stashed_microbatches, device_memory_bytes)
            if found is not None and (best is None or way.latency + found.extra_s
                                      < best[0].latency + best[1].extra_s):
                best = (way, found)
        return best

    def latency_at(self, stashed_microbatches: int, device_memory_bytes: float | None) -> float:
        """The latency of the fastest way and plan that fits (`fastest`); inf when none does."""
        found = self.fastest(stashed_microbatches, device_memory_bytes)
        return math.inf if found is None else found[0].latency + found[1].extra_s


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
