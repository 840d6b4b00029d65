"""Program inputs and outputs as numpy arrays: random inputs from @main's signature, and
npz files (`arg0`, `arg1`, ... in @main's argument order; `out0`, `out1`, ... for results).

Random inputs are small so that a training step stays finite: floats are standard normal
times 0.1, integers 0 or 1 (valid token ids and labels for any vocabulary), booleans fair
coin flips; one seeded numpy generator draws them in argument order.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alpa_mlir.dialect_utils.output_files import write_atomically

from .errors import InputMismatchError
from .signature import ArgSpec, Signature, format_tensor

FLOAT_SCALE = 0.1
INT_HIGH = 2  # integers are drawn from [0, INT_HIGH)


def random_array(spec: ArgSpec, rng: np.random.Generator) -> np.ndarray:
    dtype = spec.dtype
    shape = spec.info.shape
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, INT_HIGH, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.complexfloating):
        parts = rng.standard_normal(size=(2, *shape)) * FLOAT_SCALE
        return (parts[0] + 1j * parts[1]).astype(dtype)
    return (rng.standard_normal(size=shape) * FLOAT_SCALE).astype(np.float32).astype(dtype)


def random_inputs(signature: Signature, seed: int = 0) -> list[np.ndarray]:
    """One random array per argument of @main (deterministic for a seed). Raises
    InputMismatchError when they would not fit in this machine's memory."""
    total = sum(spec.info.nbytes for spec in signature.args)
    memory = machine_memory_bytes()
    if memory is not None and 2 * total > memory:  # drawn in float64, then cast
        raise InputMismatchError(
            f"random inputs for @main's {len(signature.args)} argument(s) would take "
            f"{total / 2**30:.3g} GiB, more than this machine's {memory / 2**30:.3g} GiB allow: "
            "the module is too large to run here")
    rng = np.random.default_rng(seed)
    return [random_array(spec, rng) for spec in signature.args]


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _as_expected_dtype(array: np.ndarray, expected: np.dtype) -> np.ndarray:
    """npz stores ml_dtypes arrays (bfloat16, float8) as raw void bytes: view them back."""
    if array.dtype.kind == "V" and array.dtype.itemsize == expected.itemsize and array.dtype != expected:
        return array.view(expected)
    return array


def load_inputs(path: str | os.PathLike[str], signature: Signature) -> list[np.ndarray]:
    """Inputs from an npz with exactly the keys arg0..argN-1, shapes and dtypes of @main."""
    name = str(path)
    arrays = load_npz(path)
    expected = [spec.key for spec in signature.args]
    missing = [k for k in expected if k not in arrays]
    extra = sorted(k for k in arrays if k not in expected)
    if missing:
        spec = signature.args[expected.index(missing[0])]
        raise InputMismatchError(
            f"{name}: missing key {missing[0]} (expected {format_tensor(spec.info)}); "
            f"@main takes {len(expected)} argument(s): {_key_range('arg', len(expected))}"
        )
    if extra:
        raise InputMismatchError(
            f"{name}: unexpected key {extra[0]}; @main takes {len(expected)} argument(s): "
            f"{_key_range('arg', len(expected))}"
        )
    out = []
    for spec in signature.args:
        array = _as_expected_dtype(arrays[spec.key], spec.dtype)
        if tuple(array.shape) != spec.info.shape or array.dtype != spec.dtype:
            raise InputMismatchError(
                f"{name}: key {spec.key}: expected {format_tensor(spec.info)} "
                f"({spec.dtype} {spec.info.shape}), got {array.dtype} {tuple(array.shape)}"
            )
        out.append(array)
    return out


def _key_range(prefix: str, n: int) -> str:
    if n == 0:
        return "none"
    return f"{prefix}0" if n == 1 else f"{prefix}0..{prefix}{n - 1}"


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of an npz file; InputMismatchError if it cannot be read."""
    try:
        data = np.load(Path(path), allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise InputMismatchError(f"{path}: not an npz file (a single .npy array?)")
        with data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputMismatchError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputMismatchError(f"{path}: not a readable npz file ({err})") from None


def save_outputs(path: str | os.PathLike[str], outputs: Sequence[np.ndarray]) -> None:
    """Write `outputs` as out0, out1, ... to an npz file."""
    _save(path, {f"out{i}": np.asarray(x) for i, x in enumerate(outputs)})


def save_inputs(path: str | os.PathLike[str], inputs: Sequence[np.ndarray]) -> None:
    """Write `inputs` as arg0, arg1, ... to an npz file."""
    _save(path, {f"arg{i}": np.asarray(x) for i, x in enumerate(inputs)})


def _save(path: str | os.PathLike[str], arrays: dict[str, Any]) -> None:
    """np.savez to exactly `path` (np.savez would append .npz to a bare name)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomically(path, buffer.getvalue())
