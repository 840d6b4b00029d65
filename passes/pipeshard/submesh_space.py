"""The cluster and the submesh shapes the stage DP may give a stage (Alpa, OSDI'22, 5.2).

Holds the value types `Cluster` (hosts x devices per host), `SubmeshShape` (a physical
submesh) and `LogicalShape` (dp, mp); the candidate lists `submesh_shapes` (by
`SubmeshSpace`) and `logical_shapes`; the checks that a submesh fits a cluster; and
`reachable_counts`, the device counts that sums of submesh sizes can make. Pure: reads
its arguments only, writes nothing.

    cluster 2x4, power-of-two space:   (1, 1) (1, 2) (1, 4)   (2, 4)
                                       single-host slices     whole hosts
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

LogicalShape = tuple[int, int]
"""(data parallel, model parallel) degrees of a logical mesh."""


class SubmeshSpace(enum.Enum):
    """Which physical submesh shapes the DP may assign to a stage."""

    POWER_OF_TWO = "power-of-two"
    """(1, 1), (1, 2), (1, 4), ..., (1, P) and (k, P) for k = 2..H (Alpa's default)."""
    ALL = "all"
    """(1, p) for every p dividing P, and (k, P) for k = 2..H."""


@dataclass(frozen=True)
class Cluster:
    """`hosts` hosts of `devices_per_host` devices each."""

    hosts: int
    devices_per_host: int

    def __post_init__(self) -> None:
        if self.hosts < 1 or self.devices_per_host < 1:
            raise ValueError(
                f"Cluster needs hosts >= 1 and devices_per_host >= 1, got "
                f"hosts={self.hosts}, devices_per_host={self.devices_per_host}"
            )

    @property
    def num_devices(self) -> int:
        return self.hosts * self.devices_per_host

    def __str__(self) -> str:
        return f"{self.hosts}x{self.devices_per_host}"


@dataclass(frozen=True, order=True)
class SubmeshShape:
    """A physical submesh: `devices` devices on each of `hosts` hosts."""

    hosts: int
    devices: int

    def __post_init__(self) -> None:
        if self.hosts < 1 or self.devices < 1:
            raise ValueError(
                f"SubmeshShape needs hosts >= 1 and devices >= 1, got "
                f"hosts={self.hosts}, devices={self.devices}"
            )

    @property
    def num_devices(self) -> int:
        return self.hosts * self.devices

    def __str__(self) -> str:
        return f"({self.hosts}, {self.devices})"


def submesh_shapes(
    cluster: Cluster, mode: SubmeshSpace = SubmeshSpace.POWER_OF_TWO
) -> tuple[SubmeshShape, ...]:
    """Alpa's candidate submeshes, by device count: single-host slices, then whole hosts."""
    per_host = cluster.devices_per_host
    if mode is SubmeshSpace.POWER_OF_TWO:
        if per_host & (per_host - 1):
            raise ValueError(
                f"submesh space {mode.value!r} needs devices_per_host to be a power of two, "
                f"got cluster {cluster}; use {SubmeshSpace.ALL.value!r}"
            )
        widths = [1 << e for e in range(per_host.bit_length())]
    elif mode is SubmeshSpace.ALL:
        widths = [p for p in range(1, per_host + 1) if per_host % p == 0]
    else:  # pragma: no cover - exhaustive over the enum
        raise ValueError(f"unknown submesh space {mode!r}")
    shapes = [SubmeshShape(1, p) for p in widths]
    shapes += [SubmeshShape(k, per_host) for k in range(2, cluster.hosts + 1)]
    return tuple(shapes)


def logical_shapes(submesh: SubmeshShape) -> tuple[LogicalShape, ...]:
    """Every (dp, mp) with dp * mp = the submesh's devices, model parallelism ascending."""
    n = submesh.num_devices
    return tuple((n // mp, mp) for mp in range(1, n + 1) if n % mp == 0)


def check_submesh(submesh: SubmeshShape, cluster: Cluster, what: str) -> None:
    """Raise ValueError (naming `what`) when `submesh` does not fit in `cluster`."""
    if submesh.hosts > cluster.hosts or submesh.devices > cluster.devices_per_host:
        raise ValueError(
            f"{what}: submesh {submesh} does not fit cluster {cluster} "
            f"(at most {cluster.hosts} hosts of {cluster.devices_per_host} devices)"
        )


def check_submeshes(candidates: Sequence[SubmeshShape], cluster: Cluster) -> None:
    """Raise ValueError unless the DP's candidates are non-empty, distinct and fit."""
    if not candidates:
        raise ValueError("plan_stages needs at least one candidate submesh shape")
    if len(set(candidates)) != len(candidates):
        raise ValueError(f"candidate submeshes repeat a shape: {[str(s) for s in candidates]}")
    for submesh in candidates:
        check_submesh(submesh, cluster, "candidate submeshes")


def reachable_counts(sizes: Sequence[int], num_devices: int, max_stages: int) -> list[int]:
    """reach[c]: bitmask of the device counts <= num_devices that c stages can use."""
    mask = (1 << (num_devices + 1)) - 1
    reach = [1]
    for _ in range(max_stages):
        previous = reach[-1]
        step = 0
        for n in sizes:
            step |= previous << n
        reach.append(step & mask)
    return reach
