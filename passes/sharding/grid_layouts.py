"""Megatron-style grid layouts forced on the ILP: the sharding of the baseline plans
(data x tensor x pipeline parallelism) that `benchmarks/plan_quality.py` prices with our
own cost model (`pipeshard.stage_cost.LayerCostModel(grid=...)`).

Reads candidate layouts and the batch dim of each value; returns the layouts a grid plan
allows. On a logical mesh (data, model), axes x and y:
- a value that carries the batch splits its batch dim over x alone and no other dim over
  x (data parallelism: every replica computes its own examples); the ILP lays the rest
  of it out as it likes;
- a parameter or gradient accumulator is split over nothing of x (each data-parallel
  replica holds it whole) unless ZeRO splits it (the caller's ZeRO layouts come first);
  a parameter of rank >= 2 splits exactly one dim over y when y > 1 and a dim divides
  (Megatron's column or row split; the ILP picks which for each matrix, so the forced
  plan is at least as good as Megatron's fixed alternation under the same cost model);
- anything else (values without a batch dim) is the ILP's choice.
When nothing is left (a microbatch smaller than the data-parallel degree), the rule is
dropped for that value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.graph import OpNode

from .mesh import LogicalMesh
from .problem import OpStrategies
from .spec import TensorSpec
from .strategy import Strategy

DATA, MODEL = 0, 1  # the logical mesh's axes: x carries the batch, y the tensor split


def batch_split(spec: TensorSpec, dim: int, mesh: LogicalMesh) -> bool:
    """`spec` splits the batch dim `dim` over x alone (not at all when x has size 1) and
    no other dim over x."""
    want = (DATA,) if mesh.shape[DATA] > 1 else ()
    return spec[dim] == want and not any(DATA in axes for d, axes in enumerate(spec) if d != dim)


def state_split(spec: TensorSpec, parameter: bool, mesh: LogicalMesh) -> bool:
    """Nothing over x; a parameter of rank >= 2 has exactly one dim over y alone."""
    if any(DATA in axes for axes in spec):
        return False
    if not parameter or len(spec) < 2 or mesh.shape[MODEL] == 1:
        return True
    return sorted(spec) == sorted([(MODEL,)] + [()] * (len(spec) - 1))


def _kept(specs: Sequence[TensorSpec], keep: list[TensorSpec]) -> list[TensorSpec]:
    return keep or list(specs)


def argument_layouts(specs: Sequence[TensorSpec], batch_dim: int | None, state: bool, parameter: bool,
                     mesh: LogicalMesh) -> list[TensorSpec]:
    """The layouts a grid plan allows an argument: `state` for parameters and gradient
    accumulators (`parameter` for the former), `batch_dim` for a batch-carrying one."""
    if batch_dim is not None:
        return _kept(specs, [s for s in specs if batch_split(s, batch_dim, mesh)])
    if state:
        strict = [s for s in specs if state_split(s, parameter, mesh)]
        if strict:
            return strict
        return _kept(specs, [s for s in specs if state_split(s, False, mesh)])
    return list(specs)


def op_layouts(batch_dims: Mapping[ir.Value, int], mesh: LogicalMesh) -> OpStrategies:
    """The op narrowing (`problem.OpStrategies`): strategies whose batch-carrying results
    are split as `batch_split` says."""

    def narrow(op: OpNode, strategies: list[Strategy]) -> list[Strategy]:
        dims = [(r, batch_dims[v.value]) for r, v in enumerate(op.results) if v.value in batch_dims]
        if not dims:
            return strategies
        keep = [s for s in strategies if all(batch_split(s.outputs[r], d, mesh) for r, d in dims)]
        return keep or strategies

    return narrow
