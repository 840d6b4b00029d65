"""Compile a plain or SPMD (sdy-annotated) StableHLO module for devices, and run it.

```
 ir.Module ──compile_program(module, devices)──► Program      (compile once)
                                                   │ .place(inputs)   numpy -> jax.Arrays
                                                   │ .execute(arrays) jax.Arrays -> jax.Arrays
                                                   │ .run(inputs)     numpy -> numpy
                                                   ▼                  (run many times)
```

An SPMD module compiles to `mesh size` partitions with XLA's Shardy partitioner; a plain
one to a single device. Partition p runs on `program.mesh.devices[p]`. An `sdy.mesh` with
`device_ids` is compiled without them, over the devices in that order: the same placement
of every mesh position, in the device order `execute_sharded` needs.

Across processes (`runtime.distributed`, after `jax.distributed.initialize`) the same
calls work when `devices` are the job's devices: every process compiles the program and
places its own shards of the inputs (`place`), and `run` all-gathers the outputs on every
process.

Arguments are placed with their declared `sdy.sharding` (a `NamedSharding` on the module's
mesh); an argument without one is placed as the compiled executable expects (XLA's Shardy
propagation may shard it). Donated arguments (`tf.aliasing_output`, `jax.buffer_donor`) are
consumed by a run: `run` places fresh buffers every time, and `execute` refuses a
consumed array.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.extend.backend
import numpy as np
from jax.extend.mlir import ir
from jax.sharding import NamedSharding, PartitionSpec

from alpa_mlir.dialect_utils import context, jax_internals, shardy

from .collectives import SPMD_PASS_RE, CollectiveStats, read_dump
from .devices import DeviceMesh
from .distributed import put, to_host
from .errors import CompileError, DeviceCountError, UnsupportedModuleError
from .hlo_sharding import describe as describe_compiled_sharding
from .hlo_sharding import named_sharding
from .module_kind import ModuleKind, module_kind, spmd_mesh
from .signature import Signature, check_inputs, read_signature
from .xla_stats import CostStats, MemoryStats

ArrayLike = np.ndarray | jax.Array


@dataclass(frozen=True)
class CompileSettings:
    """How to compile (beyond the module and the devices)."""

    # Dump the HLO right after SPMD partitioning and count its collectives.
    count_collectives: bool = False
    # Keep compiled executables in this folder across processes (serialized by the XLA
    # client, one file per module text, devices, platform and jax version). Not used
    # with count_collectives, which needs a real compile.
    cache_dir: Path | None = None


@dataclass(frozen=True, eq=False)
class Program:
    """A compiled module, bound to its devices; run it as often as needed."""

    kind: ModuleKind
    signature: Signature
    mesh: DeviceMesh
    executable: Any  # jaxlib LoadedExecutable
    input_shardings: tuple[NamedSharding, ...]
    output_shardings: tuple[NamedSharding, ...]
    input_descriptions: tuple[str, ...]  # each argument's sharding in words (summaries)
    compile_seconds: float
    collectives: CollectiveStats | None = None  # with count_collectives
    from_cache: bool = False  # read back from CompileSettings.cache_dir, not compiled

    @property
    def num_partitions(self) -> int:
        return self.mesh.size

    def cost(self) -> CostStats:
        return CostStats.from_executable(self.executable)

    def memory(self) -> MemoryStats:
        return MemoryStats.from_executable(self.executable)

    def compiled_hlo(self) -> str:
        """XLA's final (optimized, partitioned) HLO text."""
        return str(self.executable.get_hlo_text())

    # ---------------------------------------------------------------- inputs

    def check_inputs(self, inputs: Sequence[ArrayLike]) -> None:
        """Raise InputMismatchError unless `inputs` match @main's arguments."""
        check_inputs(self.signature, inputs)

    def place(self, inputs: Sequence[ArrayLike]) -> list[jax.Array]:
        """Put `inputs` on the devices with the shardings the executable expects.

        numpy inputs get fresh buffers; a jax.Array already placed that way is used as is
        (and, for a donated argument, consumed by the next `execute`).
        """
        self.check_inputs(inputs)
        return [
            value if isinstance(value, jax.Array) and value.sharding == target
            else put(value, target)
            for value, target in zip(inputs, self.input_shardings, strict=True)
        ]

    # ---------------------------------------------------------------- running

    def execute(self, arrays: Sequence[ArrayLike]) -> list[jax.Array]:
        """One run (inputs not placed yet are placed first); the outputs stay on the
        devices, computed, with the shardings in `output_shardings`."""
        outputs = self.launch(self.place(arrays))
        jax.block_until_ready(outputs)
        return outputs

    def launch(self, placed: Sequence[jax.Array]) -> list[jax.Array]:
        """Start one run on arrays already placed as `input_shardings` says, without
        waiting for it: the outputs are `jax.Array`s that become ready later."""
        return self._results(self.executable.execute_sharded(list(placed)))

    @functools.cached_property
    def _results(self) -> jax_internals.ResultBuilder:
        return jax_internals.ResultBuilder(
            [spec.info.shape for spec in self.signature.results],
            [spec.dtype for spec in self.signature.results],
            self.output_shardings)

    def run(self, inputs: Sequence[ArrayLike]) -> list[np.ndarray]:
        """Place, execute, and gather the outputs to numpy."""
        return [to_host(x) for x in self.execute(self.place(inputs))]

    def run_timed(self, inputs: Sequence[ArrayLike], repeat: int = 1) -> TimedRun:
        """`repeat` runs on the same inputs (fresh buffers each time), timing each
        execution (placement excluded); the outputs of the last run."""
        if repeat < 1:
            raise ValueError(f"repeat must be at least 1, got {repeat}")
        host = [to_host(x) if isinstance(x, jax.Array) else x for x in inputs]
        seconds = []
        outputs: list[jax.Array] = []
        for _ in range(repeat):
            placed = self.place(host)
            jax.block_until_ready(placed)
            start = time.perf_counter()
            outputs = self.execute(placed)
            seconds.append(time.perf_counter() - start)
        return TimedRun(tuple(to_host(x) for x in outputs), tuple(seconds))


@dataclass(frozen=True)
class TimedRun:
    outputs: tuple[np.ndarray, ...]
    seconds: tuple[float, ...]  # per run

    @property
    def mean_seconds(self) -> float:
        return sum(self.seconds) / len(self.seconds)


# ------------------------------------------------------------------------- compiling


def program_mesh(module: ir.Module, devices: Sequence[jax.Device]) -> DeviceMesh:
    """The devices a module runs on: its sdy mesh over `devices`, for a GSPMD module its
    `mhlo.num_partitions` first devices, else `devices[0]`."""
    if not devices:
        raise DeviceCountError("no devices given")
    if module_kind(module) is ModuleKind.GSPMD:
        n = required_devices(module)
        if n > len(devices):
            raise DeviceCountError(f"the module has mhlo.num_partitions = {n}, got {len(devices)} devices")
        return DeviceMesh.single(devices[0]) if n == 1 else DeviceMesh(tuple(devices[:n]), (n,), ("d",))
    found = spmd_mesh(module)
    if found is None or found[1].size == 1:
        return DeviceMesh.single(devices[0])
    name, mesh = found
    if mesh.size > len(devices):
        raise DeviceCountError(
            f"mesh @{name} {mesh.text()} needs {mesh.size} devices, got {len(devices)}"
        )
    return DeviceMesh.from_sdy(mesh, devices)


def required_devices(module: ir.Module) -> int:
    """How many devices the module needs (its mesh size, `mhlo.num_partitions` for a
    GSPMD module, or 1)."""
    if module_kind(module) is ModuleKind.GSPMD:
        attrs = module.operation.attributes
        return int(ir.IntegerAttr(attrs["mhlo.num_partitions"]).value) if "mhlo.num_partitions" in attrs else 1
    found = spmd_mesh(module)
    return 1 if found is None else found[1].size


def _compile_text(module: ir.Module) -> str:
    """The module text for XLA: sdy meshes with device_ids are rewritten without them
    (their order is in the device assignment instead)."""
    permuted = {n: m for n, m in shardy.meshes(module).items() if m.device_ids is not None and m.size > 1}
    if not permuted:
        return context.print_module(module)
    copy = context.clone_module(module)
    for name, mesh in permuted.items():
        shardy.set_mesh(copy, name, shardy.Mesh(mesh.axes))
    return context.print_module(copy)


def _partition_spec(declared: shardy.Sharding) -> PartitionSpec | None:
    """The PartitionSpec of a declared sdy sharding (None if it has sub-axes or
    unreduced axes, which a PartitionSpec cannot say)."""
    if declared.unreduced or any(":" in a for a in declared.used_axes()):
        return None
    dims: list[Any] = [None if not d.axes else d.axes[0] if len(d.axes) == 1 else d.axes
                       for d in declared.dims]
    return PartitionSpec(*dims)


def _placement(
    declared: shardy.Sharding | None,
    compiled: Any,
    rank: int,
    mesh: DeviceMesh,
    what: str,
) -> tuple[NamedSharding, str]:
    """The sharding to place a value with, and its description."""
    if mesh.size == 1:
        return NamedSharding(mesh.jax_mesh(), PartitionSpec()), "single device"
    actual = named_sharding(compiled, rank, mesh.devices, what)
    if declared is None:
        return actual, f"no sdy.sharding; XLA chose {describe_compiled_sharding(compiled)}"
    text = "[" + ", ".join(d.text() for d in declared.dims) + "]"
    spec = _partition_spec(declared)
    if spec is not None:
        named = NamedSharding(mesh.jax_mesh(), spec)
        if named.is_equivalent_to(actual, rank):
            return named, text
    return actual, f"{text}, compiled by XLA as {describe_compiled_sharding(compiled)}"


def compile_options(mesh: DeviceMesh, dump_dir: Path | None, shardy: bool = True) -> Any:
    """XLA options for `mesh`: SPMD partitioning with Shardy (or GSPMD for `mhlo.sharding`
    modules, which Shardy's compile path rejects)."""
    grid = np.empty(mesh.size, dtype=object)
    grid[:] = list(mesh.devices)
    options = jax.extend.backend.get_compile_options(
        num_replicas=1, num_partitions=mesh.size, device_assignment=grid.reshape(1, mesh.size)
    )
    build = options.executable_build_options
    build.use_spmd_partitioning = True
    build.use_shardy_partitioner = shardy
    if dump_dir is not None:
        debug = build.debug_options
        debug.xla_dump_to = str(dump_dir)
        debug.xla_dump_hlo_pass_re = SPMD_PASS_RE
        debug.xla_dump_hlo_as_text = True
    return options


def compile_program(
    module: ir.Module,
    devices: Sequence[jax.Device],
    settings: CompileSettings | None = None,
) -> Program:
    """Compile `module` (plain or SPMD) for `devices` (at least its mesh size)."""
    settings = settings or CompileSettings()
    kind = module_kind(module)
    if kind is ModuleKind.MPMD:
        raise UnsupportedModuleError("an MPMD module is not one SPMD program: run it with runtime.pipeline or runtime.mpmd_reference")
    signature = read_signature(module)
    mesh = program_mesh(module, devices)
    text = _compile_text(module)
    jax_internals.prepare_custom_call_targets(text)
    backend = jax.extend.backend.get_backend()
    shardy = kind is not ModuleKind.GSPMD
    with tempfile.TemporaryDirectory(prefix="alpa-run-dump-") as tmp:
        dump_dir = Path(tmp) if settings.count_collectives else None
        cached = None if dump_dir is not None or settings.cache_dir is None else \
            ExecutableCache(settings.cache_dir)
        start = time.perf_counter()
        options = compile_options(mesh, dump_dir, shardy=shardy)
        executable = None if cached is None else cached.load(text, mesh, shardy, options)
        loaded = executable is not None
        if executable is None:
            try:
                executable = backend.compile_and_load(text, list(mesh.devices), options)
            except jax.errors.JaxRuntimeError as err:
                raise CompileError(f"XLA could not compile the module: {err}") from None
            if cached is not None:
                cached.store(text, mesh, shardy, executable)
        seconds = time.perf_counter() - start
        stats = read_dump(dump_dir) if dump_dir is not None else None

    in_compiled = executable.get_parameter_shardings() if mesh.size > 1 else None
    out_compiled = executable.get_output_shardings() if mesh.size > 1 else None
    inputs = [
        _placement(a.sharding, in_compiled[a.index] if in_compiled else None, a.info.rank,
                   mesh, f"argument {a.index}")
        for a in signature.args
    ]
    outputs = [
        _placement(r.sharding, out_compiled[r.index] if out_compiled else None, r.info.rank,
                   mesh, f"result {r.index}")
        for r in signature.results
    ]
    return Program(
        kind=kind,
        signature=signature,
        mesh=mesh,
        executable=executable,
        input_shardings=tuple(s for s, _ in inputs),
        output_shardings=tuple(s for s, _ in outputs),
        input_descriptions=tuple(d for _, d in inputs),
        compile_seconds=seconds,
        collectives=stats,
        from_cache=loaded,
    )


@dataclass(frozen=True)
class ExecutableCache:
    """Compiled executables on disk: `<folder>/<sha256>.xla`, the key covering the
    module text, the device ids and platform, the partitioner and the jax/jaxlib
    versions. A file that cannot be read back is compiled again and overwritten."""

    folder: Path

    def path(self, text: str, mesh: DeviceMesh, shardy: bool) -> Path:
        key = hashlib.sha256()
        for part in (text, repr([(d.platform, d.id) for d in mesh.devices]), str(shardy),
                     jax.__version__, jax.extend.backend.get_backend().platform_version):
            key.update(part.encode())
            key.update(b"\0")
        return self.folder / f"{key.hexdigest()}.xla"

    def load(self, text: str, mesh: DeviceMesh, shardy: bool, options: Any) -> Any | None:
        path = self.path(text, mesh, shardy)
        if not path.is_file():
            return None
        try:
            return jax.extend.backend.get_backend().deserialize_executable(
                path.read_bytes(), list(mesh.devices), options)
        except (jax.errors.JaxRuntimeError, OSError, ValueError):
            return None

    def store(self, text: str, mesh: DeviceMesh, shardy: bool, executable: Any) -> None:
        path = self.path(text, mesh, shardy)
        try:
            data = jax.extend.backend.get_backend().serialize_executable(executable)
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(data)
            partial.replace(path)  # atomic: a reader never sees half a file
        except (jax.errors.JaxRuntimeError, OSError) as err:
            raise CompileError(f"cannot write the compilation cache {self.folder}: {err}") from None


@dataclass
class ProgramCache:
    """Compiled programs by (module text, devices, settings): pass one around to compile
    identical programs (pipeline stages, repeated tests) once."""

    programs: dict[tuple[str, tuple[int, ...], CompileSettings], Program] = field(default_factory=dict)

    def compile(
        self,
        module: ir.Module,
        devices: Sequence[jax.Device],
        settings: CompileSettings | None = None,
    ) -> Program:
        settings = settings or CompileSettings()
        key = (context.print_module(module), tuple(d.id for d in devices), settings)
        if key not in self.programs:
            self.programs[key] = compile_program(module, devices, settings)
        return self.programs[key]
