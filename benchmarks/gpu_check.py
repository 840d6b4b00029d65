"""One-device check of pipeline plans that keep, recompute (all or selectively) and
offload activations, on
jax's default backend: on a GPU, offloaded activations go to its real pinned_host memory.

For GPT tiny and Wide-ResNet tiny, `alpa-pipeshard` plans the zoo's training step as
one stage on a 1x1 cluster (4 layers, memory-plan=manual layer-memory=...) and the
pipeline runtime (`PipelineExecutable`) runs it on the first default device. Each case
checks, and prints as one PASS/FAIL line:

- the outputs against the exported step run unpartitioned on the same device
  (`runtime.reference`: per-dtype tolerances, bf16's for the bf16 step);
- that a plan offloading a layer moves values to host memory and back (the runtime's
  memory moves, and bytes held by arrays in pinned_host memory), and one without does not;

and prints the plan's predicted per-device peak (the stage plan's `peak_bytes`) beside
the runtime's measured one (`PipelineExecutable.device_peaks`: live arrays in device
memory after every instruction plus XLA's temporaries of the fragment that ran).

Cases:
- mixed: layers keep, recompute, selective, offload, in fp32 and bf16 (alpa-export
  --dtype); GPT with 4 microbatches under 1F1B, Wide-ResNet with 1 (its batch
  statistics are the whole batch's only then);
- uniform: every layer kept, recomputed, selectively recomputed or offloaded, fp32,
  under GPipe (GPT's 4 microbatches all stashed before the first backward). Where more
  than one microbatch is stashed (GPT), the measured peaks of all but keep must be
  below keep's.

Exit status 1 if any check fails.

    python3 benchmarks/gpu_check.py                                          # the GPU
    XLA_FLAGS= JAX_PLATFORMS=cpu .venv/bin/python benchmarks/gpu_check.py     # one CPU device
"""

from __future__ import annotations

import functools
import sys
import time
import traceback
from dataclasses import dataclass

import jax
import jax.extend.backend
import jaxlib
import numpy as np

from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.stage_plan import read_stage_plan
from alpa_mlir.models.export import example_inputs, export_train_step
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.runtime.pipeline import PipelineExecutable
from alpa_mlir.runtime.reference import (
    Tolerance,
    compare_outputs,
    compile_reference,
    narrowest_float,
)

LAYERS = 4
WAYS = ("keep", "recompute", "selective", "offload")
MIXED = ("keep", "recompute", "selective", "offload")
MICROBATCHES = {"gpt": 4, "wide_resnet": 1}


@dataclass(frozen=True)
class Case:
    model: str
    dtype: str  # alpa-export --dtype
    microbatches: int
    schedule: str  # gpipe or 1f1b
    layer_memory: tuple[str, ...]  # a residency per layer

    @property
    def name(self) -> str:
        ways = ",".join(self.layer_memory) if len(set(self.layer_memory)) > 1 else f"all {self.layer_memory[0]}"
        return f"{self.model} {self.dtype} {self.schedule} mb={self.microbatches} {ways}"

    def pass_pipeline(self) -> str:
        return ("builtin.module(alpa-pipeshard{devices=1x1 "
                f"layers={LAYERS} num-microbatches={self.microbatches} schedule={self.schedule} "
                f"stages=manual layer-ranges=0-{LAYERS - 1} stage-submeshes=1x1 stage-logical-shapes=1x1 "
                f"memory-plan=manual layer-memory={','.join(self.layer_memory)}}})")


@dataclass(frozen=True)
class Outcome:
    problems: tuple[str, ...]
    predicted: float = 0.0  # bytes, the plan's stage peak
    measured: float = 0.0  # bytes, device_peaks on the device
    host: int = 0  # most bytes held in host memory during the step

    @property
    def passed(self) -> bool:
        return not self.problems


def cases() -> list[Case]:
    mixed = [Case(m, d, n, "1f1b", MIXED) for m, n in MICROBATCHES.items() for d in ("fp32", "bf16")]
    uniform = [Case(m, "fp32", n, "gpipe", (way,) * LAYERS) for m, n in MICROBATCHES.items() for way in WAYS]
    return mixed + uniform


@functools.cache
def exported(model: str, dtype: str) -> str:
    return export_train_step(model, "tiny", debug_info=False, precision=dtype)


@functools.cache
def inputs(model: str) -> tuple[np.ndarray, ...]:
    return tuple(example_inputs(model, "tiny", seed=0))


@functools.cache
def reference(model: str, dtype: str, device: jax.Device) -> tuple[np.ndarray, ...]:
    """The exported step's outputs, run as one program on `device`."""
    program = compile_reference(parse_module(exported(model, dtype), make_context()), device)
    return tuple(program.run(list(inputs(model))))


def check(case: Case, device: jax.Device) -> Outcome:
    ctx = make_context()
    module = parse_module(exported(case.model, case.dtype), ctx)
    PassManager.parse(case.pass_pipeline(), ctx).run(module)
    record = read_stage_plan(module)
    if record is None or record.num_stages != 1:
        return Outcome((f"expected a one-stage plan, got {record and record.num_stages} stage(s)",))
    stage = record.stages[0]
    if stage.memory_plan != case.layer_memory:
        return Outcome((f"plan records {stage.memory_plan}, asked for {case.layer_memory}",))
    executable = PipelineExecutable(parse_module(print_module(module), make_context()), [device])
    args = list(inputs(case.model))
    got = executable.run(args)
    stats = executable.last
    problems = []
    comparison = compare_outputs(got, list(reference(case.model, case.dtype, device)),
                                 Tolerance(compute=narrowest_float(module)))
    if not comparison.passed:
        problems.append(comparison.summary_line())
    offloads = "offload" in case.layer_memory
    if offloads and not (stats.memory_moves and stats.peak_host_bytes):
        problems.append(f"offloading plan: {stats.memory_moves} memory moves, "
                        f"{stats.peak_host_bytes} bytes in host memory")
    if not offloads and stats.memory_moves:
        problems.append(f"plan without offload made {stats.memory_moves} memory moves")
    measured = executable.device_peaks(args)[device.id]
    return Outcome(tuple(problems), stage.peak_bytes, float(measured), stats.peak_host_bytes)


def kb(nbytes: float) -> str:
    return f"{nbytes / 1e3:10.1f} KB"


def peak_order(results: dict[Case, Outcome]) -> list[tuple[str, bool]]:
    """Per model with more than one microbatch stashed: (line, passed) for every other
    way's measured peak below keep's."""
    lines = []
    for model, microbatches in MICROBATCHES.items():
        by_way = {c.layer_memory[0]: o for c, o in results.items()
                  if c.model == model and c.schedule == "gpipe" and o.measured}
        if microbatches < 2 or set(by_way) != set(WAYS):
            continue
        keep = by_way["keep"].measured
        for way in WAYS[1:]:
            lower = by_way[way].measured < keep
            lines.append((f"{model} peaks: all {way} {kb(by_way[way].measured).strip()} "
                          f"{'<' if lower else '>='} all keep {kb(keep).strip()}", lower))
    return lines


def main() -> int:
    device = jax.devices()[0]
    backend = jax.extend.backend.get_backend()
    print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, backend {jax.default_backend()} "
          f"({' '.join(backend.platform_version.split())})")
    print(f"device {device} ({device.device_kind}), {len(jax.devices())} device(s), "
          f"memories: {', '.join(m.kind for m in device.addressable_memories())}")
    print(f"{'':4}  {'case':60} {'predicted':>13} {'measured':>13} {'ratio':>5} {'in host mem':>13} {'time':>6}")
    results: dict[Case, Outcome] = {}
    for case in cases():
        started = time.perf_counter()
        try:
            outcome = check(case, device)
        except Exception as err:  # reported as this case's failure; the others still run
            traceback.print_exc()
            outcome = Outcome((f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",))
        results[case] = outcome
        ratio = f"{outcome.predicted / outcome.measured:5.2f}" if outcome.measured else "    -"
        print(f"{'PASS' if outcome.passed else 'FAIL'}  {case.name:60} {kb(outcome.predicted)} "
              f"{kb(outcome.measured)} {ratio} {kb(outcome.host)} {time.perf_counter() - started:5.1f}s", flush=True)
        for problem in outcome.problems:
            print(f"      {problem}")
    order = peak_order(results)
    for line, passed in order:
        print(f"{'PASS' if passed else 'FAIL'}  {line}")
    stats = device.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        print(f"allocator: peak {stats['peak_bytes_in_use'] / 1e6:.1f} MB in use on {device} over the whole run")
    failed = sum(not o.passed for o in results.values()) + sum(not p for _, p in order)
    print(f"{len(results) + len(order) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
