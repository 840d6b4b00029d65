"""alpa_mlir.runtime.inputs: seeded random inputs and npz files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import PLAIN, parse
from jax.extend.mlir import ir

from alpa_mlir.runtime import inputs
from alpa_mlir.runtime.errors import InputMismatchError
from alpa_mlir.runtime.signature import read_signature


def test_random_inputs_are_seeded_and_in_range(ctx: ir.Context) -> None:
    sig = read_signature(parse(PLAIN, ctx))
    a = inputs.random_inputs(sig, seed=5)
    b = inputs.random_inputs(sig, seed=5)
    c = inputs.random_inputs(sig, seed=6)
    assert [x.dtype for x in a] == [np.float32, np.int32, np.bool_]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert np.abs(a[0]).max() < 1.0 and set(np.unique(a[1])) <= {0, 1}


def test_npz_round_trip_and_key_errors(ctx: ir.Context, tmp_path: Path) -> None:
    sig = read_signature(parse(PLAIN, ctx))
    args = inputs.random_inputs(sig, seed=2)
    path = tmp_path / "in.npz"
    inputs.save_inputs(path, args)
    for x, y in zip(inputs.load_inputs(path, sig), args, strict=True):
        np.testing.assert_array_equal(x, y)
    np.savez(tmp_path / "missing.npz", arg0=args[0], arg2=args[2])
    with pytest.raises(InputMismatchError, match=r"missing key arg1 \(expected i32\[3\]\)"):
        inputs.load_inputs(tmp_path / "missing.npz", sig)
    np.savez(tmp_path / "extra.npz", arg0=args[0], arg1=args[1], arg2=args[2], arg7=args[0])
    with pytest.raises(InputMismatchError, match="unexpected key arg7; @main takes 3 argument"):
        inputs.load_inputs(tmp_path / "extra.npz", sig)
    np.savez(tmp_path / "shape.npz", arg0=args[0].T, arg1=args[1], arg2=args[2])
    with pytest.raises(InputMismatchError, match=r"key arg0: expected f32\[2,3\].*got float32 \(3, 2\)"):
        inputs.load_inputs(tmp_path / "shape.npz", sig)
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(InputMismatchError, match="not a readable npz"):
        inputs.load_inputs(tmp_path / "bad.npz", sig)
    with pytest.raises(InputMismatchError, match="no such file"):
        inputs.load_inputs(tmp_path / "absent.npz", sig)
    out = tmp_path / "out"  # no .npz suffix: written exactly there
    inputs.save_outputs(out, args)
    assert sorted(inputs.load_npz(out)) == ["out0", "out1", "out2"]


def test_bfloat16_inputs_round_trip(ctx: ir.Context, tmp_path: Path) -> None:
    module = parse("func.func @main(%a: tensor<4xbf16>) -> tensor<4xbf16> {\n"
                   "  %0 = stablehlo.add %a, %a : tensor<4xbf16>\n  return %0 : tensor<4xbf16>\n}", ctx)
    sig = read_signature(module)
    args = inputs.random_inputs(sig, seed=0)
    assert args[0].dtype.name == "bfloat16"
    inputs.save_inputs(tmp_path / "in.npz", args)
    loaded = inputs.load_inputs(tmp_path / "in.npz", sig)
    assert loaded[0].dtype == args[0].dtype and math.isclose(float(loaded[0][0]), float(args[0][0]))
