"""alpa-strip-sharding: remove every Shardy annotation, leaving the unpartitioned program."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.shardy import strip_shardings

from .pass_base import Pass, PassContext


@dataclass(frozen=True)
class StripShardingPass(Pass):
    """Remove all sharding annotations.

    Reads: a module, possibly with `sdy.mesh`, `sdy.sharding` on function arguments,
    results and ops, and `sdy.sharding_constraint` / `sdy.reshard` ops.
    Writes: the same computation with none of them (constraint ops are bypassed and
    erased; `mhlo.num_partitions` becomes 1). The result runs on one device and is the
    reference a sharded plan must match. A shard_map region (`sdy.manual_computation`)
    is the user's own parallel program: it is kept, with its body and its mesh (and
    `mhlo.num_partitions`), so the result runs it on that mesh and replicates the rest.
    """

    NAME: ClassVar[str] = "alpa-strip-sharding"
    SUMMARY: ClassVar[str] = "remove all sdy shardings, constraints and meshes"
    STATIC_SHAPES: ClassVar[bool] = False  # shapes are only copied

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        strip_shardings(module)
