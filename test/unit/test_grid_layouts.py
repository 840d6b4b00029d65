"""Megatron-style grid layouts (`sharding.grid_layouts`) and the cost model's grid mode
(`LayerCostModel(grid=...)`), which benchmarks/plan_quality.py prices baselines with."""

from __future__ import annotations

import functools

import pytest
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.models.export import export_train_step
from alpa_mlir.passes.pass_base import PassContext
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.passes.pipeshard.stage_cost import LayerCostModel
from alpa_mlir.passes.sharding import grid_layouts as G
from alpa_mlir.passes.sharding.mesh import LogicalMesh
from alpa_mlir.passes.sharding.spec import enumerate_specs
from alpa_mlir.passes.stage_construction import StageConstructionPass


def _mesh(shape: tuple[int, int]) -> LogicalMesh:
    return LogicalMesh(shape, ("x", "y"), (1e-6, 1e-6), (1e-9, 1e-9))


def test_batch_values_split_their_batch_dim_over_the_data_axis_only() -> None:
    mesh = _mesh((2, 4))
    specs = list(enumerate_specs((8, 16, 32), mesh))  # [batch, seq, hidden]
    kept = G.argument_layouts(specs, 0, False, False, mesh)
    assert kept and all(s[0] == (0,) and all(0 not in axes for axes in s[1:]) for s in kept)
    assert ((0,), (), (1,)) in kept and ((0,), (), ()) in kept  # y is the ILP's choice
    # no data axis to speak of: the batch dim is not split at all
    pure_tp = _mesh((1, 8))
    assert all(s[0] == () for s in G.argument_layouts(list(enumerate_specs((8, 32), pure_tp)), 0, False, False,
                                                      pure_tp))
    # a microbatch of 1 cannot split over x: the rule gives way rather than leaving nothing
    assert G.argument_layouts([((),), ((1,),)], 0, False, False, mesh) == [((),), ((1,),)]


def test_weights_split_one_dim_over_the_model_axis_and_nothing_over_data() -> None:
    mesh = _mesh((2, 4))
    weights = G.argument_layouts(list(enumerate_specs((32, 64), mesh)), None, True, True, mesh)
    assert sorted(weights) == [((), (1,)), ((1,), ())]  # column or row
    # a bias: not over x; over y or not, as the ILP likes
    bias = G.argument_layouts(list(enumerate_specs((64,), mesh)), None, True, True, mesh)
    assert sorted(bias) == [((),), ((1,),)]
    # a gradient accumulator is not held split over the data axis either
    grads = G.argument_layouts(list(enumerate_specs((32, 64), mesh)), None, True, False, mesh)
    assert grads and all(0 not in axes for s in grads for axes in s)
    # a matrix no dim of which divides by the model axis stays whole
    odd = G.argument_layouts(list(enumerate_specs((3, 5), mesh)), None, True, True, mesh)
    assert odd == [((), ())]
    # neither batch nor state: untouched
    free = list(enumerate_specs((32, 64), mesh))
    assert G.argument_layouts(free, None, False, False, mesh) == free


def _costs(grid: bool) -> LayerCostModel:
    return _prepared(grid)[0]


@functools.cache
def _prepared(grid: bool) -> tuple[LayerCostModel, ir.Module, ir.Context]:
    """GPT tiny in two layers, two microbatches, on 8 devices (the IR outlives the model)."""
    ctx = make_context()
    module = parse_module(export_train_step("gpt", "tiny", debug_info=False), ctx)
    PassManager.parse("builtin.module(alpa-layer-construction{layers=2})", ctx).run(module)
    stage = StageConstructionPass.from_options("devices=1x8 num-microbatches=2")
    assert isinstance(stage, StageConstructionPass)
    with ctx, ir.Location.unknown(ctx):
        costs = stage.prepare(module, PassContext(), grid=grid).costs
    return costs, module, ctx


@pytest.mark.parametrize("layer", [0, 1])
def test_grid_costs_follow_the_forced_layouts(layer: int) -> None:
    """Pure data parallelism replicates the parameters; pure tensor parallelism splits
    the weight matrices; a forced plan never beats the ILP's free choice on the same
    mesh (it searches a subset of the same layouts)."""
    grid, free = _costs(True), _costs(False)
    whole = grid.layer(layer, (1, 1)).param_bytes
    assert grid.layer(layer, (8, 1)).param_bytes == pytest.approx(whole)
    assert grid.layer(layer, (1, 8)).param_bytes < whole / 4  # matrices split 8 ways, vectors kept
    for shape in ((8, 1), (2, 4), (1, 8)):
        assert grid.layer(layer, shape).latency >= free.layer(layer, shape).latency * (1 - 1e-6), shape
    # data parallelism costs its gradient all-reduce: more than on one device's share alone
    assert grid.layer(layer, (8, 1)).communication > 0


def test_variants_share_the_solved_layers() -> None:
    costs = _costs(True)
    costs.layer(0, (2, 4))
    solves = costs.stats.solves
    remat = costs.variant(remat=True)
    remat.layer(0, (2, 4))
    assert costs.stats.solves == solves and remat.remat and not costs.remat
    kept = costs.stage(0, 1, None, (2, 4))  # type: ignore[arg-type]
    again = remat.stage(0, 1, None, (2, 4))  # type: ignore[arg-type]
    assert again.activation_bytes < kept.activation_bytes and again.latency > kept.latency
