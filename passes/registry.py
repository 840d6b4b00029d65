"""Name -> pass class, resolved lazily (importing the registry imports no pass).

Every key must equal its class's NAME (a unit test checks it). Add a pass here and in
`pyproject.toml`'s package list if it lives in a new subpackage.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType

from .pass_base import Pass

_PASSES = MappingProxyType(
    {
        "alpa-annotate-flops": "alpa_mlir.passes.annotate_flops:AnnotateFlopsPass",
        "alpa-auto-sharding": "alpa_mlir.passes.auto_sharding:AutoShardingPass",
        "alpa-gradient-accumulation": "alpa_mlir.passes.gradient_accumulation:GradientAccumulationPass",
        "alpa-layer-construction": "alpa_mlir.passes.layer_construction:LayerConstructionPass",
        "alpa-inline-calls": "alpa_mlir.passes.inline_calls:InlineCallsPass",
        "alpa-pipeshard": "alpa_mlir.passes.pipeshard_pass:PipeshardPass",
        "alpa-stage-construction": "alpa_mlir.passes.stage_construction:StageConstructionPass",
        "alpa-strip-sharding": "alpa_mlir.passes.strip_sharding:StripShardingPass",
    }
)


def pass_names() -> list[str]:
    return sorted(_PASSES)


def get_pass_class(name: str) -> type[Pass] | None:
    """The pass registered under `name`, or None."""
    target = _PASSES.get(name)
    if target is None:
        return None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, Pass)
    return cls
