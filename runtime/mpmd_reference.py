"""The sequential reference executor of MPMD (Shardy `mpmd` dialect) modules.

Reads an MPMD module in the format of `docs/mpmd-format.md`; writes nothing to it. It
runs @main op by op in program order on ONE device, which is the semantics the pipeline
compiler must preserve (the real multi-mesh runtime schedules the same fragments):

```
 ir.Module ──SequentialExecutor(module, device)──► plans + one Program per fragment body
   @main:       fragment  -> execute its compiled body on the operand jax.Arrays
                transfer  -> the same array (one device: nothing moves); one that
                             changes the memory kind copies it into that memory
                mpmd.call -> run the callee's plan on the operands (microbatches)
                return    -> the outputs
```

Every distinct `mpmd.fragment` op is extracted (`dialect_utils.mpmd.fragment_module`) and
compiled once for the device, however often it runs (a fragment of the microbatch
function runs once per `mpmd.call`); identical bodies share one executable. Values stay
on the device as `jax.Array`s between fragments and are dropped after their last use.

`compile_flat_reference` compiles the whole program flattened into one plain module
(`dialect_utils.mpmd.flatten`): an independent check of the executor itself.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import jax
import numpy as np
from jax.extend.mlir import ir
from jax.sharding import NamedSharding, PartitionSpec

from alpa_mlir.dialect_utils import mpmd, shardy
from alpa_mlir.dialect_utils.attributes import donation
from alpa_mlir.dialect_utils.diagnostics import source_loc
from alpa_mlir.dialect_utils.types import TensorInfo, tensor_info

from .devices import DeviceMesh
from .errors import CompileError, ExecutionError, UnsupportedModuleError
from .memory_kinds import check_memories, in_memory
from .signature import ArgSpec, ResultSpec, Signature, check_inputs
from .spmd import Program, ProgramCache, TimedRun, compile_program

ArrayLike = np.ndarray | jax.Array


# ----------------------------------------------------------------------------- signature


@dataclass(frozen=True)
class Placement:
    """Where an argument or result of @main lives in the pipeline: its mesh."""

    mesh: str | None  # None: a plain tensor (not a mesh tensor)
    sharding: shardy.Sharding | None


def _global_info(t: ir.Type, what: str) -> tuple[TensorInfo, Placement]:
    mesh_name: str | None = None
    declared = None
    if mpmd.is_mesh_tensor(t):
        mesh_name, t, text = mpmd.mesh_tensor_parts(t)
        declared = None if text is None else shardy.parse_sharding(text)
    try:
        info = tensor_info(t)
        info.numpy_dtype()
    except ValueError as err:
        raise UnsupportedModuleError(f"{what}: {err}") from None
    if info.dtype == "token" or any(d < 0 for d in info.shape):
        raise UnsupportedModuleError(f"{what}: {t} is not supported (static tensors only)")
    return info, Placement(mesh_name, declared)


def read_mpmd_signature(func_op: ir.Operation) -> tuple[Signature, tuple[Placement, ...]]:
    """@main's arguments and results with their global shapes (mesh tensors unwrapped),
    and the mesh of each argument."""
    ftype = ir.FunctionType(ir.TypeAttr(func_op.attributes["function_type"]).value)
    attrs = shardy.arg_attrs(func_op)
    args = []
    placements = []
    for i, t in enumerate(ftype.inputs):
        info, placement = _global_info(t, f"argument {i} of @main")
        donated, aliased = donation(attrs[i])
        args.append(ArgSpec(i, info, placement.sharding, donated, aliased))
        placements.append(placement)
    results = []
    for i, t in enumerate(ftype.results):
        info, placement = _global_info(t, f"result {i} of @main")
        results.append(ResultSpec(i, info, placement.sharding))
    return Signature(tuple(args), tuple(results)), tuple(placements)


# ----------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class _FragmentStep:
    program: int  # index into SequentialExecutor.programs
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class _TransferStep:
    source: int
    target: int
    memory_kind: mpmd.MemoryKind | None = None  # set when it changes the memory kind (to this one)


@dataclass(frozen=True)
class _CallStep:
    callee: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


_Step = _FragmentStep | _TransferStep | _CallStep


@dataclass(frozen=True)
class _FunctionPlan:
    """One MPMD function as a list of steps over value slots (arguments first)."""

    name: str
    num_args: int
    num_slots: int
    steps: tuple[_Step, ...]
    frees: tuple[tuple[int, ...], ...]  # per step: slots whose last use it was
    results: tuple[int, ...]


def _free_lists(steps: Sequence[_Step], results: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    last_use: dict[int, int] = {}
    for i, step in enumerate(steps):
        used = (step.source,) if isinstance(step, _TransferStep) else step.inputs
        for slot in used:
            last_use[slot] = i
    keep = set(results)
    frees: list[list[int]] = [[] for _ in steps]
    for slot, i in last_use.items():
        if slot not in keep:
            frees[i].append(slot)
    return tuple(tuple(f) for f in frees)


@dataclass
class ExecutorStats:
    """What the executor compiled and ran."""

    fragment_ops: int = 0  # distinct mpmd.fragment ops reachable from @main
    compiled: int = 0  # distinct programs (identical fragment bodies share one)
    compile_seconds: float = 0.0
    runs: int = 0
    run_seconds: list[float] = field(default_factory=list)
    executions: Counter[str] = field(default_factory=Counter)  # per alpa.kind, all runs
    transfers: int = 0  # all runs
    calls: int = 0  # all runs

    def executions_per_run(self) -> dict[str, int]:
        """Fragment executions per `alpa.kind` in one run (in first-run order)."""
        runs = max(self.runs, 1)
        return {kind: n // runs for kind, n in self.executions.items()}


def _loc_text(op: ir.Operation) -> str:
    """` at line 12:5` (or ` at FILE:12:5`), empty without a location."""
    loc = source_loc(op.location)
    if loc is None:
        return ""
    return f" at line {loc.line}:{loc.col}" if loc.file == "-" else f" at {loc.file}:{loc.line}:{loc.col}"


class SequentialExecutor:
    """Runs an MPMD module's fragments one after another on one device.

    Construction checks the module, extracts and compiles every fragment; `run` and
    `execute` interpret @main as often as needed.
    """

    def __init__(self, module: ir.Module, device: jax.Device) -> None:
        self.device = device
        functions = mpmd.program_functions(module)  # DiagnosticError on a malformed program
        self.topology: dict[str, shardy.Mesh] = mpmd.topology(functions["main"])
        self.signature, self.placements = read_mpmd_signature(functions["main"])
        self.num_microbatch_calls = sum(
            1 for op in mpmd.top_level_ops(functions["main"]) if op.name == mpmd.CALL
        )
        self._mesh = DeviceMesh.single(device)
        self._sharding = NamedSharding(self._mesh.jax_mesh(), PartitionSpec())
        self._cache = ProgramCache()
        self.programs: list[Program] = []
        self._index_of: dict[int, int] = {}  # id(program) -> index in programs
        self.stats = ExecutorStats()
        self._plans = {name: self._plan(name, f) for name, f in functions.items()}
        check_memories([device], (step.memory_kind for plan in self._plans.values() for step in plan.steps
                                  if isinstance(step, _TransferStep) and step.memory_kind is not None))
        self.stats.compiled = len(self.programs)
        self.stats.compile_seconds = sum(p.compile_seconds for p in self.programs)

    # ---------------------------------------------------------------- building

    def _compile_fragment(self, op: ir.Operation) -> int:
        fragment_module = mpmd.fragment_module(op)
        self.stats.fragment_ops += 1
        try:
            program = self._cache.compile(fragment_module, [self.device])
        except CompileError as err:
            raise CompileError(f"{mpmd.describe_fragment(op)}{_loc_text(op)}: {err}") from None
        if id(program) not in self._index_of:  # a body not compiled before
            self._index_of[id(program)] = len(self.programs)
            self.programs.append(program)
        return self._index_of[id(program)]

    def _plan(self, name: str, func_op: ir.Operation) -> _FunctionPlan:
        block = func_op.regions[0].blocks[0]
        slot_of: dict[ir.Value, int] = {arg: i for i, arg in enumerate(block.arguments)}
        steps: list[_Step] = []
        results: tuple[int, ...] = ()

        def new_slots(op: ir.Operation) -> tuple[int, ...]:
            out = []
            for r in op.results:
                slot_of[r] = len(slot_of)
                out.append(slot_of[r])
            return tuple(out)

        for op in mpmd.top_level_ops(func_op):
            inputs = tuple(slot_of[v] for v in op.operands)
            if op.name == mpmd.FRAGMENT:
                program = self._compile_fragment(op)
                steps.append(_FragmentStep(program, mpmd.fragment_kind(op), inputs, new_slots(op)))
            elif op.name == mpmd.TRANSFER:
                src, dst = (mpmd.memory_kind_of(v.type) for v in (op.operands[0], op.results[0]))
                steps.append(_TransferStep(inputs[0], new_slots(op)[0], dst if dst is not src else None))
            elif op.name == mpmd.CALL:
                steps.append(_CallStep(mpmd.callee_name(op), inputs, new_slots(op)))
            else:  # func.return (program_functions admits nothing else)
                results = inputs
        return _FunctionPlan(name, len(block.arguments), len(slot_of), tuple(steps),
                             _free_lists(steps, results), results)

    # ---------------------------------------------------------------- inputs

    def check_inputs(self, inputs: Sequence[ArrayLike]) -> None:
        """Raise InputMismatchError unless `inputs` match @main's global argument types."""
        check_inputs(self.signature, inputs)

    def place(self, inputs: Sequence[ArrayLike]) -> list[jax.Array]:
        """Check `inputs` and put them on the device."""
        self.check_inputs(inputs)
        return [
            value if isinstance(value, jax.Array) and value.sharding == self._sharding
            else jax.device_put(value, self._sharding)
            for value in inputs
        ]

    # ---------------------------------------------------------------- running

    def _run_fragment(self, step: _FragmentStep, args: list[jax.Array]) -> list[jax.Array]:
        self.stats.executions[step.kind] += 1
        try:
            return self.programs[step.program].execute(args)
        except jax.errors.JaxRuntimeError as err:
            raise ExecutionError(f"fragment \"{step.kind}\" failed on {self.device}: {err}") from None

    def _run_function(self, plan: _FunctionPlan, args: Sequence[jax.Array]) -> list[jax.Array]:
        slots: list[jax.Array | None] = [None] * plan.num_slots
        slots[: plan.num_args] = list(args)

        def take(indices: tuple[int, ...]) -> list[jax.Array]:
            values = [slots[i] for i in indices]
            assert all(v is not None for v in values), f"@{plan.name}: value used before defined"
            return values  # type: ignore[return-value]

        for step, frees in zip(plan.steps, plan.frees, strict=True):
            if isinstance(step, _TransferStep):
                value = slots[step.source]
                if step.memory_kind is not None and value is not None:
                    value = in_memory([value], [step.memory_kind])[0]
                slots[step.target] = value
                self.stats.transfers += 1
            else:
                inputs = take(step.inputs)
                if isinstance(step, _FragmentStep):
                    outputs = self._run_fragment(step, inputs)
                else:
                    self.stats.calls += 1
                    outputs = self._run_function(self._plans[step.callee], inputs)
                for slot, value in zip(step.outputs, outputs, strict=True):
                    slots[slot] = value
            for slot in frees:
                slots[slot] = None
        return take(plan.results)

    def execute(self, inputs: Sequence[ArrayLike]) -> list[jax.Array]:
        """One run of @main; the outputs stay on the device."""
        placed = self.place(inputs)
        start = time.perf_counter()
        outputs = self._run_function(self._plans["main"], placed)
        jax.block_until_ready(outputs)
        self.stats.run_seconds.append(time.perf_counter() - start)
        self.stats.runs += 1
        return outputs

    def run(self, inputs: Sequence[ArrayLike]) -> list[np.ndarray]:
        """One run of @main on numpy (or jax) inputs; the outputs as numpy arrays."""
        return [np.asarray(x) for x in self.execute(inputs)]

    def run_timed(self, inputs: Sequence[ArrayLike], repeat: int = 1) -> TimedRun:
        """`repeat` runs on the same inputs, each timed without placing the inputs;
        the outputs of the last run."""
        if repeat < 1:
            raise ValueError(f"repeat must be at least 1, got {repeat}")
        outputs: list[jax.Array] = []
        first = len(self.stats.run_seconds)
        for _ in range(repeat):
            placed = self.place(inputs)
            jax.block_until_ready(placed)
            outputs = self.execute(placed)
        return TimedRun(tuple(np.asarray(x) for x in outputs), tuple(self.stats.run_seconds[first:]))


def compile_flat_reference(module: ir.Module, device: jax.Device) -> Program:
    """The MPMD module flattened into one plain program (`mpmd.flatten`), compiled for
    one device: the executor's own reference."""
    return compile_program(mpmd.flatten(module), [device])
