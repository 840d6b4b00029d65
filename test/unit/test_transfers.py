"""alpa_mlir.runtime.transfers: moving arrays between meshes on devices 0-3 and 4-7
(8 fake CPU devices, conftest.py): values, shardings, and the bytes each move counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from alpa_mlir.runtime.transfers import (
    DevicePutTransfer,
    LocalAllGatherTransfer,
    Transfer,
    TransferBytes,
    TransferKind,
    plan_pieces,
    scatter_sharding,
    transfer_for,
)

F32 = 4


@pytest.fixture(scope="module")
def meshes() -> tuple[Mesh, Mesh]:
    devs = jax.devices()
    assert len(devs) >= 8, "conftest.py asks for 8 CPU devices"
    return (Mesh(np.array(devs[:4]).reshape(2, 2), ("x", "y")),
            Mesh(np.array(devs[4:8]).reshape(2, 2), ("x", "y")))


def _array(shape: tuple[int, ...], dtype: jnp.dtype, sharding: jax.sharding.Sharding) -> jax.Array:
    values = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) * 1.5 - 7
    return jax.device_put(jnp.asarray(values, dtype=dtype), sharding)


def _check_moved(out: jax.Array, src: jax.Array, dst: NamedSharding) -> None:
    assert out.sharding == dst
    assert out.dtype == src.dtype and out.shape == src.shape
    expected = np.asarray(src)
    np.testing.assert_array_equal(np.asarray(out), expected)
    for shard in out.addressable_shards:
        assert shard.device in dst.device_set
        np.testing.assert_array_equal(np.asarray(shard.data), expected[shard.index])


CASES = {
    # name: (shape, dtype, source spec on mesh A, destination spec on mesh B)
    "sharded-to-replicated": ((8, 8), jnp.float32, P("x", "y"), P()),
    "replicated-to-sharded": ((8, 8), jnp.float32, P(), P("x", "y")),
    "sharded-to-transposed": ((8, 8), jnp.float32, P("x", "y"), P("y", "x")),
    "row-to-column-sharded": ((8, 12), jnp.float32, P("x", None), P(None, ("x", "y"))),
    "to-partially-replicated": ((8, 6), jnp.float32, P(None, "y"), P("x")),
    "one-dim": ((16,), jnp.float32, P(("x", "y")), P()),
    "scalar": ((), jnp.float32, P(), P()),
    "odd-shape-fallback": ((3, 5), jnp.float32, P(), P()),
    "odd-partial-fallback": ((6, 5), jnp.float32, P(), P("x", None)),
    "bf16": ((4, 8), jnp.bfloat16, P("x"), P()),
    "int32": ((8, 4), jnp.int32, P("y", "x"), P(None, "x")),
}


@pytest.mark.parametrize("kind", list(TransferKind))
@pytest.mark.parametrize("case", list(CASES))
def test_values_and_sharding_after_move(meshes: tuple[Mesh, Mesh], kind: TransferKind,
                                        case: str) -> None:
    a, b = meshes
    shape, dtype, src_spec, dst_spec = CASES[case]
    x = _array(shape, dtype, NamedSharding(a, src_spec))
    dst = NamedSharding(b, dst_spec)
    transfer = transfer_for(kind)
    _check_moved(transfer.move(x, dst), x, dst)
    (record,) = transfer.stats.records
    assert record.src_device_ids == (0, 1, 2, 3) and record.dst_device_ids == (4, 5, 6, 7)
    assert record.global_bytes == x.nbytes
    assert record.seconds >= 0


def test_from_a_single_device(meshes: tuple[Mesh, Mesh]) -> None:
    x = _array((8, 4), jnp.float32, jax.devices()[0])
    dst = NamedSharding(meshes[1], P())
    transfer = LocalAllGatherTransfer()
    _check_moved(transfer.move(x, dst), x, dst)
    assert transfer.stats.records[0].kind is TransferKind.LOCAL_ALL_GATHER
    assert transfer.stats.bytes_crossed == x.nbytes


def test_replicated_destination_crosses_once_with_local_all_gather(meshes: tuple[Mesh, Mesh]) -> None:
    a, b = meshes
    x = _array((8, 8), jnp.float32, NamedSharding(a, P("x", "y")))
    dst = NamedSharding(b, P())
    nbytes, k = 8 * 8 * F32, 4
    plain, gather = DevicePutTransfer(), LocalAllGatherTransfer()
    plain.move(x, dst)
    gather.move(x, dst)
    assert (plain.stats.bytes_crossed, plain.stats.bytes_inside) == (k * nbytes, 0)
    assert gather.stats.bytes_crossed == nbytes < plain.stats.bytes_crossed
    assert gather.stats.bytes_inside == (k - 1) * nbytes
    assert gather.stats.records[0].kind is TransferKind.LOCAL_ALL_GATHER


def test_partially_replicated_destination(meshes: tuple[Mesh, Mesh]) -> None:
    """Replicated over "y" (k=2) in groups of rows: each group's region crosses once."""
    a, b = meshes
    x = _array((8, 8), jnp.float32, NamedSharding(a, P()))
    dst = NamedSharding(b, P("x", None))
    region = 4 * 8 * F32
    plain, gather = DevicePutTransfer(), LocalAllGatherTransfer()
    plain.move(x, dst)
    _check_moved(gather.move(x, dst), x, dst)
    assert plain.stats.bytes_crossed == 4 * region
    assert gather.stats.bytes_crossed == 2 * region
    assert gather.stats.bytes_inside == 2 * (2 - 1) * region


@pytest.mark.parametrize("dst_spec", [P("x", "y"), P(("y", "x"))])
def test_fully_sharded_destination_counts_only_its_slices(meshes: tuple[Mesh, Mesh],
                                                          dst_spec: P) -> None:
    a, b = meshes
    x = _array((8, 8), jnp.float32, NamedSharding(a, P()))
    dst = NamedSharding(b, dst_spec)
    plain, gather = DevicePutTransfer(), LocalAllGatherTransfer()
    plain.move(x, dst)
    _check_moved(gather.move(x, dst), x, dst)
    assert plain.stats.bytes_crossed == gather.stats.bytes_crossed == x.nbytes
    assert plain.stats.bytes_inside == gather.stats.bytes_inside == 0
    assert gather.stats.records[0].kind is TransferKind.DEVICE_PUT  # nothing to gather


def test_scatter_assembles_a_grid_of_pieces(meshes: tuple[Mesh, Mesh]) -> None:
    """Each of 2 destination devices gets half of the last dimension, which 4 source
    blocks (2 x 2 over the first two dimensions) hold in pieces."""
    a, _ = meshes
    x = _array((4, 4, 8), jnp.float32, NamedSharding(a, P("x", "y")))
    pair = Mesh(np.array(jax.devices()[4:6]), ("z",))
    dst = NamedSharding(pair, P())
    assert scatter_sharding(dst, x.shape).spec == P(None, None, "z")
    pieces = plan_pieces(x.shape, x.sharding, scatter_sharding(dst, x.shape))
    assert len(pieces) == 2 * 4
    gather = LocalAllGatherTransfer()
    _check_moved(gather.move(x, dst), x, dst)
    assert (gather.stats.bytes_crossed, gather.stats.bytes_inside) == (x.nbytes, x.nbytes)
    assert gather.stats.records[0].dst_device_ids == (4, 5)


def test_no_divisible_dimension_falls_back_to_device_put(meshes: tuple[Mesh, Mesh]) -> None:
    a, b = meshes
    x = _array((3, 5), jnp.float32, NamedSharding(a, P()))
    dst = NamedSharding(b, P())
    gather = LocalAllGatherTransfer()
    gather.move(x, dst)
    (record,) = gather.stats.records
    assert record.kind is TransferKind.DEVICE_PUT
    assert (record.bytes_crossed, record.bytes_inside) == (4 * x.nbytes, 0)


def test_overlapping_device_sets_cross_nothing(meshes: tuple[Mesh, Mesh]) -> None:
    """Resharding on the source's own devices: every byte is already inside."""
    a, _ = meshes
    x = _array((8, 8), jnp.float32, NamedSharding(a, P("x")))
    dst = NamedSharding(a, P())
    for transfer in (DevicePutTransfer(), LocalAllGatherTransfer()):
        _check_moved(transfer.move(x, dst), x, dst)
        assert transfer.stats.bytes_crossed == 0
    # device_put: each device lacks the other half of the rows.
    assert DevicePutTransfer().estimate(x.shape, x.dtype, x.sharding, dst) == TransferBytes(
        0, 4 * x.nbytes // 2)


def test_stats_accumulate_and_match_estimates(meshes: tuple[Mesh, Mesh]) -> None:
    a, b = meshes
    transfer = LocalAllGatherTransfer()
    x = _array((8, 8), jnp.float32, NamedSharding(a, P("x", "y")))
    y = _array((16,), jnp.int32, NamedSharding(a, P("x")))
    moves = [(x, NamedSharding(b, P())), (y, NamedSharding(b, P("y"))), (x, NamedSharding(b, P()))]
    expected = TransferBytes()
    for array, dst in moves:
        transfer.move(array, dst)
        expected = expected + transfer.estimate(array.shape, array.dtype, array.sharding, dst)
    stats = transfer.stats
    assert stats.count == 3
    assert (stats.bytes_crossed, stats.bytes_inside) == (expected.crossed, expected.inside)
    assert stats.global_bytes == 2 * x.nbytes + y.nbytes
    assert stats.count_by_kind() == {TransferKind.LOCAL_ALL_GATHER: 3}
    assert stats.seconds == sum(r.seconds for r in stats.records)
    stats.clear()
    assert stats.count == 0 and stats.bytes_crossed == 0


def test_scatter_sharding(meshes: tuple[Mesh, Mesh]) -> None:
    _, b = meshes
    assert scatter_sharding(NamedSharding(b, P()), (8, 6)).spec == P(("x", "y"), None)
    assert scatter_sharding(NamedSharding(b, P()), (6, 8)).spec == P(None, ("x", "y"))
    # the largest shard wins: dimension 1 (8 per shard) over dimension 0 (4 per shard)
    assert scatter_sharding(NamedSharding(b, P("x")), (8, 8)).spec == P("x", "y")
    assert scatter_sharding(NamedSharding(b, P("x", "y")), (8, 8)) is None
    assert scatter_sharding(NamedSharding(b, P()), (3, 5)) is None
    assert scatter_sharding(NamedSharding(b, P()), ()) is None


def test_plan_pieces_tile_each_destination_region(meshes: tuple[Mesh, Mesh]) -> None:
    a, b = meshes
    src, dst = NamedSharding(a, P("x", "y")), NamedSharding(b, P(None, ("x", "y")))
    pieces = plan_pieces((8, 8), src, dst)
    for device in dst.device_set:
        mine = [p for p in pieces if p.dst == device]
        assert sum((r1 - r0) * (c1 - c0) for (r0, r1), (c0, c1) in (p.box for p in mine)) == 8 * 2
        assert all(p.src in src.device_set for p in mine)


def test_transfer_for() -> None:
    assert isinstance(transfer_for(), LocalAllGatherTransfer)
    assert isinstance(transfer_for("local-all-gather"), LocalAllGatherTransfer)
    assert isinstance(transfer_for("device-put"), DevicePutTransfer)
    for kind in TransferKind:
        transfer = transfer_for(kind)
        assert isinstance(transfer, Transfer) and transfer.kind is kind
    with pytest.raises(ValueError, match=r"unknown transfer kind 'nccl'.*'device-put'"):
        transfer_for("nccl")


@pytest.mark.parametrize("kind", list(TransferKind))
def test_move_many_equals_moves_one_by_one(meshes: tuple[Mesh, Mesh], kind: TransferKind) -> None:
    """A batch mixes arrays with and without a local all-gather split; each output is
    the moved input in order, with one record (and its bytes) per array."""
    a, b = meshes
    arrays = [_array(shape, dtype, NamedSharding(a, src)) for shape, dtype, src, _ in CASES.values()]
    dsts = [NamedSharding(b, dst) for _, _, _, dst in CASES.values()]
    batched, single = transfer_for(kind), transfer_for(kind)
    outs = batched.move_many(arrays, dsts)
    assert len(outs) == len(arrays)
    for out, x, dst in zip(outs, arrays, dsts, strict=True):
        _check_moved(out, x, dst)
        single.move(x, dst)
    assert batched.stats.count == len(arrays)
    assert (batched.stats.bytes_crossed, batched.stats.bytes_inside) == (
        single.stats.bytes_crossed, single.stats.bytes_inside)
    assert batched.stats.count_by_kind() == single.stats.count_by_kind()
    assert batched.move_many([], []) == []


def test_device_copier_takes_the_batched_copy_only_for_equal_layouts(meshes: tuple[Mesh, Mesh]) -> None:
    """Shard k to shard k (same spec on another mesh) is one batched copy; other layouts
    go to the reshard given (here: the piece-wise copy), and every result is exact."""
    from alpa_mlir.dialect_utils.jax_internals import DeviceCopier
    from alpa_mlir.runtime.transfers import _scatter

    a, b = meshes
    copier = DeviceCopier()
    same = (_array((8, 8), jnp.float32, NamedSharding(a, P("x", "y"))), NamedSharding(b, P("x", "y")))
    other = (_array((8, 12), jnp.float32, NamedSharding(a, P("x", None))), NamedSharding(b, P(None, ("x", "y"))))
    assert copier.same_layout(same[0].sharding, same[1], 2)
    assert not copier.same_layout(other[0].sharding, other[1], 2)
    resharded: list[jax.Array] = []

    def reshard(x: jax.Array, dst: NamedSharding) -> jax.Array:
        resharded.append(x)
        return _scatter(x, dst)

    outs = copier.copy([same[0], other[0]], [same[1], other[1]], reshard=reshard)
    assert resharded == [other[0]]
    for out, (src, dst) in zip(outs, (same, other), strict=True):
        _check_moved(out, src, dst)
