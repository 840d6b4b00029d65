"""alpa-run, in process through `main([...])` and once as a subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alpa_mlir.tools.alpa_run import main

SPMD_MODULE = """module @jit_f attributes {mhlo.num_partitions = 8 : i32} {
  sdy.mesh @mesh = <["x"=2, "y"=4]>
  func.func public @main(%arg0: tensor<8x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"y"}, {"x"}]>},
                         %arg1: tensor<256x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>, jax.buffer_donor = true})
      -> (tensor<8x4xf32>, tensor<256x4xf32>) {
    %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<8x256xf32>, tensor<256x4xf32>) -> tensor<8x4xf32>
    %1 = stablehlo.negate %arg1 : tensor<256x4xf32>
    return %0, %1 : tensor<8x4xf32>, tensor<256x4xf32>
  }
}
"""

MALFORMED = """module {
  func.func @main(%arg0: tensor<4xf32>) -> tensor<4xf32> {
    %0 = stablehlo.add %arg0, %undefined : tensor<4xf32>
    return %0 : tensor<4xf32>
  }
}
"""

MPMD_MODULE = """!t = !mpmd.mesh_tensor<"m1", tensor<4xf32>>
func.func @main(%arg0: !t) -> !t attributes {topology = #mpmd.topology<<"m1": <["x"=2]>>>} {
  return %arg0 : !t
}
"""


@pytest.fixture
def spmd_file(tmp_path: Path) -> Path:
    path = tmp_path / "matmul.mlir"
    path.write_text(SPMD_MODULE)
    return path


def test_reference_pass_and_summary(spmd_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main([str(spmd_file), "--devices", "8", "--reference", "--collectives", "--stats",
               "--repeat", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0] == f"module: {spmd_file} (spmd)"
    assert lines[1] == "mesh: x=2 y=4 on cpu devices [0..7]"
    assert '  arg0: f32[8,256] [{"y"}, {"x"}]' in lines
    assert '  arg1: f32[256,4] [{"x"}, {}] donated' in lines
    assert any(line.startswith("compile: ") for line in lines)
    assert any(line.startswith("run: 2 x, mean ") for line in lines)
    assert "collectives: all-reduce=1 all-gather=0" in out
    assert "xla cost (per device): flops=" in out
    assert any(line.startswith("out0: [8,4] float32 max_abs_err=") and line.endswith(" ok") for line in lines)
    assert lines[-1] == "reference check: PASS (2 outputs match)"


def test_reference_mismatch_exits_1(spmd_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A contraction split over "x" sums in another order: exact equality does not hold.
    rc = main([str(spmd_file), "--reference", "--rtol", "0", "--atol", "0"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "out0: [8,4] float32" in out and "MISMATCH" in out
    assert out.splitlines()[-1] == "reference check: FAIL (1 of 2 outputs mismatch: out0)"


def test_outputs_then_inputs_round_trip(spmd_file: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "in.npz"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 256)).astype(np.float32)
    b = rng.standard_normal((256, 4)).astype(np.float32)
    np.savez(inp, arg0=a, arg1=b)
    out = tmp_path / "out.npz"
    assert main([str(spmd_file), "--inputs", str(inp), "--outputs", str(out)]) == 0
    assert f"outputs: 2 written to {out}" in capsys.readouterr().out
    with np.load(out) as data:
        assert sorted(data.files) == ["out0", "out1"]
        np.testing.assert_allclose(data["out0"], a @ b, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(data["out1"], -b)


def test_parse_error_names_file_line_col(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.mlir"
    path.write_text(MALFORMED)
    assert main([str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:3:31: error: use of undeclared SSA value name")
    assert "Traceback" not in err


def test_stdin_parse_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class FakeStdin:
        buffer = io.BytesIO(MALFORMED.encode())

    monkeypatch.setattr(sys, "stdin", FakeStdin)
    assert main(["-"]) == 1
    assert capsys.readouterr().err.startswith("<stdin>:3:31: error: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "alpa-run: error: cannot open input file '{missing}': no such file"),
        (["{spmd}", "--devices", "4"],
         'alpa-run: error: the mesh @mesh <["x"=2, "y"=4]> needs 8 devices, but --devices is 4'),
        (["{spmd}", "--inputs", "{bad_npz}"], "alpa-run: error: {bad_npz}: not a readable npz file"),
        (["{spmd}", "--inputs", "{short_npz}"],
         "alpa-run: error: {short_npz}: missing key arg1 (expected f32[256,4])"),
        (["{spmd}", "--repeat", "0"], "alpa-run: error: --repeat must be at least 1, got 0"),
        (["{mpmd}", "--stats"], "alpa-run: error: --stats applies to plain and SPMD modules; {mpmd} is an MPMD module"),
    ],
)
def test_errors(args: list[str], message: str, spmd_file: Path, tmp_path: Path,
                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.npz").write_text("garbage")
    np.savez(tmp_path / "short.npz", arg0=np.zeros((8, 256), np.float32))
    (tmp_path / "pipe.mlir").write_text(MPMD_MODULE)
    names = {"missing": str(tmp_path / "absent.mlir"), "spmd": str(spmd_file),
             "bad_npz": str(tmp_path / "bad.npz"), "short_npz": str(tmp_path / "short.npz"),
             "mpmd": str(tmp_path / "pipe.mlir")}
    assert main([a.format(**names) for a in args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message.format(**names)), err
    assert "Traceback" not in err


def test_plain_module_on_more_devices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plain.mlir"
    path.write_text("func.func @main(%a: tensor<3xi32>) -> tensor<3xi32> {\n"
                    "  %0 = stablehlo.add %a, %a : tensor<3xi32>\n  return %0 : tensor<3xi32>\n}\n")
    assert main([str(path), "--devices", "2", "--reference"]) == 0
    captured = capsys.readouterr()
    assert "mesh: single cpu device 0" in captured.out
    assert "out0: [3] int32 max_abs_err=0 max_rel_err=0 ok" in captured.out
    assert "warning: --devices 2 is more than" in captured.err and "it runs on 1 device" in captured.err


def test_console_script_subprocess(spmd_file: Path) -> None:
    script = Path(sys.executable).with_name("alpa-run")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([str(script), str(spmd_file), "--reference"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "reference check: PASS (2 outputs match)"
    assert proc.stderr == ""


def test_large_modules_are_summarized_and_nan_references_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 20
    args = ", ".join(f"%arg{i}: tensor<4xf32>" for i in range(n))
    body = "\n".join(f"  %{i} = stablehlo.sqrt %arg{i} : tensor<4xf32>" for i in range(n))
    results = ", ".join(f"%{i}" for i in range(n))
    types = ", ".join("tensor<4xf32>" for _ in range(n))
    src = tmp_path / "many.mlir"
    src.write_text(f"func.func @main({args}) -> ({types}) {{\n{body}\n  return {results} : {types}\n}}\n")
    assert main([str(src), "--reference"]) == 0  # random inputs: sqrt of negatives is NaN
    out = capsys.readouterr().out
    assert f"{n} arguments (0 donated); by placement" in out
    assert "out0:" in out and "NaN/Inf in the reference" in out  # flagged outputs still listed
    assert "compared as equal there" in out.splitlines()[-1]
    assert main([str(src), "--reference", "--verbose"]) == 0
    assert f"arg{n - 1}: f32[4]" in capsys.readouterr().out
