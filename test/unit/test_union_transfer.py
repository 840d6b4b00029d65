"""alpa_mlir.runtime.union_transfer: moving arrays between disjoint meshes with one
program over their union (8 fake CPU devices in one process, conftest.py's `devs`): values,
shardings, the rounds, refusals, the program cache and cross-process bytes."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, Sharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from alpa_mlir.runtime.pieces import count_bytes, plan_pieces, scatter_sharding
from alpa_mlir.runtime.union_transfer import (
    UnionMover,
    plan_union,
    union_move,
)


@pytest.fixture(scope="module")
def mover() -> UnionMover:
    return UnionMover()


def _mesh(devices: Sequence[jax.Device], shape: tuple[int, ...], names: tuple[str, ...]) -> Mesh:
    return Mesh(np.array(devices, dtype=object).reshape(shape), names)


def _values(shape: tuple[int, ...], dtype: jnp.dtype) -> np.ndarray:
    return np.asarray(np.arange(int(np.prod(shape))).reshape(shape) * 3 - 7, dtype=dtype)


def _check(out: jax.Array, x: np.ndarray, dst: NamedSharding) -> None:
    assert out.sharding.is_equivalent_to(dst, x.ndim)
    assert out.shape == x.shape and out.dtype == x.dtype
    for shard in out.addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), x[shard.index])
    np.testing.assert_array_equal(np.asarray(out), x)


def _move(mover: UnionMover, x: np.ndarray, src: Sharding, dst: NamedSharding) -> None:
    out = mover.move(jax.device_put(x, src), dst)
    _check(out, x, dst)


def test_sharded_2x2_to_replicated(mover: UnionMover, devs: tuple[jax.Device, ...]) -> None:
    src = NamedSharding(_mesh(devs[:4], (2, 2), ("x", "y")), P("x", "y"))
    dst = NamedSharding(_mesh(devs[4:8], (4,), ("z",)), P())
    _move(mover, _values((8, 8), jnp.float32), src, dst)


def test_sharded_to_other_sharding(mover: UnionMover, devs: tuple[jax.Device, ...]) -> None:
    src = NamedSharding(_mesh(devs[:4], (2, 2), ("x", "y")), P("x", "y"))
    dst = NamedSharding(_mesh(devs[4:8], (2, 2), ("x", "y")), P(None, ("y", "x")))
    _move(mover, _values((8, 8), jnp.float32), src, dst)


def test_replicated_over_two_to_sharded_over_four(mover: UnionMover,
                                                  devs: tuple[jax.Device, ...]) -> None:
    src = NamedSharding(_mesh(devs[:2], (2,), ("a",)), P())
    dst = NamedSharding(_mesh(devs[4:8], (4,), ("z",)), P("z"))
    _move(mover, _values((8, 4), jnp.float32), src, dst)


def test_two_devices_to_six(mover: UnionMover, devs: tuple[jax.Device, ...]) -> None:
    src = NamedSharding(_mesh(devs[:2], (2,), ("a",)), P(None, "a"))
    dst = NamedSharding(_mesh(devs[2:8], (2, 3), ("p", "q")), P("q", "p"))
    _move(mover, _values((6, 4), jnp.float32), src, dst)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.int32])
def test_other_dtypes(mover: UnionMover, devs: tuple[jax.Device, ...], dtype: jnp.dtype) -> None:
    src = NamedSharding(_mesh(devs[:4], (4,), ("a",)), P("a"))
    dst = NamedSharding(_mesh(devs[4:8], (2, 2), ("x", "y")), P("y"))
    _move(mover, _values((8, 2), dtype), src, dst)


def test_single_device_source_and_scalar(mover: UnionMover, devs: tuple[jax.Device, ...]) -> None:
    dst = NamedSharding(_mesh(devs[4:8], (4,), ("z",)), P())
    _move(mover, _values((4, 3), jnp.float32), SingleDeviceSharding(devs[0]), dst)
    _move(mover, _values((), jnp.float32), SingleDeviceSharding(devs[1]), dst)


def test_scatter_target(mover: UnionMover, devs: tuple[jax.Device, ...]) -> None:
    """The first step of Alpa's local all-gather: the destination's scatter sharding."""
    shape = (8, 6)
    replicated = NamedSharding(_mesh(devs[4:8], (2, 2), ("x", "y")), P(None, "y"))
    dst = scatter_sharding(replicated, shape)
    assert dst is not None and dst != replicated
    src = NamedSharding(_mesh(devs[:4], (2, 2), ("x", "y")), P("x", "y"))
    _move(mover, _values(shape, jnp.float32), src, dst)


def test_rounds_send_and_receive_once(devs: tuple[jax.Device, ...]) -> None:
    src = NamedSharding(_mesh(devs[:4], (2, 2), ("x", "y")), P("x", "y"))
    dst = NamedSharding(_mesh(devs[4:8], (4,), ("z",)), P())
    plan = plan_union((8, 8), src, dst)
    assert [d.id for d in plan.devices] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert plan.src_shard_shape == (4, 4) and plan.dst_shard_shape == (8, 8)
    assert len(plan.rounds) == 4  # each of 4 destinations needs 4 pieces of 4x4
    for r in plan.rounds:
        senders, receivers = [s for s, _ in r.perm], [d for _, d in r.perm]
        assert len(set(senders)) == len(senders) and len(set(receivers)) == len(receivers)
        assert set(senders) <= {0, 1, 2, 3} and set(receivers) <= {4, 5, 6, 7}
        assert [k for k, got in enumerate(r.receives) if got] == sorted(receivers)


def test_overlapping_meshes_refused(devs: tuple[jax.Device, ...]) -> None:
    src = NamedSharding(_mesh(devs[:4], (4,), ("a",)), P("a"))
    dst = NamedSharding(_mesh(devs[2:6], (4,), ("a",)), P())
    array = jax.device_put(_values((8,), jnp.float32), src)
    with pytest.raises(ValueError, match=r"\[0, 1, 2, 3\].*\[2, 3, 4, 5\]"):
        union_move(array, dst)


def test_uneven_shards_refused(devs: tuple[jax.Device, ...]) -> None:
    """Rows hold whole shards: jax's `shard_shape` refuses a tiling with uneven shards."""
    src = NamedSharding(_mesh(devs[:2], (2,), ("a",)), P("a"))
    dst = NamedSharding(_mesh(devs[4:6], (2,), ("a",)), P())
    with pytest.raises(ValueError, match="evenly divide"):
        plan_union((3, 2), src, dst)


def test_compiles_once_per_key(devs: tuple[jax.Device, ...]) -> None:
    mover = UnionMover()
    src = NamedSharding(_mesh(devs[:2], (2,), ("a",)), P("a"))
    dst = NamedSharding(_mesh(devs[2:4], (2,), ("b",)), P())
    x = _values((4, 2), jnp.float32)
    for _ in range(3):
        _check(mover.move(jax.device_put(x, src), dst), x, dst)
    assert mover.cache_size == 1
    assert [e.program._cache_size() for e in mover.entries()] == [1]  # type: ignore[attr-defined]
    mover.move(jax.device_put(x.astype(np.int32), src), dst)
    assert mover.cache_size == 2


def test_cross_process_bytes_zero_in_one_process(devs: tuple[jax.Device, ...]) -> None:
    src = NamedSharding(_mesh(devs[:4], (2, 2), ("x", "y")), P("x", "y"))
    dst = NamedSharding(_mesh(devs[4:8], (4,), ("z",)), P())
    assert count_bytes(plan_pieces((8, 8), src, dst), 4, set(dst.device_set)).across_processes == 0
