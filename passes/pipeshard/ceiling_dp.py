"""The stage DP's tables and one run of the DP under a latency ceiling.

`cost_tables` looks up the costs of every (layer range, submesh, logical mesh) that can
occur in a device-covering plan through a `CostCache` and reduces them to `StageTables`:
per DP state, the fastest legal logical mesh of each (range, submesh). `solve_ceiling`
runs the DP of `stage_dp` (its module docstring states the formulation and the
recurrence) over those tables for one ceiling and returns a `DPAnswer`. Reads the cost
source (lazily) and the schedule's stash counts; writes nothing.

Refinements over the plain recurrence, all exact:

- Per (range, submesh, stages-from-here) only the fastest legal logical mesh can be in an
  optimal plan, so the DP and the ceilings use that one only.
- A stage's latency (its memory plan's, inf where nothing fits) depends on s only
  through the in-flight count (nondecreasing in s, constant from s = B on), and usually
  only up to a small s: stage counts at or above `cap` (the first s beyond which no
  latency changes) share one DP state, whose predecessor is the better of states cap-1
  and cap. With no memory limit cap = 1 and the DP is over (k, d) only.
- The cost function is called lazily and once per argument tuple (`CostCache`), and only
  for (range, submesh) pairs that occur in some device-covering plan: e.g. the
  whole-cluster submesh is costed for the whole layer range only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from alpa_mlir.dialect_utils.schedules import ScheduleKind, in_flight

from .cost_source import CostCache, StageCost
from .submesh_space import Cluster, SubmeshShape, logical_shapes, reachable_counts

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class StageTables:
    """The costed search space. `latency[c - 1, i, j, m]` is the least latency of layers
    i..j on submesh m over logical meshes legal in DP state c (inf: none), and
    `logical[...]` that logical mesh's index."""

    latency: FloatArray
    logical: IntArray
    sizes: IntArray
    cap: int
    num_devices: int


@dataclass(frozen=True)
class DPAnswer:
    """A DP answer: (first layer, last layer, submesh index, logical index) and the
    latency of each stage, and their total as the DP summed it."""

    total: float
    stages: tuple[tuple[int, int, int, int], ...]
    latencies: tuple[float, ...]


@dataclass(frozen=True)
class Census:
    """What the cost lookups returned: tuples looked up, None answers, over memory."""

    looked_up: int
    infeasible: int
    over_memory: int


def _usable(num_layers: int, num_devices: int, sizes: Sequence[int]) -> BoolArray:
    """usable[i, j, m]: layers i..j on submesh m occur in some device-covering plan."""
    max_stages = min(num_layers, num_devices)
    reach = reachable_counts(sizes, num_devices, max_stages)
    # union[lo][hi]: counts reachable with lo..hi stages (lo in 0..2: the other stages
    # before and after, each side non-empty iff it has layers).
    union: list[list[int]] = []
    for lo in range(3):
        acc, row = 0, []
        for c in range(max_stages + 1):
            if c >= lo:
                acc |= reach[c]
            row.append(acc)
        union.append(row)
    usable = np.zeros((num_layers, num_layers, len(sizes)), dtype=np.bool_)
    for i in range(num_layers):
        for j in range(i, num_layers):
            after = num_layers - 1 - j
            lo = (i > 0) + (after > 0)
            hi = min(i + after, max_stages)
            if lo > hi:
                continue
            others = union[lo][hi]
            for m, n in enumerate(sizes):
                need = num_devices - n
                usable[i, j, m] = need >= 0 and bool((others >> need) & 1)
    return usable


def cost_tables(
    num_layers: int,
    cluster: Cluster,
    candidates: Sequence[SubmeshShape],
    cache: CostCache,
    num_microbatches: int,
    device_memory_bytes: float | None,
    schedule: ScheduleKind,
) -> tuple[StageTables, Census]:
    """Cost every (range, submesh, logical mesh) that can occur in a device-covering plan
    and keep, per DP state, the fastest one legal under `schedule`'s memory rule."""
    num_devices = cluster.num_devices
    sizes = [s.num_devices for s in candidates]
    shapes = [logical_shapes(s) for s in candidates]
    usable = _usable(num_layers, num_devices, sizes)
    index: list[tuple[int, int, int, int]] = []
    costs: list[StageCost] = []
    looked_up = infeasible = 0
    for i, j, m in zip(*np.nonzero(usable), strict=True):
        for lg, shape in enumerate(shapes[m]):
            looked_up += 1
            found = cache(int(i), int(j), candidates[m], shape)
            if found is None:
                infeasible += 1
                continue
            index.append((int(i), int(j), int(m), lg))
            costs.append(found)

    max_stash = max(1, min(num_microbatches, num_layers, num_devices))
    stash = np.array([in_flight(schedule, s, num_microbatches) for s in range(1, max_stash + 1)],
                     dtype=np.float64)
    # by_stash[k, n]: cost k's latency with stash[n] in flight under its fastest memory
    # plan that fits (inf: none fits); the memory rule is StageCost's alone.
    by_stash = np.array([[c.latency_at(int(n), device_memory_bytes) for n in stash] for c in costs],
                        dtype=np.float64).reshape(len(costs), max_stash)
    # Latencies stop changing at `cap`: a latency at stash n unlike the largest's means n < cap.
    changing = np.nonzero((by_stash != by_stash[:, -1:]).any(axis=0))[0]
    cap = int(changing[-1]) + 2 if len(changing) else 1
    over_memory = int(np.isinf(by_stash[:, 0]).sum()) if len(costs) else 0

    # Per state, the fastest legal logical mesh of each (i, j, m); ties: the first.
    shape = (cap, num_layers, num_layers, len(candidates))
    best_latency = np.full(shape, np.inf, dtype=np.float64)
    best_logical = np.zeros(shape, dtype=np.int64)
    if costs:
        i, j, m, lg = np.array(index, dtype=np.int64).T
        group = (i * num_layers + j) * len(candidates) + m
        for c in range(cap):
            state_latency = by_stash[:, c]
            ranked = np.lexsort((lg, state_latency, group))
            _, first = np.unique(group[ranked], return_index=True)
            pick = ranked[first]
            best_latency[c, i[pick], j[pick], m[pick]] = state_latency[pick]
            best_logical[c, i[pick], j[pick], m[pick]] = lg[pick]
    tables = StageTables(
        latency=best_latency,
        logical=best_logical,
        sizes=np.array(sizes, dtype=np.int64),
        cap=cap,
        num_devices=num_devices,
    )
    return tables, Census(looked_up, infeasible, over_memory)


def solve_ceiling(tables: StageTables, ceiling: float) -> DPAnswer | None:
    """The least (total latency, stage count, stage sequence) plan with every stage
    latency <= ceiling, or None.

    States c = 1..cap: c stages from here to the end (c = cap: cap or more). F[c, k, d]
    covers layers k.. with d devices; its predecessor table is F[c - 1], or for c = cap
    the better of F[cap - 1] and F[cap]. Layers go last to first so that, at layer k,
    every F[., j + 1, .] it needs is final; g[c - 1, j, m, d] holds that predecessor
    shifted by the size of submesh m, i.e. the value of the rest after layers k..j on m.
    """
    cap, num_devices = tables.cap, tables.num_devices
    num_layers, num_submeshes = tables.latency.shape[1], tables.latency.shape[3]
    width = num_devices + 1
    latency = tables.latency
    if math.isfinite(ceiling):
        latency = np.where(latency <= ceiling, latency, np.inf)
    total = np.full((cap + 1, num_layers + 1, width), np.inf)
    count = np.zeros((cap + 1, num_layers + 1, width), dtype=np.int64)
    choice = np.full((cap + 1, num_layers, width), -1, dtype=np.int64)
    from_cap = np.zeros((num_layers + 1, width), dtype=np.bool_)
    total[0, num_layers, 0] = 0.0
    g_total = np.full((cap, num_layers, num_submeshes, width), np.inf)
    g_count = np.zeros((cap, num_layers, num_submeshes, width), dtype=np.int64)
    big = np.iinfo(np.int64).max

    def publish(row: int) -> None:
        """Shift row `row` of each state's predecessor table into g[:, row - 1]."""
        rest_total = total[0:cap, row].copy()
        rest_count = count[0:cap, row].copy()
        low_t, low_n = total[cap - 1, row], count[cap - 1, row]
        high_t, high_n = total[cap, row], count[cap, row]
        take_high = (high_t < low_t) | ((high_t == low_t) & (high_n < low_n))
        from_cap[row] = take_high
        rest_total[cap - 1] = np.where(take_high, high_t, low_t)
        rest_count[cap - 1] = np.where(take_high, high_n, low_n)
        for m, n in enumerate(tables.sizes):
            g_total[:, row - 1, m, n:] = rest_total[:, : width - n]
            g_count[:, row - 1, m, n:] = rest_count[:, : width - n]

    for k in range(num_layers - 1, -1, -1):
        publish(k + 1)
        states = min(cap, num_layers - k)  # at most one stage per layer
        options = latency[:states, k, k:, :].reshape(states, -1)  # (state, (j - k, m))
        columns = np.nonzero(np.isfinite(options).any(axis=0))[0]
        if not len(columns):
            continue
        rest = g_total[:states, k:].reshape(states, -1, width)[:, columns]
        cand = options[:, columns, None] + rest
        best = cand.min(axis=1)
        reached = np.isfinite(best)
        tie = cand == best[:, None, :]
        rest_count = g_count[:states, k:].reshape(states, -1, width)[:, columns]
        cand_count = np.where(tie, rest_count + 1, big)
        best_count = cand_count.min(axis=1)
        pick = (tie & (cand_count == best_count[:, None, :])).argmax(axis=1)
        total[1 : states + 1, k] = np.where(reached, best, np.inf)
        count[1 : states + 1, k] = np.where(reached, best_count, 0)
        choice[1 : states + 1, k] = np.where(reached, columns[pick] + k * num_submeshes, -1)

    finals = [(float(total[c, 0, num_devices]), int(count[c, 0, num_devices]), c)
              for c in range(1, cap + 1)]
    best_total, _, state = min(finals)
    if not math.isfinite(best_total):
        return None
    stages: list[tuple[int, int, int, int]] = []
    latencies: list[float] = []
    layer, devices = 0, num_devices
    while layer < num_layers:
        j, m = divmod(int(choice[state, layer, devices]), num_submeshes)
        stages.append((layer, j, m, int(tables.logical[state - 1, layer, j, m])))
        latencies.append(float(tables.latency[state - 1, layer, j, m]))
        layer, devices = j + 1, devices - int(tables.sizes[m])
        if state < cap:
            state -= 1
        else:
            state = cap if from_cap[layer, devices] else cap - 1
    if state != 0 or devices != 0:  # pragma: no cover - DP invariant
        raise AssertionError(f"stage DP reconstruction ended in state {state}, {devices} devices")
    return DPAnswer(best_total, tuple(stages), tuple(latencies))
