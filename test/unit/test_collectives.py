"""alpa_mlir.runtime.collectives: collectives counted in HLO text, and in real compiles of
each kind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import pytest
from conftest import F32, parse, run_against_reference
from jax.extend.mlir import ir
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alpa_mlir.runtime import collectives
from alpa_mlir.runtime.collectives import CollectiveKind


def _auto_mesh_sharding(*spec: Any) -> NamedSharding:
    auto = (jax.sharding.AxisType.Auto,) * 2
    return NamedSharding(jax.make_mesh((2, 4), ("x", "y"), axis_types=auto), P(*spec))


@pytest.mark.parametrize(
    ("fn", "in_spec", "out_spec", "kind", "shape", "group_size"),
    [
        # a row-sharded value returned replicated: one all-gather over "x"
        (lambda a: a * 2, ("x", None), (), CollectiveKind.ALL_GATHER, (16, 16), 2),
        # rows over "y" constrained to columns over "y": one all-to-all
        (lambda a: jax.lax.with_sharding_constraint(a * 2, _auto_mesh_sharding(None, "y")),
         ("y", None), None, CollectiveKind.ALL_TO_ALL, (4, 4, 4), 4),
        # a roll along the sharded dimension: the halo moves by collective-permute
        (lambda a: jnp.roll(a, 1, axis=0), ("x", None), None, CollectiveKind.COLLECTIVE_PERMUTE,
         (1, 16), None),
    ],
    ids=["all-gather", "all-to-all", "collective-permute"],
)
def test_collective_kinds_from_jax(fn: Callable[[jax.Array], jax.Array], in_spec: tuple[Any, ...],
                                   out_spec: tuple[Any, ...] | None, kind: CollectiveKind,
                                   shape: tuple[int, ...], group_size: int | None,
                                   ctx: ir.Context, devs: tuple[jax.Device, ...]) -> None:
    out = None if out_spec is None else _auto_mesh_sharding(*out_spec)
    text = jax.jit(fn, in_shardings=_auto_mesh_sharding(*in_spec), out_shardings=out).lower(
        jax.ShapeDtypeStruct((16, 16), F32)).as_text()
    program, report = run_against_reference(parse(text, ctx), devs)
    assert report.passed
    stats = program.collectives
    assert stats is not None and stats.total == 1 and stats.count(kind) == 1
    (collective,) = stats.collectives
    assert collective.shapes == (("f32", shape),) and collective.group_size == group_size


HLO_TEXT = """
ENTRY %main.0_spmd (param: f32[8,8]) -> f32[8,4] {
  %all-reduce = f32[32,8]{1,0} all-reduce(%dot.11), channel_id=1, replica_groups=[2,4]<=[8], to_apply=%add
  %all-reduce.1 = f32[8,16]{1,0} all-reduce(%dot.13), channel_id=2, replica_groups={{0,4},{1,5},{2,6},{3,7}}, to_apply=%add
  %all-reduce.3 = f32[] all-reduce(%reduce.6), channel_id=4, replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_0'}, to_apply=%add
  %tuple-ar = (bf16[4,2]{1,0}, f32[]) all-reduce(%a, %b), channel_id=5, replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_0','axis_1'}, to_apply=%add
  %all-gather = f32[8,16]{1,0} all-gather(%p), channel_id=6, replica_groups=[4,2]<=[2,4]T(1,0), dimensions={0}
  %reduce-scatter.2 = s32[2,16]{1,0} reduce-scatter(%q), channel_id=7, replica_groups=[2,4]<=[8], dimensions={0}, to_apply=%add
  %all-to-all = pred[4,4]{1,0} all-to-all(%r), channel_id=8, replica_groups={{0,1,2,3},{4,5,6,7}}, dimensions={1}
  %all-to-all.1 = f32[4,4,4]{2,1,0} all-to-all(%t), channel_id=10, replica_groups=mesh['axis_0'=1,'axis_1'=4,'axis_2'=2], device_ids=([2,4]T(1,0)) {'axis_1'}, dimensions={1}
  ROOT %collective-permute = f32[8,4]{1,0} collective-permute(%s), channel_id=9, source_target_pairs={{0,1},{1,0}}
  %not-a-collective = f32[8,4]{1,0} add(%all-reduce, %all-gather)
}
"""


def test_parse_hlo_collectives() -> None:
    stats = collectives.parse_hlo_collectives(HLO_TEXT)
    assert stats.counts == {
        CollectiveKind.ALL_REDUCE: 3,  # the tuple's non-scalar element counts once
        CollectiveKind.ALL_GATHER: 1,
        CollectiveKind.REDUCE_SCATTER: 1,
        CollectiveKind.ALL_TO_ALL: 2,
        CollectiveKind.COLLECTIVE_PERMUTE: 1,
    }
    assert stats.scalar_all_reduces == 2
    assert stats.nbytes(CollectiveKind.ALL_REDUCE) == 32 * 8 * 4 + 8 * 16 * 4 + 4 * 2 * 2
    assert stats.nbytes(CollectiveKind.REDUCE_SCATTER) == 2 * 16 * 4
    assert stats.nbytes(CollectiveKind.ALL_TO_ALL) == 16 + 4 * 4 * 4 * 4
    sizes = {c.name: c.group_size for c in stats.collectives}
    assert sizes == {"all-reduce": 4, "all-reduce.1": 2, "tuple-ar": 8, "all-gather": 2,
                     "reduce-scatter.2": 4, "all-to-all": 4, "all-to-all.1": 4, "collective-permute": None}
    assert "all-reduce=3" in stats.summary() and "scalar all-reduces ignored: 2" in stats.summary()


def test_dump_without_partitioning_has_no_collectives(tmp_path: Path) -> None:
    assert collectives.read_dump(tmp_path) == collectives.CollectiveStats()
