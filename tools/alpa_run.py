"""alpa-run: execute a module (plain, SPMD-annotated or MPMD) on local devices.

    alpa-run MODULE.mlir [--devices N] [--inputs in.npz] [--outputs out.npz]
             [--reference] [--seed S] [--repeat K] [--collectives] [--stats]
             [--rtol R] [--atol A]

Inputs come from an npz (`arg0`, `arg1`, ...) or are drawn at random from @main's
signature; outputs go to an npz (`out0`, ...). `--reference` also runs the module
unpartitioned on one device and compares every output (exit 1 on a mismatch).
On CPU, N fake devices are created (default N: the module's mesh size).

MPMD modules (Shardy `mpmd` dialect, `docs/mpmd-format.md`) run on the pipeline runtime
(`--executor pipeline`, the default: every stage on its own submesh, `--schedule
gpipe|1f1b`, `--steps N` training steps with the parameters kept on their meshes,
`--trace FILE.json` / `--gantt FILE.png` of the last step) or on the sequential reference
executor (`--executor sequential`: every fragment in program order on one device).
Their `--reference` is the program flattened into one XLA program on one device.
`--steps N` (SPMD and pipeline) runs N training steps, each fed the previous one's
updated state (@main's aliased outputs), and compares the last with N reference steps.

Jobs of several processes (JAX's multi-controller runtime, `docs/runtime.md`):
`--num-processes P` starts P local processes (CPU devices split between them) and shows
process 0's output; `--num-processes P --process-id I --coordinator HOST:PORT` joins a
job started once per host.

Errors: `FILE:line:col: error: ...` for problems in the module, `alpa-run: error: ...`
for the rest; exit status 1, no traceback (`--debug` shows one).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import jax
import numpy as np
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import context, mpmd
from alpa_mlir.dialect_utils.diagnostics import (
    Diagnostic,
    DiagnosticError,
    Severity,
    from_mlir_error,
    module_location,
    source_loc,
)
from alpa_mlir.dialect_utils.graph import functions, is_declaration
from alpa_mlir.dialect_utils.output_files import output_problem
from alpa_mlir.dialect_utils.schedules import ScheduleKind
from alpa_mlir.dialect_utils.types import tensor_info
from alpa_mlir.runtime import distributed
from alpa_mlir.runtime.devices import ensure_local_devices
from alpa_mlir.runtime.errors import ExecutionError
from alpa_mlir.runtime.inputs import load_inputs, random_inputs, save_outputs
from alpa_mlir.runtime.module_kind import ModuleKind, module_kind, spmd_mesh
from alpa_mlir.runtime.mpmd_reference import (
    Placement,
    SequentialExecutor,
    compile_flat_reference,
)
from alpa_mlir.runtime.pipeline import PipelineExecutable
from alpa_mlir.runtime.pipeline_program import read_program
from alpa_mlir.runtime.reference import (
    ReferenceReport,
    Tolerance,
    compare_outputs,
    compile_reference,
    narrowest_float,
)
from alpa_mlir.runtime.signature import Signature, format_tensor
from alpa_mlir.runtime.spmd import (
    CompileSettings,
    Program,
    TimedRun,
    compile_program,
    required_devices,
)
from alpa_mlir.runtime.trace import gantt, write_chrome_trace
from alpa_mlir.runtime.transfers import TransferKind
from alpa_mlir.tools.cli import ToolParser

PROG = "alpa-run"
STDIN_NAME = "<stdin>"


class UsageError(Exception):
    """A problem with the command line or a file named on it."""


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(prog=PROG, description="Execute a StableHLO module (plain, SPMD or MPMD) on local devices.")
    p.add_argument("module", help="input .mlir (text or bytecode); '-' = stdin")
    p.add_argument("--devices", type=int, default=None,
                   help="number of local devices to use (default: the module's mesh size, or 1; MPMD modules: 1)")
    p.add_argument("--inputs", default=None, help="npz with arg0, arg1, ... (default: random inputs)")
    p.add_argument("--outputs", default=None, help="write the outputs as out0, out1, ... to this npz")
    p.add_argument("--reference", action="store_true",
                   help="also run unpartitioned on one device and compare every output "
                        "(MPMD: the flattened program)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--repeat", type=int, default=1, help="run K times, report the mean time (default 1)")
    p.add_argument("--collectives", action="store_true",
                   help="count collectives right after SPMD partitioning (per kind)")
    p.add_argument("--stats", action="store_true", help="print XLA's cost analysis and memory statistics")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance of float outputs (default per dtype; f32: 1e-4)")
    p.add_argument("--atol", type=float, default=None, help="absolute tolerance of float outputs (default per dtype; f32: 1e-5)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="list every argument and output (default: a summary for large modules)")
    p.add_argument("--executor", choices=("pipeline", "sequential"), default="pipeline",
                   help="MPMD modules: the pipeline runtime (stages on their submeshes, default) "
                        "or the sequential reference executor (one device)")
    p.add_argument("--schedule", choices=[k.value for k in ScheduleKind], default=None,
                   help="MPMD pipeline schedule (default: the one the stage plan was costed for, else 1f1b)")
    p.add_argument("--transfer", choices=[k.value for k in TransferKind], default=TransferKind.LOCAL_ALL_GATHER.value,
                   help="how values move between meshes (default local-all-gather)")
    p.add_argument("--steps", type=int, default=1,
                   help="SPMD and MPMD pipeline: training steps, each step's updated parameters and "
                        "optimizer state (aliased outputs) fed to the next (default 1)")
    p.add_argument("--cache-dir", default=None,
                   help="MPMD pipeline: keep compiled fragments in this folder across runs")
    p.add_argument("--no-donate", action="store_true",
                   help="MPMD pipeline: fragments never consume their dead inputs' buffers")
    p.add_argument("--trace", default=None, help="MPMD pipeline: Chrome trace JSON of the last step")
    p.add_argument("--gantt", default=None, help="MPMD pipeline: Gantt chart (PNG) of the last step")
    p.add_argument("--num-processes", type=int, default=1,
                   help="run as a job of P processes (JAX's multi-controller runtime): without "
                        "--process-id, start P local processes; with it, join a job started once per host")
    p.add_argument("--devices-per-process", type=int, default=None,
                   help="CPU devices each process creates (default: the devices the module "
                        "needs, divided by --num-processes)")
    p.add_argument("--coordinator", default=None,
                   help="HOST:PORT of process 0's coordinator (with --process-id)")
    p.add_argument("--process-id", type=int, default=None,
                   help="this process's id in a job of --num-processes (with --coordinator)")
    p.add_argument("--join-timeout", type=float, default=distributed.DEFAULT_INIT_TIMEOUT,
                   help="seconds for every process of the job to join the coordinator "
                        f"(default {distributed.DEFAULT_INIT_TIMEOUT:g})")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")
    return p


@dataclass(frozen=True)
class LoadedModule:
    module: ir.Module
    name: str  # for messages: the path, or <stdin>


def read_module(path: str, ctx: ir.Context) -> LoadedModule:
    """Parse a file (or stdin); parse errors become DiagnosticErrors."""
    name = STDIN_NAME if path == "-" else path
    if path != "-" and os.path.isdir(path):
        raise UsageError(f"cannot open input file '{path}': it is a directory")
    if path != "-" and not os.path.isfile(path):
        raise UsageError(f"cannot open input file '{path}': no such file")
    try:
        if path == "-":
            module = context.parse_module(sys.stdin.buffer.read(), ctx)
        else:
            module = context.parse_file(path, ctx)
    except ir.MLIRError as err:
        raise DiagnosticError(from_mlir_error(err)) from None
    return LoadedModule(module, name)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def _device_count(args: argparse.Namespace, loaded: LoadedModule) -> int:
    needed = required_devices(loaded.module)
    if args.devices is None:
        return needed
    if args.devices < 1:
        raise UsageError(f"--devices must be at least 1, got {args.devices}")
    if args.devices < needed:
        found = spmd_mesh(loaded.module)
        mesh = f"mesh @{found[0]} {found[1].text()}" if found else "module"
        raise UsageError(f"the {mesh} needs {needed} devices, but --devices is {args.devices}")
    if args.devices > needed:
        found = spmd_mesh(loaded.module)
        what = f"its mesh @{found[0]} {found[1].text()} runs" if found else "it runs"
        print(f"{PROG}: warning: --devices {args.devices} is more than {loaded.name} uses: "
              f"{what} on {needed} device{'s' if needed > 1 else ''}", file=sys.stderr)
    return needed


# Above this many arguments / outputs, print a summary unless --verbose.
LIST_LIMIT = 16


def print_program(program: Program, out: TextIO, verbose: bool) -> None:
    print(f"mesh: {program.mesh.describe()}", file=out)
    args = program.signature.args
    if verbose or len(args) <= LIST_LIMIT:
        for spec, text in zip(args, program.input_descriptions, strict=True):
            donated = " donated" if spec.donated else ""
            print(f"  {spec.key}: {format_tensor(spec.info)} {text}{donated}", file=out)
    else:
        groups: dict[str, list[str]] = {}
        for spec, text in zip(args, program.input_descriptions, strict=True):
            groups.setdefault(text, []).append(spec.key)
        n_donated = sum(1 for spec in args if spec.donated)
        print(f"  {len(args)} arguments ({n_donated} donated); by placement (--verbose lists each):", file=out)
        for text, keys in groups.items():
            shown = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")
            print(f"    {len(keys)} x {text}: {shown}", file=out)
    print(f"compile: {_ms(program.compile_seconds)}", file=out)


def print_report(report: ReferenceReport, out: TextIO, verbose: bool) -> None:
    comparisons = report.comparisons
    if verbose or len(comparisons) <= LIST_LIMIT:
        shown = comparisons
    else:
        shown = tuple(c for c in comparisons if not c.ok or c.nonfinite)
        worst = max(comparisons, key=lambda c: (c.max_rel_err, c.max_abs_err))
        print(f"worst output: {worst.line()}", file=out)
    for comparison in shown:
        print(comparison.line(), file=out)
    print(report.summary_line(), file=out)


def print_stats(program: Program, out: TextIO) -> None:
    cost = program.cost()
    mem = program.memory()
    print(f"xla cost (per device): flops={cost.flops:.4g} bytes_accessed={cost.bytes_accessed:.4g}", file=out)
    print(f"xla memory (per device): arguments={mem.argument_bytes} outputs={mem.output_bytes} "
          f"aliased={mem.alias_bytes} temp={mem.temp_bytes} code={mem.generated_code_bytes}", file=out)


def _check_repeat(args: argparse.Namespace) -> None:
    if args.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {args.repeat}")
    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    if args.steps > 1 and args.repeat > 1:
        raise UsageError("--steps and --repeat do not combine: --steps feeds each step's outputs to the next")


def _aliases(signature: Signature) -> dict[int, int]:
    """Argument index -> the output that updates it (tf.aliasing_output): what --steps
    feeds from one step to the next."""
    return {a.index: a.aliased_output for a in signature.args if a.aliased_output is not None}


def _feed_back(aliases: dict[int, int], state: list[Any], outputs: Sequence[Any]) -> list[Any]:
    """The next step's inputs: aliased arguments replaced by their outputs."""
    return [outputs[aliases[i]] if i in aliases else state[i] for i in range(len(state))]


def _reference_steps(reference: Program, inputs: list[np.ndarray], aliases: dict[int, int],
                     steps: int) -> list[np.ndarray]:
    """The outputs of `steps` single-device steps, each fed the previous one's."""
    state: list[Any] = list(inputs)
    expected: list[np.ndarray] = []
    for _ in range(steps):
        expected = reference.run(state)
        state = _feed_back(aliases, state, expected)
    return expected


def _inputs(args: argparse.Namespace, signature: Signature) -> list[np.ndarray]:
    """From --inputs, else random (--seed)."""
    return load_inputs(args.inputs, signature) if args.inputs else random_inputs(signature, args.seed)


def print_run(timed: TimedRun, out: TextIO) -> None:
    per_run = ", ".join(_ms(s) for s in timed.seconds)
    print(f"run: {len(timed.seconds)} x, mean {_ms(timed.mean_seconds)} ({per_run})", file=out)


def _save_outputs(args: argparse.Namespace, timed: TimedRun, out: TextIO) -> None:
    if args.outputs:
        save_outputs(args.outputs, timed.outputs)
        print(f"outputs: {len(timed.outputs)} written to {args.outputs}", file=out)


def _report(args: argparse.Namespace, module: ir.Module, timed: TimedRun, expected: list[np.ndarray],
            out: TextIO) -> int:
    """Compare the run's outputs with the reference's (tolerances for the narrowest float
    the module computes in), print; the exit status."""
    report = compare_outputs(list(timed.outputs), expected,
                             Tolerance(args.rtol, args.atol, narrowest_float(module)))
    print_report(report, out, args.verbose)
    return 0 if report.passed else 1


def run_spmd(args: argparse.Namespace, loaded: LoadedModule, out: TextIO) -> int:
    """Plain and SPMD modules: one XLA program on one device set."""
    _check_repeat(args)
    devices = _run_devices(_device_count(args, loaded))
    program = compile_program(loaded.module, devices, CompileSettings(count_collectives=args.collectives))
    print(f"module: {loaded.name} ({program.kind.value})", file=out)
    print_program(program, out, args.verbose)
    inputs = _inputs(args, program.signature)
    if args.steps == 1:
        timed = program.run_timed(inputs, args.repeat)
    else:
        aliases, state, seconds = _aliases(program.signature), list(inputs), []
        for k in range(args.steps):
            timed = program.run_timed(state)
            print(f"step {k + 1}: {_ms(timed.seconds[0])}", file=out)
            seconds.append(timed.seconds[0])
            state = _feed_back(aliases, state, timed.outputs)
        timed = TimedRun(timed.outputs, tuple(seconds))
    print_run(timed, out)
    if program.collectives is not None:
        print(f"collectives: {program.collectives.summary()}", file=out)
    if args.stats:
        print_stats(program, out)
    _save_outputs(args, timed, out)
    if not args.reference:
        return 0
    reference = compile_reference(loaded.module, _reference_device(devices))
    expected = _reference_steps(reference, inputs, _aliases(program.signature), args.steps)
    return _report(args, loaded.module, timed, expected, out)


def _describe(placement: Placement) -> str:
    """`on stage0 [{"x"}, {}]`, `on stage1 replicated`, or `plain tensor`."""
    if placement.mesh is None:
        return "plain tensor"
    if placement.sharding is None or placement.sharding.is_replicated:
        return f"on {placement.mesh} replicated"
    return f"on {placement.mesh} [{', '.join(d.text() for d in placement.sharding.dims)}]"


def print_executor(executor: SequentialExecutor, out: TextIO, verbose: bool) -> None:
    """Topology (one line per mesh), the arguments' meshes, fragments, compile time."""
    for name, mesh in executor.topology.items():
        axes = " ".join(f"{a.name}={a.size}" for a in mesh.axes) or "(no axes)"
        print(f"topology: {name} {axes}", file=out)
    print("executor: sequential (1 device)", file=out)
    args = executor.signature.args
    if verbose or len(args) <= LIST_LIMIT:
        for spec, placement in zip(args, executor.placements, strict=True):
            donated = " donated" if spec.donated else ""
            print(f"  {spec.key}: {format_tensor(spec.info)} {_describe(placement)}{donated}", file=out)
    else:
        per_mesh = Counter(p.mesh or "(plain)" for p in executor.placements)
        meshes = ", ".join(f"{n} on {m}" for m, n in per_mesh.items())
        print(f"  {len(args)} arguments: {meshes} (--verbose lists each)", file=out)
    stats = executor.stats
    print(f"fragments: {stats.fragment_ops} ({stats.compiled} compiled), "
          f"microbatch calls: {executor.num_microbatch_calls}", file=out)
    print(f"compile: {_ms(stats.compile_seconds)}", file=out)


def run_mpmd(args: argparse.Namespace, loaded: LoadedModule, out: TextIO) -> int:
    """MPMD modules: the sequential reference executor (fragments in order, one device)."""
    for flag in ("collectives", "stats"):
        if getattr(args, flag):
            raise UsageError(f"--{flag} applies to plain and SPMD modules; {loaded.name} is an "
                             "MPMD module (run on the sequential reference executor)")
    if args.steps != 1:
        raise UsageError("--steps applies to SPMD modules and to MPMD modules on the pipeline executor")
    _check_repeat(args)
    if args.devices is not None and args.devices < 1:
        raise UsageError(f"--devices must be at least 1, got {args.devices}")
    device = ensure_local_devices(1)[0]
    executor = SequentialExecutor(loaded.module, device)
    print(f"module: {loaded.name} (mpmd)", file=out)
    print_executor(executor, out, args.verbose)
    inputs = _inputs(args, executor.signature)
    timed = executor.run_timed(inputs, args.repeat)
    print_run(timed, out)
    per_kind = " ".join(f"{k}={n}" for k, n in executor.stats.executions_per_run().items())
    print(f"fragment runs per step: {per_kind or 'none'}", file=out)
    _save_outputs(args, timed, out)
    if not args.reference:
        return 0
    reference = compile_flat_reference(loaded.module, device)
    print(f"reference: flattened module, compile {_ms(reference.compile_seconds)}", file=out)
    return _report(args, loaded.module, timed, reference.run(inputs), out)


def _pipeline_flags_only_for_mpmd(args: argparse.Namespace) -> None:
    for flag, default in (("trace", None), ("gantt", None), ("cache_dir", None),
                          ("no_donate", False), ("schedule", None)):
        if getattr(args, flag) != default:
            raise UsageError(f"--{flag.replace('_', '-')} applies to MPMD modules run by the pipeline executor")


def run_pipeline(args: argparse.Namespace, loaded: LoadedModule, out: TextIO) -> int:
    """MPMD modules on the pipeline runtime: every stage on its submesh, a schedule."""
    for flag in ("collectives", "stats"):
        if getattr(args, flag):
            raise UsageError(f"--{flag} applies to plain and SPMD modules; {loaded.name} is an MPMD module")
    _check_repeat(args)
    program = read_program(loaded.module)
    needed = sum(m.size for m in program.meshes)
    if args.devices is not None and args.devices < needed:
        raise UsageError(f"--devices {args.devices}: the program's stage meshes need {needed} devices")
    devices = _run_devices(args.devices or needed)
    exe = PipelineExecutable(loaded.module, devices, schedule=args.schedule, transfer=args.transfer,
                             trace=bool(args.trace or args.gantt), donate=not args.no_donate,
                             cache_dir=args.cache_dir)
    for warning in exe.warnings:
        print(f"{loaded.name}: warning: {warning}", file=sys.stderr)
    print(f"module: {loaded.name} (mpmd)", file=out)
    for p, mesh in zip(exe.placements, program.meshes, strict=True):
        axes = " ".join(f"{a.name}={a.size}" for a in mesh.axes) or "(no axes)"
        ids = ",".join(str(d.id) for d in p.devices)
        processes = sorted({d.process_index for d in p.devices})
        where = f" (process {', '.join(map(str, processes))})" if distributed.is_multiprocess() else ""
        print(f"topology: {p.mesh_name} {axes} on devices [{ids}]{where}", file=out)
    print(f"executor: pipeline ({exe.schedule.value}, {program.num_stages} stages, "
          f"{program.num_microbatches} microbatches, {len(exe.instructions)} instructions)", file=out)
    donated = sum(len(p) for p in exe.donated.values())
    from_disk = f", {exe.cache.stats.from_disk} from {args.cache_dir}" if exe.cache.stats.from_disk else ""
    print(f"fragments: {len(program.fragments)} ({exe.cache.stats.compiled} compiled{from_disk}), "
          f"compile: {_ms(exe.compile_seconds)}, {donated} fragment inputs donated", file=out)
    inputs = _inputs(args, exe.signature)
    aliases = _aliases(exe.signature)
    state: list[Any] = list(inputs)
    seconds: list[float] = []
    outputs: list[Any] = []
    for k in range(max(args.steps, args.repeat)):
        outputs = exe.step(state if args.steps > 1 else inputs)
        seconds.append(exe.last.seconds)
        if args.steps > 1:
            print(f"step {k + 1}: {_ms(exe.last.seconds)}", file=out)
            state = _feed_back(aliases, state, outputs)
    moved = exe.transfer.stats
    host = exe.collect(outputs)
    here = " on this process" if distributed.is_multiprocess() else ""
    across = f", {moved.bytes_across_processes} across processes" if distributed.is_multiprocess() else ""
    print(f"per step{here}: {exe.last.runs} fragment runs, {exe.last.moves} transfers "
          f"({moved.bytes_crossed} bytes across meshes{across}, {exe.transfer.kind.value})", file=out)
    if exe.last.memory_moves:
        print(f"offloaded{here}: {exe.last.memory_moves} copies between device and host memory, "
              f"at most {exe.last.peak_host_bytes} bytes in host memory", file=out)
    if any(x is None for x in host):  # a process other than 0 of a job
        print("outputs and the reference check: on process 0", file=out)
        return 0
    timed = TimedRun(tuple(x for x in host if x is not None), tuple(seconds))
    print_run(timed, out)
    _save_outputs(args, timed, out)
    if args.trace:
        write_chrome_trace(exe.last.events, program.mesh_names, args.trace)
        print(f"trace: {args.trace}", file=out)
    if args.gantt:
        gantt(exe.last.events, program.mesh_names, args.gantt,
              title=f"{loaded.name}: {exe.schedule.value}, {program.num_microbatches} microbatches")
        print(f"gantt: {args.gantt}", file=out)
    if not args.reference:
        return 0
    reference = compile_flat_reference(loaded.module, _reference_device(devices))
    print(f"reference: flattened module on one device, {args.steps} step(s)", file=out)
    return _report(args, loaded.module, timed, _reference_steps(reference, inputs, aliases, args.steps), out)


def _check_output_paths(args: argparse.Namespace) -> None:
    """Output files are checked before the run, not after it."""
    for flag in ("outputs", "trace", "gantt"):
        path = getattr(args, flag)
        problem = None if path is None else output_problem(path)
        if problem is not None:
            raise UsageError(f"cannot write --{flag} file '{path}': {problem}")


def _check_main(loaded: LoadedModule) -> None:
    """The module has a @main with a body: what every executor runs."""
    main = functions(loaded.module).get("main")
    if main is None:
        raise DiagnosticError([Diagnostic(Severity.ERROR, "the module has no @main function to run",
                                          source_loc(module_location(loaded.module)))])
    if is_declaration(main):
        raise DiagnosticError([Diagnostic(Severity.ERROR, "@main is a declaration without a body: "
                                          "nothing to run", source_loc(main.location))])


def _check_numbers(args: argparse.Namespace) -> None:
    for flag in ("rtol", "atol"):
        value = getattr(args, flag)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{flag} must be a finite number >= 0, got {value}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")


def run(args: argparse.Namespace, out: TextIO, argv: list[str] | None = None) -> int:
    """`argv`: the command line, which a launcher (--num-processes without --process-id)
    gives each process it starts."""
    _check_numbers(args)
    _check_job_flags(args)
    if args.num_processes > 1 and args.process_id is None:
        return launch(args, argv if argv is not None else sys.argv[1:], out)
    if args.process_id is not None:
        distributed.initialize(distributed.Job(args.coordinator, args.num_processes, args.process_id,
                                               args.devices_per_process, init_timeout=args.join_timeout))
        if args.process_id != 0:  # files are written by process 0 only
            args.outputs = args.trace = args.gantt = None
    _check_output_paths(args)
    loaded = read_module(args.module, context.make_context())
    _check_main(loaded)
    if args.process_id is not None:
        print(f"job: process {args.process_id} of {args.num_processes}, {len(jax.local_devices())} "
              f"devices each, coordinator {args.coordinator}", file=out)
    # 64-bit arguments (f64, i64) stay 64-bit only with JAX's x64 mode on.
    with jax.enable_x64(_has_64_bit_values(loaded)):
        if module_kind(loaded.module) is ModuleKind.MPMD:
            if args.executor == "pipeline":
                return run_pipeline(args, loaded, out)
            _pipeline_flags_only_for_mpmd(args)
            return run_mpmd(args, loaded, out)
        _pipeline_flags_only_for_mpmd(args)
        return run_spmd(args, loaded, out)  # PLAIN, SPMD and GSPMD


def _check_job_flags(args: argparse.Namespace) -> None:
    if args.num_processes < 1:
        raise UsageError(f"--num-processes must be at least 1, got {args.num_processes}")
    if args.devices_per_process is not None and args.devices_per_process < 1:
        raise UsageError(f"--devices-per-process must be at least 1, got {args.devices_per_process}")
    if (args.coordinator is None) != (args.process_id is None):
        raise UsageError("--coordinator and --process-id go together (joining a job started once per host)")
    if args.process_id is not None and not 0 <= args.process_id < args.num_processes:
        raise UsageError(f"--process-id must be in [0, {args.num_processes}) for "
                         f"--num-processes {args.num_processes}, got {args.process_id}")
    if args.process_id is None and args.devices_per_process is not None and args.num_processes == 1:
        raise UsageError("--devices-per-process applies to jobs of several processes: use --devices")
    if not (math.isfinite(args.join_timeout) and args.join_timeout > 0):
        raise UsageError(f"--join-timeout must be a positive number of seconds, got {args.join_timeout}")
    if args.num_processes > 1 and args.module == "-":
        raise UsageError("--num-processes needs a module file: every process reads it, stdin cannot be shared")
    if args.coordinator is not None:
        try:
            distributed.parse_address(args.coordinator)
        except distributed.JobError as e:
            raise UsageError(f"--coordinator: {e}") from None


def launch(args: argparse.Namespace, argv: list[str], out: TextIO) -> int:
    """Start --num-processes local processes of this command (one coordinator on
    127.0.0.1) and wait for them; process 0's output is shown."""
    _check_output_paths(args)
    loaded = read_module(args.module, context.make_context())
    _check_main(loaded)
    per_process = args.devices_per_process or -(-_job_device_count(args, loaded) // args.num_processes)

    def command(process_id: int, coordinator: str) -> list[str]:
        return [sys.executable, "-m", "alpa_mlir.tools.alpa_run", *argv, "--process-id", str(process_id),
                "--coordinator", coordinator, "--devices-per-process", str(per_process)]

    return distributed.launch_local(command, args.num_processes, per_process, out=out).status


def _job_device_count(args: argparse.Namespace, loaded: LoadedModule) -> int:
    """The devices a job runs the module on: --devices, else what the module needs."""
    if args.devices is not None:
        return int(args.devices)
    if module_kind(loaded.module) is ModuleKind.MPMD:
        return sum(m.size for m in mpmd.topology(mpmd.program_functions(loaded.module)["main"]).values())
    return required_devices(loaded.module)


def _run_devices(n: int) -> tuple[jax.Device, ...]:
    """The first n devices: of the job across processes (every process must own one of
    them: each runs the same program), else local (made on CPU)."""
    if not distributed.is_multiprocess():
        return ensure_local_devices(n)
    devices = distributed.job_devices(n)
    idle = sorted(set(range(jax.process_count())) - {d.process_index for d in devices})
    if idle:
        per = len(jax.local_devices())
        share = -(-n // jax.process_count())
        raise UsageError(f"the module runs on {n} devices, but the job's first {n} devices leave "
                         f"process(es) {', '.join(map(str, idle))} without one ({jax.process_count()} "
                         f"processes x {per} devices): give each process {share} devices "
                         f"(--devices-per-process {share})")
    return devices


def _reference_device(devices: tuple[jax.Device, ...]) -> jax.Device:
    """A device of this process for the single-device reference run."""
    return devices[0] if devices[0].process_index == jax.process_index() else jax.local_devices()[0]


def _has_64_bit_values(loaded: LoadedModule) -> bool:
    """@main takes or returns a 64-bit element type."""
    t = ir.FunctionType(ir.TypeAttr(functions(loaded.module)["main"].attributes["function_type"]).value)
    return any(isinstance(x, ir.RankedTensorType) and tensor_info(x).dtype in _X64_DTYPES
               for x in (*t.inputs, *t.results))


_X64_DTYPES = frozenset(("f64", "i64", "ui64", "complex<f64>"))
"""Element types JAX keeps only in x64 mode (else it narrows them to 32 bits)."""


def _buffer_name(args: argparse.Namespace) -> str:
    return STDIN_NAME if args.module == "-" else args.module


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = sys.stderr
    try:
        return run(args, sys.stdout, argv)
    except DiagnosticError as e:
        if args.debug:
            raise
        for diag in e.diagnostics:
            print(diag.format(_buffer_name(args)), file=err)
        return 1
    except MemoryError as e:
        if args.debug:
            raise
        print(f"{PROG}: error: out of memory{': ' + str(e) if str(e) else ''}", file=err)
        return 1
    except BrokenPipeError:  # stdout closed early (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (UsageError, ExecutionError) as e:
        if args.debug:
            raise
        loc = source_loc(getattr(e, "location", None))
        if loc is not None:  # an error about a place in the module: file:line:col
            print(Diagnostic(Severity.ERROR, str(e), loc).format(_buffer_name(args)), file=err)
        else:
            print(f"{PROG}: error: {e}", file=err)
        return 1
    except Exception as e:  # a bug of ours: say so plainly, traceback only with --debug
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)",
              file=err)
        return 1


if __name__ == "__main__":
    sys.exit(main())

