"""Per-layer memory plans of a stage (vPipe): keep, recompute (all of the forward or its
cheap ops) or offload each layer's stashed activations, the cheapest combination that
fits device memory.

A stage stashes, per microbatch in flight, what its layers' backward reads of their
forward. For each layer there are four ways (`attributes.Residency`):

- keep: the forward's values stay on the device (`LayerMemory.keep_bytes` per
  microbatch), no extra time;
- recompute: only the layer's inputs stay (`recompute_bytes`); the backward runs the
  forward again first (`recompute_s`, its compute);
- selective: what the layer's dots, convolutions and reductions produced stays
  (`selective_bytes`); the backward runs its elementwise and data-movement ops again
  (`selective_s`; pipeshard.remat);
- offload: the kept values go to host memory after the forward and come back before the
  backward (nothing stays on the device per microbatch); the copies cost the bytes twice
  over the host link, less what overlaps with the layer's own compute (`offload_s`).

Reads a stage's `LayerMemory` list and the most bytes per microbatch it may stash;
writes nothing. Algorithm: the Pareto frontier of (stashed bytes per
microbatch, extra seconds) over all combinations, built layer by layer (a combination
of the first n layers joined with each way of layer n + 1, dominated points dropped) and
memoized by the layers' tuple, so ranges of equal layers (transformer blocks) share
their frontiers; a query picks the fastest point whose bytes fit. Exact: the frontier
holds every undominated combination.
"""

from __future__ import annotations

import bisect
import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from alpa_mlir.dialect_utils.attributes import Residency

from ..sharding.cluster import Link


class MemoryPlanMode(enum.Enum):
    """How the stage DP decides the layers' residency."""

    FIXED = "fixed"
    """Every layer alike: kept, or recomputed with remat=true."""
    AUTO = "auto"
    """Per layer, the cheapest residency that fits device memory, chosen with the stages."""
    MANUAL = "manual"
    """Per layer as given (layer-memory=...), costed as such."""


@dataclass(frozen=True)
class LayerMemory:
    """What each residency of one layer costs, per microbatch (module docstring)."""

    keep_bytes: float
    recompute_bytes: float
    recompute_s: float
    offload_s: float | None  # None: no host link to offload over
    selective_bytes: float | None = None  # None: not costed
    selective_s: float = 0.0

    def cost(self, way: Residency) -> tuple[float, float]:
        """(stashed bytes, extra seconds) of one residency; ValueError for an offload
        without a host link or a selective recomputation not costed."""
        if way is Residency.KEEP:
            return self.keep_bytes, 0.0
        if way is Residency.RECOMPUTE:
            return self.recompute_bytes, self.recompute_s
        if way is Residency.SELECTIVE:
            if self.selective_bytes is None:
                raise ValueError("selective recomputation is not costed for this layer")
            return self.selective_bytes, self.selective_s
        if self.offload_s is None:
            raise ValueError("offload needs a host link")
        return 0.0, self.offload_s

    def options(self) -> tuple[tuple[float, float, Residency], ...]:
        """(stashed bytes, extra seconds, residency) of each way worth considering."""
        ways = [Residency.KEEP]
        if self.recompute_bytes < self.keep_bytes:
            ways.append(Residency.RECOMPUTE)
        if self.selective_bytes is not None and self.selective_bytes < self.keep_bytes:
            ways.append(Residency.SELECTIVE)
        if self.offload_s is not None and self.keep_bytes > 0:
            ways.append(Residency.OFFLOAD)
        return tuple((*self.cost(way), way) for way in ways)


def offload_seconds(keep_bytes: float, compute_s: float, host_link: Link | None) -> float | None:
    """The time an offloaded layer adds: its bytes to the host and back over the host
    link (latency plus bytes / bandwidth each way), less the layer's compute (forward
    and backward) that the copies overlap."""
    if host_link is None:
        return None
    return max(0.0, 2.0 * (host_link.latency + keep_bytes / host_link.bandwidth) - compute_s)


@dataclass(frozen=True)
class Frontier:
    """Undominated combinations: `stashed` ascending, `extra` strictly descending;
    `plans[k]` the residency per layer of point k."""

    stashed: tuple[float, ...]
    extra: tuple[float, ...]
    plans: tuple[tuple[Residency, ...], ...]

    def fastest_within(self, stashed_bytes: float) -> int | None:
        """The point with the least extra time stashing at most `stashed_bytes`."""
        k = bisect.bisect_right(self.stashed, stashed_bytes * (1 + 1e-12)) - 1
        return k if k >= 0 else None


@functools.lru_cache(maxsize=65536)
def frontier(layers: tuple[LayerMemory, ...]) -> Frontier:
    """The frontier of `layers` (module docstring)."""
    if not layers:
        return Frontier((0.0,), (0.0,), ((),))
    head = frontier(layers[:-1])
    points = [(s + bytes_, e + extra, (*plan, way))
              for s, e, plan in zip(head.stashed, head.extra, head.plans, strict=True)
              for bytes_, extra, way in layers[-1].options()]
    points.sort(key=lambda p: (p[0], p[1]))
    kept: list[tuple[float, float, tuple[Residency, ...]]] = []
    for point in points:
        if not kept or point[1] < kept[-1][1]:
            kept.append(point)
    return Frontier(tuple(p[0] for p in kept), tuple(p[1] for p in kept), tuple(p[2] for p in kept))


@dataclass(frozen=True)
class StagePlanChoice:
    """A stage's memory plan: the extra seconds per microbatch, the bytes stashed per
    microbatch and the residency of each of its layers."""

    extra_s: float
    stashed_bytes: float
    residency: tuple[Residency, ...]


def choose(layers: Sequence[LayerMemory], most_stashed: float) -> StagePlanChoice | None:
    """The fastest plan for `layers` that stashes at most `most_stashed` bytes per
    microbatch (what device memory leaves, `cost_source.StageCost.most_stashed`); None
    when even the leanest stashes more. Every layer is kept whenever that fits (also
    against a plan as fast: moving nothing is the safer of equals)."""
    kept = sum(m.keep_bytes for m in layers)
    if kept <= most_stashed:  # keeping every layer fits: nothing moves
        return StagePlanChoice(0.0, kept, (Residency.KEEP,) * len(layers))
    front = frontier(tuple(layers))
    k = front.fastest_within(most_stashed)
    if k is None:
        return None
    return StagePlanChoice(front.extra[k], front.stashed[k], front.plans[k])
