"""@main's signature as the runtime needs it: shapes, dtypes, declared shardings, donation.

```
func.func @main(%arg0: tensor<16x4xf32> {sdy.sharding = ..., tf.aliasing_output = 1 : i32},
                %arg1: tensor<8x16xf32> {jax.buffer_donor = true}) -> (...)
  -> Signature(args=(ArgSpec(0, f32[16,4], sharding, donated=True, aliased_output=1),
                     ArgSpec(1, f32[8,16], None, donated=True, aliased_output=None)), ...)
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import graph, shardy
from alpa_mlir.dialect_utils.attributes import BUFFER_DONOR, donation
from alpa_mlir.dialect_utils.diagnostics import DiagnosticError, module_location, source_loc
from alpa_mlir.dialect_utils.types import TensorInfo, tensor_info

from .errors import InputMismatchError, UnsupportedModuleError


@dataclass(frozen=True)
class ArgSpec:
    """One argument of @main."""

    index: int
    info: TensorInfo
    sharding: shardy.Sharding | None  # the declared `sdy.sharding`, if any
    donated: bool  # its buffer is consumed by a run (tf.aliasing_output / jax.buffer_donor)
    aliased_output: int | None = None  # the result it may alias (tf.aliasing_output)

    @property
    def key(self) -> str:
        """Its npz key."""
        return f"arg{self.index}"

    @property
    def dtype(self) -> np.dtype:
        return self.info.numpy_dtype()


@dataclass(frozen=True)
class ResultSpec:
    """One result of @main."""

    index: int
    info: TensorInfo
    sharding: shardy.Sharding | None

    @property
    def key(self) -> str:
        return f"out{self.index}"

    @property
    def dtype(self) -> np.dtype:
        return self.info.numpy_dtype()


@dataclass(frozen=True)
class Signature:
    args: tuple[ArgSpec, ...]
    results: tuple[ResultSpec, ...]

    @property
    def donated_args(self) -> tuple[int, ...]:
        return tuple(a.index for a in self.args if a.donated)


def format_tensor(info: TensorInfo) -> str:
    """`f32[16,4]`."""
    return f"{info.dtype}[{','.join(map(str, info.shape))}]"


def main_func(module: ir.Module) -> ir.Operation:
    """@main, or a DiagnosticError located at the module."""
    try:
        return graph.main_function(module)
    except ValueError as err:
        raise DiagnosticError.single(str(err), source_loc(module_location(module))) from None


def _checked_info(t: ir.Type, what: str, where: ir.Location) -> TensorInfo:
    try:
        info = tensor_info(t)
    except ValueError as err:
        raise UnsupportedModuleError(f"{what}: {err}", where) from None
    if info.dtype == "token":
        raise UnsupportedModuleError(f"{what}: token values are not supported", where)
    if any(d < 0 for d in info.shape):
        raise UnsupportedModuleError(
            f"{what}: dynamic shape {t} is not supported; export the step with concrete shapes "
            "(jax.jit(...).lower(...) on arrays, or jax.export without symbolic dims)", where)
    try:
        info.numpy_dtype()
    except ValueError as err:
        raise UnsupportedModuleError(f"{what}: {err}", where) from None
    return info


def mark_donated(module: ir.Module, indices: Sequence[int]) -> None:
    """`jax.buffer_donor = true` on these arguments of @main: a run may consume them."""
    func_op = main_func(module)
    with module.context:
        shardy.set_arg_attribute(func_op, indices, BUFFER_DONOR, ir.BoolAttr.get(True))


def read_signature(module: ir.Module) -> Signature:
    """@main's arguments and results."""
    func_op = main_func(module)
    ftype = ir.FunctionType(ir.TypeAttr(func_op.attributes["function_type"]).value)
    arg_attrs = shardy.arg_attrs(func_op)
    entry = func_op.regions[0].blocks
    arg_locs = [a.location for a in entry[0].arguments] if len(entry) else [func_op.location] * len(ftype.inputs)
    args = []
    for i, t in enumerate(ftype.inputs):
        donated, aliased = donation(arg_attrs[i])
        args.append(ArgSpec(i, _checked_info(t, f"argument {i} of @main", arg_locs[i]),
                            shardy.arg_sharding(func_op, i), donated, aliased))
    results = tuple(
        ResultSpec(i, _checked_info(t, f"result {i} of @main", func_op.location),
                   shardy.result_sharding(func_op, i))
        for i, t in enumerate(ftype.results)
    )
    return Signature(tuple(args), results)


def check_inputs(signature: Signature, inputs: Sequence[Any]) -> None:
    """Raise InputMismatchError unless `inputs` (numpy or jax arrays) match the
    arguments' count, shapes and dtypes (and none is a deleted jax.Array)."""
    args = signature.args
    if len(inputs) != len(args):
        raise InputMismatchError(f"@main takes {len(args)} argument(s), got {len(inputs)} input(s)")
    for spec, value in zip(args, inputs, strict=True):
        if isinstance(value, jax.Array) and value.is_deleted():
            raise InputMismatchError(
                f"argument {spec.index} ({spec.key}): the array was donated to an earlier run or "
                "deleted, and its buffer is gone; pass a fresh array")
        shape = tuple(int(d) for d in np.shape(value))
        dtype = np.dtype(value.dtype) if hasattr(value, "dtype") else np.asarray(value).dtype
        if shape != spec.info.shape or dtype != spec.dtype:
            raise InputMismatchError(
                f"argument {spec.index} ({spec.key}): expected {format_tensor(spec.info)} "
                f"({spec.dtype} {spec.info.shape}), got {dtype} {shape}")
