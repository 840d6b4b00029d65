"""tools/fuzz.py: its judge tells crashes, diagnostics and wrong results apart, and a short
seeded run over all three tools finds nothing bad (`make fuzz N=1000` runs the long one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alpa_mlir.tools import fuzz


@pytest.mark.parametrize(("code", "err", "outcome"), [
    (0, "", "ok"),
    (1, "in.mlir:3:5: error: something the user can fix\n", "diagnosed"),
    (1, "alpa-run: error: --rtol must be a finite number >= 0, got nan\n", "diagnosed"),
    (1, "alpa-opt: internal error: KeyError: 3 (rerun with --debug for a traceback)\n", "crash"),
    (1, "Traceback (most recent call last):\n  File ...\nValueError: x\n", "crash"),
    (1, "something went wrong\n", "crash"),  # exit 1 without an error line
    (139, "", "crash"),
    ("raised KeyError", "", "crash"),
])
def test_outcomes(code: object, err: str, outcome: str) -> None:
    assert fuzz._outcome(code, "", err)[0] == outcome


def test_a_module_that_computes_something_else_is_wrong(tmp_path: Path) -> None:
    source = fuzz._SEEDS["dot"]
    (tmp_path / "in.mlir").write_text(source)
    (tmp_path / "same.mlir").write_text(source)
    (tmp_path / "other.mlir").write_text(source.replace("stablehlo.tanh", "stablehlo.sine"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert fuzz._same_results("in.mlir", "same.mlir") == ("ok", "compared: same results")
        outcome, detail = fuzz._same_results("in.mlir", "other.mlir")
    finally:
        os.chdir(cwd)
    assert outcome == "wrong" and "values differ" in detail


def test_mutations_are_seeded() -> None:
    import random

    text = fuzz._SEEDS["loop"]
    first = [fuzz.mutate(text, random.Random(k)) for k in range(20)]
    assert first == [fuzz.mutate(text, random.Random(k)) for k in range(20)]
    assert len({data for data, _ in first}) > 5


def test_a_short_run_finds_nothing_bad(capsys: pytest.CaptureFixture[str]) -> None:
    assert fuzz.main(["--n", "40", "--seed", "11", "--timeout", "300"]) == 0
    out = capsys.readouterr().out
    assert "40 cases (seed 11)" in out and "crash=0  hang=0  damaged=0  wrong=0" in out
