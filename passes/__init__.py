"""alpa-mlir passes: the pass base, options, registry, pipeline parser and pass manager,
`inlined_main` (the @main the planning passes analyze), one module per registered pass
(named after it, holding its pass class), and the phase packages the passes share
(`sharding`, `pipeshard`).

Embedding (another compiler's `ir.Module`, built in a context from
`alpa_mlir.dialect_utils.context.make_context()`):

    from alpa_mlir.passes import PassManager, get_pass_class
    PassManager.parse("builtin.module(alpa-annotate-flops,canonicalize)", ctx).run(module)
    get_pass_class("alpa-strip-sharding")().apply(module)
"""

from .pass_base import Pass, PassContext, PassFailure, verify_module
from .pass_manager import InternalPassError, IRPrinter, PassManager, PassTimer
from .pass_pipeline import PipelineError, build_steps, parse_pipeline
from .registry import get_pass_class, pass_names

__all__ = [
    "IRPrinter",
    "InternalPassError",
    "Pass",
    "PassContext",
    "PassFailure",
    "PassManager",
    "PassTimer",
    "PipelineError",
    "build_steps",
    "get_pass_class",
    "parse_pipeline",
    "pass_names",
    "verify_module",
]
