from __future__ import annotations

import pytest

from alpa_mlir.dialect_utils.context import make_context
from alpa_mlir.passes.native import NATIVE_PASSES, native_pass_defaults

CTX = make_context()


@pytest.mark.parametrize("native", NATIVE_PASSES, ids=lambda p: p.name)
def test_listed_native_passes_parse_in_their_anchor(native) -> None:  # type: ignore[no-untyped-def]
    text = native_pass_defaults(native, CTX)
    assert native.name in text or native.name.endswith("pipeline")
