"""The `alpa-export` command line: output, --list, and clean errors (exit 1, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alpa_mlir.tools.alpa_export import main


def test_writes_the_training_step_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "gpt.mlir"
    assert main(["gpt", "--preset", "tiny", "-o", str(out)]) == 0
    text = out.read_text()
    assert "func.func public @main" in text
    assert "tf.aliasing_output" in text
    assert "loc(" in text  # debug info by default


def test_overrides_and_flags(tmp_path: Path) -> None:
    out = tmp_path / "mlp.mlir"
    argv = [
        "mlp",
        "--batch-size",
        "16",
        "--set",
        "hidden_dim=24",
        "--no-donate",
        "--no-debug-info",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    text = out.read_text()
    assert "tensor<16x16xf32>" in text  # batch.x
    assert "tensor<16x24xf32>" in text  # first layer kernel
    assert "tf.aliasing_output" not in text
    assert "loc(" not in text


def test_stdout_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mlp", "--no-debug-info"]) == 0
    assert "func.func public @main" in capsys.readouterr().out
    assert main(["mlp", "--no-debug-info", "-o", "-"]) == 0
    assert "func.func public @main" in capsys.readouterr().out


def test_list_prints_models_presets_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:]]
    listed = {(row[0], row[1]): row[2] for row in rows}
    assert listed[("gpt", "39B")] == "39.1B"
    assert listed[("gpt", "125M")] == "125M"
    assert ("wide-resnet", "250M") in listed
    assert ("moe", "tiny") in listed
    assert ("mlp", "medium") in listed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["resnet"], "unknown model 'resnet'; valid models: mlp, gpt, bert, moe, wide-resnet"),
        (["gpt", "--preset", "7B"], "valid presets: tiny, 125M, 350M"),
        (["mlp", "--seq-len", "8"], "MLPConfig has no option 'seq_len'"),
        (["gpt", "--set", "num_heads=3"], "divisible by num_heads=3"),
        (["gpt", "--set", "hidden_size=wide"], "expects int, got 'wide'"),
        (["gpt", "--set", "hidden_size"], "--set expects FIELD=VALUE"),
        (["gpt", "--batch-size", "many"], "invalid int value"),
        (["gpt", "--num-layers", "0"], "must be a positive integer"),
        (["gpt", "--frobnicate"], "unrecognized arguments"),
        (["gpt", "--dtype", "fp8"], "invalid choice: 'fp8'"),
        (["gpt", "--dtype", "fp16", "--loss-scale", "0"], "loss scale must be a positive finite number"),
        (["gpt", "--loss-scale", "inf"], "loss scale must be a positive finite number"),
        ([], "a MODEL is required"),
    ],
)
def test_errors_exit_1_with_a_clean_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("alpa-export: error: ")
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_unwritable_output_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mlp", "-o", str(tmp_path / "missing" / "x.mlir")]) == 1
    assert "alpa-export: error: cannot write" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--preset" in capsys.readouterr().out


def test_console_script_reports_errors_without_traceback() -> None:
    script = Path(sys.executable).parent / "alpa-export"
    if not script.exists():
        pytest.skip(f"console script not installed at {script}")
    result = subprocess.run(
        [str(script), "gpt", "--preset", "nope"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "alpa-export: error: unknown preset 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_example_inputs_feed_alpa_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from alpa_mlir.tools import alpa_run

    module, inputs = tmp_path / "mlp.mlir", tmp_path / "mlp.npz"
    assert main(["mlp", "-o", str(module), "--example-inputs", str(inputs), "--seed", "3"]) == 0
    import numpy as np

    with np.load(inputs) as npz:
        assert sorted(npz.files, key=lambda k: int(k[3:]))[0] == "arg0"
        assert all(np.all(np.isfinite(npz[k])) for k in npz.files)
    capsys.readouterr()
    assert alpa_run.main([str(module), "--inputs", str(inputs), "--reference"]) == 0
    out = capsys.readouterr().out
    assert "reference check: PASS" in out and "NaN" not in out
