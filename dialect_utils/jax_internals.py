"""The project's only reach into private jaxlib / JAX names, each with a public fallback
or a clear failure, so that a jax upgrade breaks one small module.

- `register_jaxlib_dialects`: jaxlib's dialect registry (func and the other upstream
  dialects have no public Python registration) and the mhlo dialect.
- `prepare_custom_call_targets`: loads LAPACK for the `lapack_*` custom calls that
  `jax.scipy.linalg` / `jnp.linalg` export on CPU (jax does it when it lowers them; a
  module compiled from text would otherwise crash in the call).
- `ResultBuilder`: turns the raw per-device buffers of an executable's outputs into
  global `jax.Array`s with JAX's own C++ result handlers (the path `jax.jit` takes),
  skipping the per-array Python checks of the public
  `jax.make_array_from_single_device_arrays`, which is the fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.extend.mlir import ir
from jax.sharding import Sharding


def register_jaxlib_dialects(ctx: ir.Context) -> None:
    """Append jaxlib's dialect registry (func, arith, ...) and mhlo to `ctx`."""
    from jaxlib.mlir._mlir_libs import _jax_mlir_ext  # private

    registry = ir.DialectRegistry()
    _jax_mlir_ext.register_dialects(registry)
    ctx.append_dialect_registry(registry)
    try:
        from jaxlib.mlir.dialects import mhlo  # private

        mhlo.register_mhlo_dialect(ctx)
    except (ImportError, AttributeError):  # pragma: no cover - depends on jaxlib build
        pass


def prepare_custom_call_targets(text: str) -> None:
    """Make the custom-call targets `text` calls runnable (module docstring)."""
    if "@lapack_" not in text:
        return
    try:
        from jaxlib.cpu import _lapack  # private

        _lapack.initialize()
    except (ImportError, AttributeError):  # pragma: no cover - depends on jaxlib build
        pass


def _private_handlers(shapes: Sequence[tuple[int, ...]], dtypes: Sequence[np.dtype],
                      shardings: Sequence[Sharding]) -> list[Callable[..., Any]] | None:
    try:
        from jax._src import core  # private
        from jax._src.interpreters import pxla  # private

        avals = [core.ShapedArray(tuple(s), d) for s, d in zip(shapes, dtypes, strict=True)]
        return list(pxla.global_avals_to_results_handler(avals, list(shardings), True).handlers)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - jax moved them
        return None


class ResultBuilder:
    """Global arrays from an executable's results (`execute_sharded`'s return value),
    one per output with the given shape, dtype and sharding."""

    def __init__(self, shapes: Sequence[tuple[int, ...]], dtypes: Sequence[np.dtype],
                 shardings: Sequence[Sharding]) -> None:
        self.shapes = [tuple(s) for s in shapes]
        self.dtypes = list(dtypes)
        self.shardings = list(shardings)
        self.handlers = _private_handlers(self.shapes, self.dtypes, self.shardings)

    def __call__(self, results: Any) -> list[jax.Array]:
        if self.handlers is not None:
            return list(results.consume_with_handlers(self.handlers))
        shards = results.disassemble_into_single_device_arrays()
        return [jax.make_array_from_single_device_arrays(shape, sharding, per_device, dtype=dtype)
                for shape, dtype, sharding, per_device
                in zip(self.shapes, self.dtypes, self.shardings, shards, strict=True)]
