"""Tensor shapes, element types and byte sizes of MLIR values and types."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jax.extend.mlir import ir

Shape = tuple[int, ...]

# MLIR element type spelling -> numpy dtype name (ml_dtypes names for the small floats).
_NUMPY_NAMES = {
    "f64": "float64",
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "f8E4M3FN": "float8_e4m3fn",
    "f8E5M2": "float8_e5m2",
    "i64": "int64",
    "i32": "int32",
    "i16": "int16",
    "i8": "int8",
    "ui64": "uint64",
    "ui32": "uint32",
    "ui16": "uint16",
    "ui8": "uint8",
    "i1": "bool",
    "complex<f32>": "complex64",
    "complex<f64>": "complex128",
}

_BITS = {
    "f64": 64, "f32": 32, "f16": 16, "bf16": 16, "f8E4M3FN": 8, "f8E5M2": 8,
    "i64": 64, "i32": 32, "i16": 16, "i8": 8, "i4": 4, "i1": 8,
    "ui64": 64, "ui32": 32, "ui16": 16, "ui8": 8,
    "complex<f32>": 64, "complex<f64>": 128,
}


@dataclass(frozen=True)
class TensorInfo:
    """Static facts of a ranked tensor (or token) type."""

    shape: Shape
    dtype: str  # MLIR spelling: "f32", "bf16", "i32", ...; "token" for !stablehlo.token

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        if self.dtype == "token":
            return 0
        bits = _BITS.get(self.dtype, 32)
        return (self.num_elements * bits + 7) // 8

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith(("f", "bf"))

    def numpy_dtype(self) -> np.dtype:
        return element_numpy_dtype(self.dtype)


def element_numpy_dtype(dtype: str) -> np.dtype:
    """numpy dtype for an MLIR element type spelling (bfloat16 via ml_dtypes)."""
    name = _NUMPY_NAMES.get(dtype)
    if name is None:
        raise ValueError(f"no numpy dtype for MLIR element type {dtype!r}")
    if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


def tensor_info(t: ir.Type) -> TensorInfo:
    """Shape and element type of a ranked tensor type; a token or scalar-free type is
    reported with shape () and dtype "token"."""
    if isinstance(t, ir.RankedTensorType):
        return TensorInfo(tuple(int(d) for d in t.shape), str(t.element_type))
    text = str(t)
    if "token" in text:
        return TensorInfo((), "token")
    raise ValueError(f"expected a ranked tensor type, got {text}")


def value_info(v: ir.Value) -> TensorInfo:
    return tensor_info(v.type)


@dataclass(frozen=True)
class DynamicValue:
    """A value whose type has a dynamic (or unknown) shape."""

    what: str  # "argument 1 of @main", "result 0 of 'stablehlo.dot_general'"
    type: ir.Type
    location: ir.Location


def first_dynamic(root: ir.Operation) -> DynamicValue | None:
    """The first block argument or op result under `root` (in program order) whose
    tensor type has a dynamic dim or no rank; None when every shape is static."""
    for region in root.regions:
        for block in region.blocks:
            owner = root.name
            if owner == "func.func":
                owner = "@" + ir.StringAttr(root.attributes["sym_name"]).value
            for k, arg in enumerate(block.arguments):
                if _dynamic(arg.type):
                    return DynamicValue(f"argument {k} of {owner}", arg.type, arg.location)
            for view in block.operations:
                op = view.operation
                for k, r in enumerate(op.results):
                    if _dynamic(r.type):
                        return DynamicValue(f"result {k} of '{op.name}'", r.type, op.location)
                found = first_dynamic(op)
                if found is not None:
                    return found
    return None


def _dynamic(t: ir.Type) -> bool:
    if isinstance(t, ir.RankedTensorType):
        return not t.has_static_shape
    return isinstance(t, ir.UnrankedTensorType)
