from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import pytest
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.diagnostics import Severity
from alpa_mlir.passes import (
    InternalPassError,
    IRPrinter,
    PassContext,
    PassFailure,
    PassManager,
    PassTimer,
    get_pass_class,
    pass_names,
)
from alpa_mlir.passes.pass_base import Pass
from alpa_mlir.passes.pass_pipeline import PythonStep

MODULE = """
func.func @main(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %0 = stablehlo.multiply %arg0, %arg0 : tensor<4xf32>
  %1 = stablehlo.multiply %arg0, %arg0 : tensor<4xf32>
  %2 = stablehlo.add %0, %1 : tensor<4xf32>
  return %2 : tensor<4xf32>
}
"""


@dataclass(frozen=True)
class WarnPass(Pass):
    NAME: ClassVar[str] = "test-warn"

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        op = next(iter(module.body.operations))
        ctx.warning("something degraded", op.location)


@dataclass(frozen=True)
class BreakPass(Pass):
    """Produces an invalid module (return type no longer matches)."""

    NAME: ClassVar[str] = "test-break"

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        func = next(iter(module.body.operations))
        func.attributes["function_type"] = ir.TypeAttr.get(
            ir.FunctionType.get([ir.RankedTensorType.get([4], ir.F32Type.get())], [ir.F32Type.get()])
        )


@dataclass(frozen=True)
class BuggyPass(Pass):
    NAME: ClassVar[str] = "test-buggy"

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        raise KeyError("oops")


@pytest.fixture
def module():  # type: ignore[no-untyped-def]
    return parse_module(MODULE, make_context())


def test_registry_keys_equal_pass_names() -> None:
    names = pass_names()
    assert {"alpa-annotate-flops", "alpa-strip-sharding"} <= set(names)
    for name in names:
        cls = get_pass_class(name)
        assert cls is not None and name == cls.NAME and cls.SUMMARY and cls.__doc__
    assert get_pass_class("nope") is None


def test_mixed_pipeline_runs_in_order_with_instrumentation(module) -> None:  # type: ignore[no-untyped-def]
    timer, stream = PassTimer(), io.StringIO()
    pm = PassManager.parse(
        "builtin.module(func.func(cse),alpa-annotate-flops,canonicalize)",
        module.context,
        instrumentations=(IRPrinter(stream), timer),
    )
    pm.run(module)
    text = print_module(module)
    assert text.count("stablehlo.multiply") == 1  # cse ran
    assert "alpa.flops = 4 : i64" in text  # our pass ran after it
    assert [name for name, _ in timer.records] == ["func.func(cse)", "alpa-annotate-flops", "canonicalize"]
    dumps = stream.getvalue()
    assert dumps.index("After func.func(cse)") < dumps.index("After alpa-annotate-flops") < dumps.index("After canonicalize")
    assert "Total Execution Time" in timer.report()


def test_warnings_are_collected_not_printed(module) -> None:  # type: ignore[no-untyped-def]
    pm = PassManager((PythonStep(WarnPass(), 1),))
    collector = pm.run(module)
    (d,) = collector.diagnostics
    assert d.severity is Severity.WARNING and d.message == "something degraded"
    assert d.loc is not None and d.loc.line == 2


def test_verification_after_each_pass(module) -> None:  # type: ignore[no-untyped-def]
    pm = PassManager((PythonStep(BreakPass(), 1),))
    with pytest.raises(PassFailure) as info:
        pm.run(module)
    messages = [d.message for d in info.value.diagnostics]
    assert "module failed verification after pass 'test-break'" in messages
    assert any("doesn't match function result type" in m for m in messages)


def test_a_bug_in_a_pass_is_an_internal_error(module) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InternalPassError, match="internal error in pass 'test-buggy': KeyError"):
        PassManager((PythonStep(BuggyPass(), 1),)).run(module)


def test_native_failure_becomes_pass_failure() -> None:
    ctx = make_context()
    module = parse_module(MODULE, ctx)
    with ctx, ir.Location.unknown(ctx):
        BreakPass().run(module, PassContext())
    with pytest.raises(PassFailure) as info:
        PassManager.parse("builtin.module(canonicalize)", ctx).run(module)
    assert any(d.severity is Severity.ERROR for d in info.value.diagnostics)


def test_apply_for_embedding(module) -> None:  # type: ignore[no-untyped-def]
    cls = get_pass_class("alpa-annotate-flops")
    assert cls is not None
    assert cls().apply(module) == []
    assert "alpa.flops" in print_module(module)
