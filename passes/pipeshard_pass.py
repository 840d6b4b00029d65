"""alpa-pipeshard: layer construction + stage construction under one pass name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from jax.extend.mlir import ir

from .layer_construction import LayerConstructionPass
from .pass_base import PassContext
from .pipeshard.layer_clustering import ALPA_EPS, LayerCount
from .stage_construction import StageConstructionPass


@dataclass(frozen=True)
class PipeshardPass(StageConstructionPass):
    """Alpa's pipeshard compilation of a training step: alpa-layer-construction{layers
    eps batch-args}, then alpa-stage-construction with every other option (gradient
    accumulation over num-microbatches is part of it). Reads and writes what those two
    passes read and write: a training step in, an MPMD pipeline program out.
    """

    NAME: ClassVar[str] = "alpa-pipeshard"
    SUMMARY: ClassVar[str] = "the whole pipeshard pipeline: layers, microbatches, stages, MPMD"

    layers: LayerCount = field(
        default=LayerCount(), metadata={"help": "number of layers, or auto (Alpa's layer-count search)"})
    eps: float = field(default=ALPA_EPS, metadata={"help": "each layer's FLOPs within (1 + eps) x the average"})

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        LayerConstructionPass(layers=self.layers, eps=self.eps, batch_args=self.batch_args).run(module, ctx)
        super().run(module, ctx)
