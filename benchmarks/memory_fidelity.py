"""Predicted against measured memory: the stage plan's per-device peak of each stage
against the device memory the pipeline runtime holds for that stage, on 8 CPU devices.

For each case the zoo's training step is planned by `alpa-pipeshard` (two layers, one
stage of 4 devices each, as 2x2 and 4x1 logical meshes, the given microbatches), compiled by the pipeline
runtime and run for one step while `PipelineExecutable.device_peaks` records, after
every instruction, the bytes of the live arrays' shards on each device plus the
temporaries XLA's memory analysis reserves for the fragment that just ran. A stage's
measured peak is the largest over its devices; predicted is the plan's `peak_bytes`
(parameters + gradient accumulators + optimizer state + in-flight microbatches x
activations + temporaries, `dialect_utils.stage_plan`).

    .venv/bin/python benchmarks/memory_fidelity.py                 # the zoo at test sizes
    .venv/bin/python benchmarks/memory_fidelity.py --medium        # also a few larger steps
    .venv/bin/python benchmarks/memory_fidelity.py --cases gpt --options "memory-plan=manual layer-memory=recompute,keep,keep,keep"

Target (issue 14): the predicted peak within `--tolerance` (10%) of the measured one on
every stage; a stage outside makes the exit status 1. CPU memory analysis stands in for
the accelerator's (same XLA passes, a different backend's buffer assignment).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# model -> (export overrides, microbatches); medium sizes after the test sizes
TEST_SIZES: dict[str, tuple[dict[str, object], int]] = {
    "mlp": ({}, 2), "gpt": ({}, 2), "bert": ({}, 2), "moe": ({}, 2), "wide_resnet": ({}, 1),
}
MEDIUM: dict[str, tuple[dict[str, object], int]] = {
    "gpt-medium": ({"batch_size": 32, "seq_len": 128, "hidden_size": 128, "num_layers": 4}, 4),
    "wide_resnet-medium": ({"batch_size": 32}, 1),
    "moe-medium": ({"hidden_size": 128}, 2),
    # Adafactor with its matrices factored (128 wide): state shaped unlike its parameters
    "moe-medium-adafactor": ({"optimizer": "adafactor", "hidden_size": 128}, 2),
}
PLAN = ("devices=2x4 layers=2 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 "
        "stage-logical-shapes=2x2,4x1 allow-per-microbatch-statistics=true")


def measure(case: str, overrides: dict[str, object], microbatches: int, options: str) -> list[tuple[int, float, float]]:
    """(stage, predicted bytes, measured bytes) per stage of one case."""
    import jax

    from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
    from alpa_mlir.dialect_utils.stage_plan import read_stage_plan
    from alpa_mlir.models.export import example_inputs, export_train_step
    from alpa_mlir.passes.pass_manager import PassManager
    from alpa_mlir.runtime.pipeline import PipelineExecutable

    model = case.split("-")[0]
    ctx = make_context()
    module = parse_module(export_train_step(model, "tiny", debug_info=False, **overrides), ctx)
    PassManager.parse(f"builtin.module(alpa-pipeshard{{{PLAN} num-microbatches={microbatches} {options}}})",
                      ctx).run(module)
    record = read_stage_plan(module)
    assert record is not None
    executable = PipelineExecutable(parse_module(print_module(module), make_context()), jax.devices()[:8])
    peaks = executable.device_peaks(example_inputs(model, "tiny", seed=0, **overrides))
    rows = []
    for stage, placement in zip(record.stages, executable.placements, strict=True):
        measured = max(peaks.get(d.id, 0) for d in placement.devices)
        rows.append((stage.stage, stage.peak_bytes, float(measured)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=None, help="zoo models (default: all at test sizes)")
    parser.add_argument("--medium", action="store_true", help="also the larger steps")
    parser.add_argument("--options", default="", help="more alpa-pipeshard options (k=v k=v)")
    parser.add_argument("--tolerance", type=float, default=0.10, help="allowed |predicted / measured - 1|")
    args = parser.parse_args(argv)
    cases = dict(TEST_SIZES)
    if args.cases:
        cases = {c: cases[c] for c in args.cases if c in cases}
        unknown = [c for c in args.cases if c not in TEST_SIZES]
        if unknown:
            parser.error(f"unknown case(s) {', '.join(unknown)} (known: {', '.join(TEST_SIZES)})")
    if args.medium:
        cases.update(MEDIUM)
    print(f"{'case':20} {'stage':>5} {'predicted KB':>13} {'measured KB':>12} {'ratio':>6}  verdict")
    failed = 0
    for case, (overrides, microbatches) in cases.items():
        for stage, predicted, measured in measure(case, overrides, microbatches, args.options):
            ratio = predicted / measured if measured else float("inf")
            ok = abs(ratio - 1.0) <= args.tolerance
            failed += not ok
            print(f"{case:20} {stage:>5} {predicted / 1e3:>13.1f} {measured / 1e3:>12.1f} {ratio:>6.2f}  "
                  f"{'within' if ok else 'OUTSIDE'} {args.tolerance:.0%}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
