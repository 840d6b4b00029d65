"""ZeRO over a stage's devices: which state splits, and how far.

A stage's data-parallel replicas each hold a whole copy of what the intra-operator plan
leaves replicated. ZeRO (Rajbhandari et al., SC'20) splits that state over the replicas
instead: level 1 the optimizer state, level 2 also the gradient sums (here: the gradient
accumulators of gradient accumulation), level 3 also the parameters. Here "split over the
replicas" means: laid out over every axis of the stage's logical mesh, so that a tensor
the plan already splits over the model-parallel axis is split over the data-parallel one
too, and one the plan replicates is split over both (as far as its dims divide).

Both the stage cost (`stage_cost`: the bytes a device holds, the layer ILP's choices)
and the shardings the plan emits (`stage_sharding`: the layouts of @main's optimizer
state, the microbatch function's accumulators and parameters) read the rule here:
`splits(level, kind)` says whether a value of that kind splits, `narrow(specs, mesh)`
keeps the candidate layouts that split most, and `split_bytes` is what one device then
holds of a tensor. Pure: reads its arguments, writes nothing.

With `zero-stage=auto` (`ZeroStage`) every stage takes its own level, chosen by the stage
DP with the stage like its memory plan: ZeRO-2 or ZeRO-3 (`AUTO_LEVELS`), the faster
that fits. Levels 0 and 1 are left out: under this cost model level 2 splits more at no
more communication (the accumulators' all-reduce is charged either way), while level 3
trades a gather of the parameters per microbatch for their bytes, worth it only where
memory is short or the gather stays inside a host.

What ZeRO costs in communication is what the plan's collectives cost: the ILP of a
fragment that reads a split parameter gathers it (level 3, on every microbatch's forward
and backward), an accumulator split over the replicas takes the gradient's all-reduce
plus a local slice (XLA turns the pair into a reduce-scatter; the cost model charges the
all-reduce, an upper bound), and the apply fragment updates the state where it lies.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..sharding.mesh import LogicalMesh
from ..sharding.spec import TensorSpec, enumerate_specs, shard_count

LEVELS = (0, 1, 2, 3)
AUTO_LEVELS = (2, 3)


class StateKind(enum.Enum):
    """What a piece of a stage's state is, as ZeRO tells them apart."""

    OPTIMIZER = 1  # optimizer state (Adam's moments, the step count): ZeRO-1
    GRADIENT = 2  # gradient accumulators: ZeRO-2
    PARAMETER = 3  # parameters: ZeRO-3


def check_level(level: int) -> int:
    """`level` if it is a ZeRO level (0-3); else ValueError."""
    if level not in LEVELS:
        raise ValueError(f"zero-stage must be 0, 1, 2 or 3, got {level}")
    return level


@dataclass(frozen=True)
class ZeroStage:
    """The `zero-stage` option: one level for every stage, or `auto` (module docstring)."""

    levels: tuple[int, ...]  # the levels a stage may take, one when fixed

    option_type_name = "0|1|2|3|auto"

    @classmethod
    def parse_option(cls, text: str) -> ZeroStage:
        if text == "auto":
            return cls(AUTO_LEVELS)
        if text not in {str(n) for n in LEVELS}:
            raise ValueError(f"zero-stage must be 0, 1, 2, 3 or auto, got {text!r}")
        return cls((int(text),))

    @property
    def auto(self) -> bool:
        return len(self.levels) > 1

    def __str__(self) -> str:
        return "auto" if self.auto else str(self.levels[0])


def splits(level: int, kind: StateKind) -> bool:
    """Whether ZeRO `level` splits state of `kind` over a stage's devices."""
    return level >= kind.value


def narrow(specs: Sequence[TensorSpec], mesh: LogicalMesh) -> list[TensorSpec]:
    """Of a value's candidate layouts, those that split it into the most pieces (over
    every mesh axis when its dims allow it); never empty when `specs` is not."""
    if not specs:
        return []
    most = max(shard_count(s, mesh) for s in specs)
    return [s for s in specs if shard_count(s, mesh) == most]


def split_bytes(nbytes: float, shape: tuple[int, ...], spec: TensorSpec, mesh: LogicalMesh) -> float:
    """Bytes per device of a tensor laid out as `spec`, once ZeRO has split it as far as
    its dims allow (never more than `spec` leaves on a device)."""
    most = max((shard_count(s, mesh) for s in enumerate_specs(shape, mesh)), default=1)
    return nbytes / max(most, shard_count(spec, mesh))
