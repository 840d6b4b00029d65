"""alpa_mlir.runtime: execute the modules the passes produce on local devices.

- `devices`:       local devices (fake CPU devices on demand), `DeviceMesh`, `PhysicalMesh`.
- `module_kind`:   plain / SPMD / GSPMD / MPMD, and the mesh an SPMD module runs on.
- `signature`:     @main's arguments and results (shapes, declared shardings, donation).
- `spmd`:          compile a plain or SPMD module once (`compile_program`), run it often.
- `hlo_sharding`:  XLA's compiled shardings as `NamedSharding`s.
- `reference`:     the unpartitioned reference run and the output comparison.
- `mpmd_reference`: MPMD modules run fragment by fragment in program order on one device
                   (`SequentialExecutor`), and flattened into one reference program.
- `pipeline`:      the pipeline runtime: an MPMD program's stages on their submeshes under a
                   schedule (`PipelineExecutable`); `docs/runtime.md`. Its parts:
  `pipeline_program` (the module read as instructions), `stage_placement` (each stage's
  devices), `instruction_order` (schedule order, frees, donations).
- `schedules`:     GPipe / 1F1B / forward-only clock tables and their invariants.
- `fragments`:     a fragment compiled as an SPMD program for its stage's devices, cached.
- `transfers`:     moving values between meshes (device_put, Alpa's local all-gather).
- `pieces`:        a move planned as pieces (who sends which box to whom) and its bytes.
- `union_transfer`: a move as one program over both meshes (across processes).
- `distributed`:   multi-process jobs (`jax.distributed`): joining, the local launcher,
                   placing and collecting values across processes.
- `trace`:         Chrome trace JSON and Gantt charts of a pipeline step.
- `collectives`:   collectives right after SPMD partitioning, per kind, with bytes.
- `xla_stats`:     XLA's cost analysis and memory statistics.
- `inputs`:        random inputs and npz files.
- `errors`:        the runtime's exception types.

Importing this package has no side effects: devices are configured only by
`devices.ensure_local_devices`.
"""

from __future__ import annotations

from .collectives import Collective, CollectiveKind, CollectiveStats
from .devices import DeviceMesh, PhysicalMesh, ensure_local_devices, local_devices
from .errors import (
    CompileError,
    DeviceCountError,
    ExecutionError,
    InputMismatchError,
    UnsupportedModuleError,
)
from .inputs import load_inputs, random_inputs, save_inputs, save_outputs
from .module_kind import ModuleKind, module_kind
from .mpmd_reference import ExecutorStats, SequentialExecutor, compile_flat_reference
from .reference import (
    OutputComparison,
    ReferenceReport,
    Tolerance,
    compare_outputs,
    compile_reference,
)
from .signature import ArgSpec, ResultSpec, Signature, read_signature
from .spmd import CompileSettings, Program, ProgramCache, TimedRun, compile_program
from .xla_stats import CostStats, MemoryStats

__all__ = [
    "ArgSpec",
    "Collective",
    "CollectiveKind",
    "CollectiveStats",
    "CompileError",
    "CompileSettings",
    "CostStats",
    "DeviceCountError",
    "DeviceMesh",
    "ExecutionError",
    "ExecutorStats",
    "InputMismatchError",
    "MemoryStats",
    "ModuleKind",
    "OutputComparison",
    "PhysicalMesh",
    "Program",
    "ProgramCache",
    "ReferenceReport",
    "ResultSpec",
    "SequentialExecutor",
    "Signature",
    "TimedRun",
    "Tolerance",
    "UnsupportedModuleError",
    "compare_outputs",
    "compile_flat_reference",
    "compile_program",
    "compile_reference",
    "ensure_local_devices",
    "load_inputs",
    "local_devices",
    "module_kind",
    "random_inputs",
    "read_signature",
    "save_inputs",
    "save_outputs",
]
