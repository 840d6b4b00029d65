"""alpa_mlir.runtime.hlo_sharding: compiled (XLA OpSharding) shardings as NamedShardings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
import pytest

from alpa_mlir.runtime import hlo_sharding
from alpa_mlir.runtime.errors import UnsupportedModuleError


@dataclass(frozen=True)
class FakeOpSharding:
    """The attributes of jaxlib's OpSharding that `hlo_sharding` reads."""

    tile_assignment_dimensions: list[int]
    iota_reshape_dims: list[int] = field(default_factory=list)
    iota_transpose_perm: list[int] = field(default_factory=list)
    tile_assignment_devices: list[int] = field(default_factory=list)
    replicate_on_last_tile_dim: bool = False
    last_tile_dims: list[Any] = field(default_factory=list)
    type: str = "OpSharding_Type.OTHER"


@pytest.mark.parametrize(
    ("op", "shape"),
    [
        (FakeOpSharding([2, 4], [8], [0]), (4, 8)),
        (FakeOpSharding([4, 2], [2, 4], [1, 0]), (8, 4)),
        (FakeOpSharding([2, 1, 4], [8], [0], replicate_on_last_tile_dim=True), (4, 6)),
        (FakeOpSharding([4, 1, 2], [2, 4], [1, 0], replicate_on_last_tile_dim=True), (8, 3)),
        (FakeOpSharding([1, 8], [8], [0]), (3, 16)),
        (FakeOpSharding([2, 2, 2], [2, 2, 2], [2, 0, 1]), (2, 4, 6)),
        (FakeOpSharding([8], tile_assignment_devices=list(range(8))), (16,)),
    ],
)
def test_compiled_sharding_as_named_sharding(op: FakeOpSharding, shape: tuple[int, ...],
                                             devs: tuple[jax.Device, ...]) -> None:
    rank = len(shape)
    named = hlo_sharding.named_sharding(op, rank, devs, "argument 0")
    tiles = hlo_sharding.tile_assignment(op)
    indices = named.devices_indices_map(shape)
    for p, device in enumerate(devs):
        coords = np.argwhere(tiles == p)[0]
        for j in range(rank):
            chunk = shape[j] // tiles.shape[j]
            start, stop, _ = indices[device][j].indices(shape[j])
            assert (start, stop) == (coords[j] * chunk, (coords[j] + 1) * chunk), (p, j)
    assert list(named.mesh.devices.flat) == list(devs)  # the executable's device order


def test_compiled_sharding_without_iota_order_is_refused(devs: tuple[jax.Device, ...]) -> None:
    op = FakeOpSharding([2, 4], tile_assignment_devices=[7, 6, 5, 4, 3, 2, 1, 0])
    with pytest.raises(UnsupportedModuleError, match="cannot be expressed"):
        hlo_sharding.named_sharding(op, 2, devs, "argument 3")
    maximal = FakeOpSharding([], type="OpSharding_Type.MAXIMAL")
    with pytest.raises(UnsupportedModuleError, match="argument 3: compiled sharding of type MAXIMAL"):
        hlo_sharding.named_sharding(maximal, 2, devs, "argument 3")
