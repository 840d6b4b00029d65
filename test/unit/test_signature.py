"""alpa_mlir.runtime.signature: @main's arguments, shardings and donation."""

from __future__ import annotations

from conftest import DONATED_REVERSED_MESH, MLP_SHAPES, parse
from jax.extend.mlir import ir

from alpa_mlir.runtime.signature import read_signature


def test_signature_reads_shardings_and_donation(ctx: ir.Context, mlp_data_parallel: ir.Module) -> None:
    sig = read_signature(mlp_data_parallel)
    assert [a.info.shape for a in sig.args] == list(MLP_SHAPES)
    assert sig.donated_args == (0, 1)  # jax.buffer_donor
    assert sig.args[2].sharding is not None and sig.args[2].sharding.dim_axes == (("x", "y"), ())
    donated = read_signature(parse(DONATED_REVERSED_MESH, ctx))
    assert donated.args[0].donated and donated.args[0].aliased_output == 1
    assert not donated.args[1].donated
