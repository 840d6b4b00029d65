"""Options that several passes take, declared once: each with one name, type, unit and
default, validated when the pipeline text is parsed (a bad value is an error at the pass
in the pipeline string, before any pass runs).

A pass takes a group by inheriting it next to `Pass`:

    @dataclass(frozen=True)
    class StageConstructionPass(ClusterOptions, StepArgOptions, Pass): ...

- `ClusterOptions`: `cluster` (a preset or a JSON file), `devices` (HOSTSxDEVICES over
  the preset's shape), `memory-limit` (bytes per device; default: the cluster's device
  memory).
- `StepArgOptions`: `batch-args`, `state-args` (which arguments of the training step
  carry the batch and which it updates; by default inferred, `sharding.step_args`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.graph import FunctionGraph

from .pass_base import PassContext
from .sharding.cluster import ClusterSpec, load_cluster
from .sharding.mesh import MeshShape
from .sharding.step_args import StepArgs, StepArgsError, check_roles, infer_step_args

DEFAULT_CLUSTER = "p3.16xlarge"
"""The Alpa paper's cluster (8 x V100 16 GB per host)."""


@dataclass(frozen=True)
class ClusterOptions:
    """The devices a plan is made for."""

    cluster: str = field(
        default=DEFAULT_CLUSTER,
        metadata={"help": "cluster preset (p3.16xlarge, a100-8, h100-8, alpa-abstract) or a JSON file"})
    devices: MeshShape | None = field(
        default=None, metadata={"help": "HOSTSxDEVICES (or a device count) replacing the cluster's shape, e.g. 2x4"})
    memory_limit: float | None = field(
        default=None, metadata={"help": "bytes per device a plan may use (default: the cluster's device memory)"})

    def __post_init__(self) -> None:
        if self.devices is not None and len(self.devices.dims) > 2:
            raise ValueError(f"devices={self.devices}: expected HOSTSxDEVICES or a device count")
        if self.memory_limit is not None and not (math.isfinite(self.memory_limit) and self.memory_limit > 0):
            raise ValueError(f"memory-limit={self.memory_limit}: expected a finite number of bytes > 0")
        self.cluster_spec()  # a preset that does not exist or a malformed file fails here
        _next_post_init(self, ClusterOptions)

    def cluster_spec(self) -> ClusterSpec:
        """The cluster preset with `devices` applied. Raises ClusterError (a ValueError)."""
        spec = load_cluster(self.cluster)
        if self.devices is None:
            return spec
        dims = self.devices.dims
        hosts, per_host = (1, dims[0]) if len(dims) == 1 else dims
        return replace(spec, name=f"{spec.name}[{hosts}x{per_host}]", hosts=hosts, devices_per_host=per_host)

    def device_memory(self, spec: ClusterSpec) -> float:
        """`memory-limit`, else the cluster's memory per device."""
        return spec.memory_bytes if self.memory_limit is None else self.memory_limit


@dataclass(frozen=True)
class StepArgOptions:
    """Which arguments of a training step are what."""

    batch_args: tuple[int, ...] = field(
        default=(), metadata={"help": "indices of the batch arguments (default: inferred: the others "
                                      "whose dim 0 is the batch size)"})
    state_args: tuple[int, ...] = field(
        default=(), metadata={"help": "indices of the arguments the step updates (default: the donated "
                                      "ones, else results matched to arguments by position and type)"})

    def __post_init__(self) -> None:
        check_roles(self.batch_args, self.state_args)  # StepArgsError is a ValueError
        _next_post_init(self, StepArgOptions)

    def step_args(self, graph: FunctionGraph, ctx: PassContext, loc: ir.Location) -> StepArgs:
        """The roles of the step's arguments: these options, else inferred."""
        try:
            return infer_step_args(graph, self.batch_args, self.state_args)
        except StepArgsError as e:
            ctx.fail(str(e), loc)


def _next_post_init(obj: object, group: type) -> None:
    """Run the next `__post_init__` in the method order after `group`'s, so that a pass
    taking several groups validates them all."""
    following = getattr(super(group, obj), "__post_init__", None)
    if following is not None:
        following()
