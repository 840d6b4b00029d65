"""alpa_mlir.runtime.devices: local device count, device meshes from sdy meshes, host submeshes.
Runs on 8 fake CPU devices (conftest.py)."""

from __future__ import annotations

import jax
import pytest

from alpa_mlir.dialect_utils import shardy
from alpa_mlir.runtime import devices
from alpa_mlir.runtime.errors import DeviceCountError


def test_xla_flags_device_count() -> None:
    assert devices.xla_flags_cpu_device_count("--xla_force_host_platform_device_count=8") == 8
    assert devices.xla_flags_cpu_device_count("--foo --xla_force_host_platform_device_count=2") == 2
    assert devices.xla_flags_cpu_device_count("--foo") is None


def test_more_devices_than_available_says_how(devs: tuple[jax.Device, ...]) -> None:
    with pytest.raises(DeviceCountError, match=r"64 devices requested but only 8 .*XLA_FLAGS"):
        devices.ensure_local_devices(64)


def test_device_mesh_from_sdy_honours_device_ids(devs: tuple[jax.Device, ...]) -> None:
    mesh = shardy.parse_mesh('<["x"=2, "y"=2], device_ids=[3, 2, 1, 0]>')
    dm = devices.DeviceMesh.from_sdy(mesh, devs[:4])
    assert dm.device_ids == (3, 2, 1, 0)
    jm = dm.jax_mesh()
    assert jm.axis_names == ("x", "y") and jm.devices.shape == (2, 2)
    assert jm.devices[0, 0] == devs[3]
    with pytest.raises(ValueError, match="needs 6 devices"):
        devices.DeviceMesh(devs[:4], (2, 3), ("x", "y"))
    with pytest.raises(ValueError, match="appears twice"):
        devices.DeviceMesh((devs[0], devs[0]), (2,), ("x",))


def test_physical_mesh_submesh(devs: tuple[jax.Device, ...]) -> None:
    cluster = devices.PhysicalMesh.from_devices(devs, devices_per_host=4)
    assert (cluster.num_hosts, cluster.devices_per_host) == (2, 4)
    stage = cluster.submesh(slice(0, 2), slice(2, 4))
    assert [d.id for d in stage.flat_devices] == [2, 3, 6, 7]
    logical = stage.logical((2, 2), ("dp", "mp"))
    assert logical.jax_mesh().shape == {"dp": 2, "mp": 2}
    with pytest.raises(ValueError, match="do not split"):
        devices.PhysicalMesh.from_devices(devs, devices_per_host=3)
