"""Cluster descriptions: devices, memory, links. Presets ship as JSON beside this module.

A cluster is `hosts x devices_per_host` devices with a peak FLOP rate (and optionally one
per compute element type, `peak_flops_by_dtype`: V100 tensor cores run fp16 8x faster
than fp32) and memory each,
an intra-host and an inter-host link (bandwidth in bytes/s, latency in s), and the link
between a device and its host's memory (`host_link`, what offloading activations
crosses; default `DEFAULT_HOST_LINK`, PCIe 3.0 x16). The preset
name may carry a host count: `p3.16xlarge-x8` is 8 such nodes. A logical mesh laid
row-major over the cluster's devices gets per axis: beta = 1/bandwidth and alpha =
latency of the slowest link the axis crosses (an axis crosses hosts when its stride times
its size exceeds devices_per_host). `mesh_alpha` / `mesh_beta` in the JSON override that
(Alpa's abstract alpha=(1,1), beta=(1,0.1) is the `alpa-abstract` preset).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from .mesh import LogicalMesh

PRESET_PACKAGE = "alpa_mlir.passes.sharding"
PRESET_DIR = "clusters"


class ClusterError(ValueError):
    """An unknown preset, an unreadable file or a malformed description."""


@dataclass(frozen=True)
class Link:
    bandwidth: float  # bytes/s
    latency: float  # s


DEFAULT_HOST_LINK = Link(1.2e10, 1e-5)
"""Device <-> host memory when a description names none: PCIe 3.0 x16 (16 GB/s peak,
about 12 GB/s in practice), as on the V100s of p3.16xlarge."""


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    hosts: int
    devices_per_host: int
    peak_flops: float  # FLOP/s per device
    memory_bytes: float  # per device
    intra_host: Link
    inter_host: Link
    mesh_alpha: tuple[float, ...] | None = None  # explicit per-axis overrides
    mesh_beta: tuple[float, ...] | None = None
    host_link: Link = DEFAULT_HOST_LINK  # device <-> host memory
    peak_flops_by_dtype: tuple[tuple[str, float], ...] = ()  # (MLIR element type, FLOP/s); others: peak_flops

    def __post_init__(self) -> None:
        if self.hosts < 1 or self.devices_per_host < 1:
            raise ClusterError(f"cluster {self.name}: hosts and devices_per_host must be >= 1")
        for what, value in (
            ("peak_flops", self.peak_flops),
            ("memory_bytes", self.memory_bytes),
            ("intra_host.bandwidth", self.intra_host.bandwidth),
            ("inter_host.bandwidth", self.inter_host.bandwidth),
            ("host_link.bandwidth", self.host_link.bandwidth),
            *((f"peak_flops_by_dtype.{dtype}", peak) for dtype, peak in self.peak_flops_by_dtype),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ClusterError(f"cluster {self.name}: {what} must be a finite number > 0, got {value}")
        latencies = [("intra_host.latency", self.intra_host.latency), ("inter_host.latency", self.inter_host.latency),
                     ("host_link.latency", self.host_link.latency)]
        latencies += [("mesh_alpha", v) for v in self.mesh_alpha or ()]
        latencies += [("mesh_beta", v) for v in self.mesh_beta or ()]
        for what, value in latencies:
            if not (math.isfinite(value) and value >= 0):
                raise ClusterError(f"cluster {self.name}: {what} must be a finite number >= 0, got {value}")

    def flop_costs(self) -> dict[str, float]:
        """Seconds per FLOP per element type the description names (`RuleContext`)."""
        return {dtype: 1.0 / peak for dtype, peak in self.peak_flops_by_dtype}

    @property
    def num_devices(self) -> int:
        return self.hosts * self.devices_per_host

    def with_hosts(self, hosts: int) -> ClusterSpec:

        return replace(self, name=f"{self.name}-x{hosts}", hosts=hosts)

    def logical_mesh(self, shape: tuple[int, ...], names: tuple[str, ...]) -> LogicalMesh:
        """The mesh `shape` laid row-major over this cluster's devices."""
        if math.prod(shape) > self.num_devices:
            raise ClusterError(
                f"mesh {'x'.join(map(str, shape))} needs {math.prod(shape)} devices; "
                f"cluster {self.name} has {self.num_devices}"
            )
        alphas: list[float] = []
        betas: list[float] = []
        for i, size in enumerate(shape):
            stride = math.prod(shape[i + 1:])
            link = self.inter_host if stride * size > self.devices_per_host else self.intra_host
            alphas.append(link.latency)
            betas.append(1.0 / link.bandwidth)
        if self.mesh_alpha is not None:
            alphas = [self.mesh_alpha[min(i, len(self.mesh_alpha) - 1)] for i in range(len(shape))]
        if self.mesh_beta is not None:
            betas = [self.mesh_beta[min(i, len(self.mesh_beta) - 1)] for i in range(len(shape))]
        return LogicalMesh(tuple(shape), tuple(names), tuple(alphas), tuple(betas))


def cluster_from_dict(data: dict[str, Any], origin: str) -> ClusterSpec:
    parts = [("the file", data)]
    if isinstance(data, dict):
        parts += [(k, data[k]) for k in ("device", "intra_host", "inter_host", "host_link") if k in data]
    for where, value in parts:
        if not isinstance(value, dict):
            raise ClusterError(f"cluster {origin}: {where} must be a JSON object, got {type(value).__name__} "
                               "(keys: name, hosts, devices_per_host, device, intra_host, inter_host, host_link)")
    try:
        device = data["device"]
        intra, inter = data["intra_host"], data["inter_host"]
        host = data.get("host_link")
        return ClusterSpec(
            name=str(data.get("name", origin)),
            hosts=int(data["hosts"]),
            devices_per_host=int(data["devices_per_host"]),
            peak_flops=float(device["peak_flops"]),
            memory_bytes=float(device["memory_bytes"]),
            intra_host=Link(float(intra["bandwidth"]), float(intra["latency"])),
            inter_host=Link(float(inter["bandwidth"]), float(inter["latency"])),
            mesh_alpha=tuple(map(float, data["mesh_alpha"])) if "mesh_alpha" in data else None,
            mesh_beta=tuple(map(float, data["mesh_beta"])) if "mesh_beta" in data else None,
            host_link=(DEFAULT_HOST_LINK if host is None
                       else Link(float(host["bandwidth"]), float(host["latency"]))),
            peak_flops_by_dtype=_peaks(device.get("peak_flops_by_dtype", {}), origin),
        )
    except KeyError as e:
        raise ClusterError(f"cluster {origin}: missing key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        if isinstance(e, ClusterError):
            raise
        raise ClusterError(f"cluster {origin}: {e}") from None


def _peaks(data: Any, origin: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(data, dict):
        raise ClusterError(f"cluster {origin}: device.peak_flops_by_dtype must be a JSON object of element "
                           f"type -> FLOP/s (e.g. {{\"f16\": 1.25e14, \"f32\": 1.57e13}}), got {type(data).__name__}")
    return tuple(sorted((str(dtype), float(peak)) for dtype, peak in data.items()))


def preset_names() -> list[str]:
    files = resources.files(PRESET_PACKAGE).joinpath(PRESET_DIR)
    return sorted(p.name[: -len(".json")] for p in files.iterdir() if p.name.endswith(".json"))


def load_cluster(name_or_path: str) -> ClusterSpec:
    """A preset (`p3.16xlarge`, `p3.16xlarge-x8`) or a JSON file path."""
    if name_or_path.endswith(".json") or "/" in name_or_path:
        path = Path(name_or_path)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise ClusterError(f"cannot read cluster file '{name_or_path}': {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ClusterError(f"cluster file '{name_or_path}' is not valid JSON: {e.msg} (line {e.lineno})") from None
        return cluster_from_dict(data, name_or_path)
    m = re.fullmatch(r"(.+?)(?:-x(\d+))?", name_or_path)
    base, hosts = (m.group(1), m.group(2)) if m else (name_or_path, None)
    if base not in preset_names():
        raise ClusterError(
            f"unknown cluster '{name_or_path}' (presets: {', '.join(preset_names())}; "
            "or a path to a .json file)"
        )
    text = resources.files(PRESET_PACKAGE).joinpath(PRESET_DIR, f"{base}.json").read_text()
    spec = cluster_from_dict(json.loads(text), base)
    return spec.with_hosts(int(hosts)) if hosts else spec
