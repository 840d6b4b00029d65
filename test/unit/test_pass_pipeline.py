from __future__ import annotations

import pytest

from alpa_mlir.dialect_utils.context import make_context
from alpa_mlir.passes import PipelineError, build_steps, parse_pipeline
from alpa_mlir.passes.annotate_flops import AnnotateFlopsPass
from alpa_mlir.passes.pass_pipeline import NativeStep, PythonStep


@pytest.fixture(scope="module")
def ctx():  # type: ignore[no-untyped-def]
    return make_context()


def test_parse_nesting_and_options() -> None:
    elements = parse_pipeline(
        "builtin.module(alpa-annotate-flops{report=\"x y.json\"},func.func(cse, canonicalize{max-iterations=3}),symbol-dce)"
    )
    assert [e.name for e in elements] == ["alpa-annotate-flops", "func.func", "symbol-dce"]
    assert elements[0].options == 'report="x y.json"'
    assert elements[0].col == 16
    nested = elements[1].children
    assert nested is not None and [c.name for c in nested] == ["cse", "canonicalize"]
    assert nested[1].options == "max-iterations=3"
    assert elements[1].text == "func.func(cse, canonicalize{max-iterations=3})"


def test_anchor_is_optional_and_braces_may_nest() -> None:
    (e,) = parse_pipeline("p{a={b=c} d='}'}")
    assert e.name == "p" and e.options == "a={b=c} d='}'"
    assert parse_pipeline("") == ()
    assert parse_pipeline("builtin.module()") == ()


@pytest.mark.parametrize(
    ("text", "col", "message"),
    [
        ("builtin.module(cse,", 20, "expected a pass name, got end of pipeline"),
        ("builtin.module(cse", 19, "expected ',' or ')'"),
        ("cse,,cse", 5, "expected a pass name, got ','"),
        ("cse{a=1", 4, "unterminated '{'"),
        ("cse cse", 5, "expected ','"),
        ("builtin.module{x=1}(cse)", 1, "takes no options"),
    ],
)
def test_syntax_errors_point_at_the_column(text: str, col: int, message: str) -> None:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text)
    (d,) = info.value.diagnostics
    assert d.loc is not None and (d.loc.file, d.loc.line, d.loc.col) == ("<pass-pipeline>", 1, col)
    assert message in d.message


def test_build_mixes_python_and_native_steps(ctx) -> None:  # type: ignore[no-untyped-def]
    steps = build_steps("builtin.module(canonicalize,alpa-annotate-flops{report=r.json},func.func(cse),alpa-strip-sharding)", ctx)
    assert [type(s) for s in steps] == [NativeStep, PythonStep, NativeStep, PythonStep]
    assert isinstance(steps[1], PythonStep) and steps[1].pass_ == AnnotateFlopsPass(report="r.json")
    assert [s.name for s in steps] == ["canonicalize", "alpa-annotate-flops", "func.func(cse)", "alpa-strip-sharding"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("builtin.module(no-such-pass)", "unknown pass 'no-such-pass'"),
        ("builtin.module(func.func(no-such-pass))", "unknown pass 'no-such-pass'"),
        ("builtin.module(canonicalize{bogus=1})", "invalid pipeline element 'canonicalize{bogus=1}': no such option bogus"),
        ("builtin.module(alpa-annotate-flops{bogus=1})", "alpa-annotate-flops has no option 'bogus'"),
        ("builtin.module(func.func(alpa-strip-sharding))", "'alpa-strip-sharding' runs on the whole module"),
        ("builtin.module(alpa-strip-sharding(cse))", "is a pass, not an op anchor"),
    ],
)
def test_resolution_errors(ctx, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PipelineError, match=None) as info:
        build_steps(text, ctx)
    assert message in info.value.diagnostics[0].message
