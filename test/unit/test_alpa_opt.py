from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alpa_mlir.tools import alpa_opt
from alpa_mlir.tools.input_files import split_chunks
from alpa_mlir.tools.verify_diagnostics import parse_expectations

GOOD = "func.func @main(%arg0: tensor<4xf32>) -> tensor<4xf32> {\n  return %arg0 : tensor<4xf32>\n}\n"


def test_round_trip_to_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.mlir"
    src.write_text(GOOD)
    out = tmp_path / "out.mlir"
    assert alpa_opt.main([str(src), "-o", str(out), "--pass-pipeline=builtin.module(alpa-annotate-flops)"]) == 0
    assert "alpa.flops = 0 : i64" in out.read_text()
    assert capsys.readouterr().err == ""


def test_split_chunks_keep_line_numbers() -> None:
    text = "a\n// -----\nb\nc\n// -----\nd\n"
    chunks = split_chunks(text.encode(), True, "x")
    assert [c.first_line for c in chunks] == [1, 3, 6]
    assert [str(c.source).count("\n") for c in chunks] == [1, 4, 6]  # padded to absolute lines
    assert str(chunks[2].source).endswith("d\n")


def test_expectation_offsets() -> None:
    text = "x\n// expected-error @+2 {{a}}\n// expected-warning @above {{b}}\n// expected-note {{c}}\n"
    lines = [(e.severity.value, e.line, e.message) for e in parse_expectations(text)]
    assert lines == [("error", 4, "a"), ("warning", 2, "b"), ("note", 4, "c")]


def test_binary_garbage_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "junk.mlir"
    src.write_bytes(b"\xff\xfe\x00garbage")
    assert alpa_opt.main([str(src)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{src}:0:0: error: input is neither MLIR text")


def test_no_traceback_from_the_console_script(tmp_path: Path) -> None:
    src = tmp_path / "bad.mlir"
    src.write_text("func.func @main( {\n")
    exe = Path(sys.executable).with_name("alpa-opt")
    proc = subprocess.run([str(exe), str(src)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{src}:1:")
    assert "Traceback" not in proc.stderr
