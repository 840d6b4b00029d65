"""Local devices, and devices arranged as meshes.

```
 PhysicalMesh  hosts x devices-per-host grid of jax.Devices   (what the machine has)
     │ .submesh(hosts, devices)        -> PhysicalMesh (a pipeline stage's slice)
     │ .logical(shape, axis_names)     -> DeviceMesh
     ▼
 DeviceMesh    devices in mesh-position order (row-major) + shape + axis names
     │ .jax_mesh()                     -> jax.sharding.Mesh
     ▼
 an executable's device assignment: partition p runs on DeviceMesh.devices[p]
```

On CPU, `ensure_local_devices(n)` makes jax create n fake devices; that works only
before the first use of jax's backend, so tools call it before anything else touches jax.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh as JaxMesh

from alpa_mlir.dialect_utils import shardy

from .errors import DeviceCountError

Shape = tuple[int, ...]

_FORCE_COUNT = re.compile(r"--xla_force_host_platform_device_count=(\d+)")

MORE_DEVICES_HINT = (
    "on CPU, start the process with XLA_FLAGS=--xla_force_host_platform_device_count=N "
    "(or call jax.config.update('jax_num_cpu_devices', N) before jax's first use)"
)


def xla_flags_cpu_device_count(flags: str) -> int | None:
    """The fake CPU device count `--xla_force_host_platform_device_count` sets, if any."""
    found = _FORCE_COUNT.findall(flags)
    return int(found[-1]) if found else None


def _configured_cpu_device_count() -> int:
    """How many CPU devices jax will create: its config, else XLA_FLAGS, else 1."""
    configured = int(getattr(jax.config, "jax_num_cpu_devices", -1))
    if configured > 0:
        return configured
    return xla_flags_cpu_device_count(os.environ.get("XLA_FLAGS", "")) or 1


def ensure_local_devices(n: int) -> tuple[jax.Device, ...]:
    """At least `n` local devices of the default backend; returns the first `n`.

    When the CPU backend would have fewer than `n` devices, asks jax for `n` fake ones
    (`jax_num_cpu_devices`). That only works before the backend starts: afterwards a
    `DeviceCountError` explains how to start the process with more devices.
    """
    if n < 1:
        raise ValueError(f"need at least one device, got {n}")
    if _configured_cpu_device_count() < n:
        # Raises RuntimeError once the backend is up: the count check below reports it.
        with contextlib.suppress(RuntimeError):
            jax.config.update("jax_num_cpu_devices", n)
    return local_devices(n)


def local_devices(n: int) -> tuple[jax.Device, ...]:
    """The first `n` local devices of the default backend (no configuration)."""
    available = jax.local_devices()
    if len(available) < n:
        platform = available[0].platform if available else "unknown"
        raise DeviceCountError(
            f"{n} devices requested but only {len(available)} {platform} device(s) are "
            f"available; {MORE_DEVICES_HINT}"
        )
    return tuple(available[:n])


@dataclass(frozen=True)
class DeviceMesh:
    """Devices arranged as a logical mesh with named axes.

    `devices` lists the devices in mesh-position order (row-major over `shape`). That is
    also the device assignment of executables compiled for this mesh: partition p runs
    on `devices[p]`, so `jax_mesh()`'s flat device order equals the executable's.
    """

    devices: tuple[jax.Device, ...]
    shape: Shape
    axis_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.shape) != len(self.axis_names):
            raise ValueError(f"mesh shape {self.shape} and axis names {self.axis_names} differ in length")
        if len(set(self.axis_names)) != len(self.axis_names):
            raise ValueError(f"duplicate mesh axis names in {self.axis_names}")
        if any(s < 1 for s in self.shape):
            raise ValueError(f"mesh axis sizes must be positive, got {self.shape}")
        if len(self.devices) != math.prod(self.shape):
            raise ValueError(
                f"a mesh of shape {self.shape} needs {math.prod(self.shape)} devices, "
                f"got {len(self.devices)}"
            )
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"a device appears twice in the mesh: {[d.id for d in self.devices]}")

    @classmethod
    def single(cls, device: jax.Device) -> DeviceMesh:
        """A 0-d mesh of one device (for unpartitioned programs)."""
        return cls((device,), (), ())

    @classmethod
    def from_sdy(cls, mesh: shardy.Mesh, devices: Sequence[jax.Device]) -> DeviceMesh:
        """The devices for an `sdy.mesh`: position k of the mesh gets
        `devices[mesh.device_ids[k]]` (or `devices[k]` without device_ids)."""
        ids = mesh.device_ids if mesh.device_ids is not None else tuple(range(mesh.size))
        if len(ids) != mesh.size:
            raise ValueError(f"sdy mesh {mesh.text()} lists {len(ids)} device ids for {mesh.size} devices")
        if ids and max(ids) >= len(devices):
            raise DeviceCountError(
                f"sdy mesh {mesh.text()} needs device ids up to {max(ids)} but only "
                f"{len(devices)} devices were given"
            )
        return cls(tuple(devices[i] for i in ids), mesh.shape, mesh.axis_names)

    @property
    def size(self) -> int:
        return len(self.devices)

    @property
    def device_ids(self) -> tuple[int, ...]:
        """`jax.Device.id` of each mesh position."""
        return tuple(d.id for d in self.devices)

    def axis_size(self, name: str) -> int:
        if name not in self.axis_names:
            raise KeyError(f"mesh has no axis {name!r} (axes: {self.axis_names})")
        return self.shape[self.axis_names.index(name)]

    def jax_mesh(self) -> JaxMesh:
        grid = np.empty(len(self.devices), dtype=object)
        grid[:] = list(self.devices)
        return JaxMesh(grid.reshape(self.shape), self.axis_names)

    def describe(self) -> str:
        """`x=2 y=4 on devices [0..7]`, for summaries."""
        platform = self.devices[0].platform
        if not self.shape:
            return f"single {platform} device {self.devices[0].id}"
        axes = " ".join(f"{n}={s}" for n, s in zip(self.axis_names, self.shape, strict=True))
        ids = list(self.device_ids)
        span = f"[{ids[0]}..{ids[-1]}]" if ids == list(range(ids[0], ids[0] + len(ids))) else str(ids)
        return f"{axes} on {platform} devices {span}"


@dataclass(frozen=True)
class PhysicalMesh:
    """Physical devices as hosts x devices-per-host (a pipeline runtime slices stages
    out of it; a single process is one host unless told otherwise)."""

    devices: tuple[tuple[jax.Device, ...], ...]  # [host][device]

    def __post_init__(self) -> None:
        widths = {len(row) for row in self.devices}
        if len(widths) != 1 or 0 in widths:
            raise ValueError(f"every host needs the same, nonzero number of devices, got {sorted(widths)}")

    @classmethod
    def from_devices(cls, devices: Sequence[jax.Device], devices_per_host: int | None = None) -> PhysicalMesh:
        """Split `devices` into hosts of `devices_per_host` (default: one host)."""
        per_host = devices_per_host or len(devices)
        if per_host < 1 or len(devices) % per_host:
            raise ValueError(f"{len(devices)} devices do not split into hosts of {per_host}")
        rows = tuple(tuple(devices[i:i + per_host]) for i in range(0, len(devices), per_host))
        return cls(rows)

    @property
    def num_hosts(self) -> int:
        return len(self.devices)

    @property
    def devices_per_host(self) -> int:
        return len(self.devices[0])

    @property
    def flat_devices(self) -> tuple[jax.Device, ...]:
        return tuple(d for row in self.devices for d in row)

    def submesh(self, hosts: slice, devices: slice) -> PhysicalMesh:
        """The devices `devices` of each host in `hosts` (Python slices)."""
        return PhysicalMesh(tuple(row[devices] for row in self.devices[hosts]))

    def logical(self, shape: Shape, axis_names: tuple[str, ...]) -> DeviceMesh:
        """These devices (host-major) viewed as a logical mesh of `shape`."""
        return DeviceMesh(self.flat_devices, shape, axis_names)
