"""Fragments of an MPMD program compiled for their stage's devices.

Reads one `mpmd.fragment` op and the devices of its stage's submesh; writes nothing to
the module. The fragment becomes an SPMD module (`dialect_utils.mpmd.fragment_module`
with its shardings: `sdy.mesh` = the stage's mesh, argument/result shardings from the
`mesh_tensor` types, the constraints inside) that `spmd.compile_program` compiles with
XLA's Shardy partitioner for those devices.

`FragmentCache` compiles each distinct (module text, devices) once: a fragment of the
microbatch function runs once per microbatch and reuses its executable, and so do equal
fragments (two identical stages). With `cache_dir`, compiled executables are also kept
on disk across processes (`spmd.CompileSettings.cache_dir`). Arguments named in
`donate` get `jax.buffer_donor`: the executable may consume (reuse) their buffers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import context, mpmd

from . import signature
from .spmd import CompileSettings, Program, compile_program


@dataclass
class FragmentCacheStats:
    compiled: int = 0  # distinct programs made (compiled, or read from cache_dir)
    hits: int = 0  # fragments that reused a program of this cache
    from_disk: int = 0  # of `compiled`, read back from cache_dir
    seconds: float = 0.0


@dataclass
class FragmentCache:
    """Compiled fragment programs by (SPMD text, device ids)."""

    cache_dir: str | Path | None = None  # persistent executables (None: this process only)
    stats: FragmentCacheStats = field(default_factory=FragmentCacheStats)
    _programs: dict[tuple[str, tuple[int, ...]], Program] = field(default_factory=dict)

    def compile(self, fragment: ir.Operation, devices: Sequence[jax.Device],
                donate: Sequence[int] = ()) -> Program:
        module = mpmd.fragment_module(fragment, keep_shardings=True)
        if donate:
            signature.mark_donated(module, donate)
        key = (context.print_module(module), tuple(d.id for d in devices))
        found = self._programs.get(key)
        if found is not None:
            self.stats.hits += 1
            return found
        start = time.perf_counter()
        settings = CompileSettings(cache_dir=None if self.cache_dir is None else Path(self.cache_dir))
        program = compile_program(module, list(devices), settings)
        self.stats.seconds += time.perf_counter() - start
        self.stats.compiled += 1
        self.stats.from_disk += program.from_cache
        self._programs[key] = program
        return program
