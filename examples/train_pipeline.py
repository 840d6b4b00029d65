"""Train a small GPT with the pipeline runtime on 8 CPU devices, step by step against the
single-device training step.

    .venv/bin/python examples/train_pipeline.py [--steps 5] [--microbatches 4] [--schedule 1f1b]

1. Export GPT tiny's training step (StableHLO).
2. Compile it with alpa-pipeshard for a simulated 2x4 cluster: microbatches, layers,
   Alpa's stage DP, every stage auto-sharded on its submesh (an MPMD program).
3. Run it with `PipelineExecutable`: each stage's fragments on its own devices, a 1F1B
   schedule; the parameters and the optimizer state stay on their meshes from one step
   to the next (the outputs are fed back as the next step's inputs).
4. Run the original step on one device alongside and print both losses and the largest
   difference over all outputs.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--microbatches", type=int, default=4)
    p.add_argument("--schedule", default="1f1b", choices=["gpipe", "1f1b"])
    args = p.parse_args()

    import jax
    import numpy as np

    from alpa_mlir.dialect_utils.context import make_context, parse_module
    from alpa_mlir.models.export import example_inputs, export_train_step
    from alpa_mlir.passes import PassManager
    from alpa_mlir.runtime.pipeline import PipelineExecutable
    from alpa_mlir.runtime.reference import compile_reference

    text = export_train_step("gpt", "tiny", debug_info=False)
    ctx = make_context()
    module = parse_module(text, ctx)
    PassManager.parse(
        f"builtin.module(alpa-pipeshard{{devices=2x4 num-microbatches={args.microbatches} schedule={args.schedule}}})", ctx
    ).run(module)
    exe = PipelineExecutable(module, jax.devices()[:8])  # runs the schedule the plan was costed for
    for placement, mesh in zip(exe.placements, exe.program.meshes, strict=True):
        ids = ",".join(str(d.id) for d in placement.devices)
        print(f"stage {placement.stage}: mesh {mesh.text()} on devices [{ids}]")
    single = compile_reference(parse_module(text, make_context()), jax.devices()[0])

    inputs = example_inputs("gpt", "tiny", seed=0)
    aliases = {a.index: a.aliased_output for a in exe.signature.args if a.aliased_output is not None}
    state, ref_state = list(inputs), [np.asarray(x) for x in inputs]
    for step in range(args.steps):
        outputs = exe.step(state)  # device-resident jax.Arrays
        expected = single.run(ref_state)
        diff = max(float(np.max(np.abs(np.asarray(o) - e))) for o, e in zip(outputs, expected, strict=True))
        print(f"step {step + 1}: loss pipelined {float(np.asarray(outputs[-1])):.6f} "
              f"single-device {float(expected[-1]):.6f}  max |difference| {diff:.2e}  "
              f"({exe.last.seconds * 1e3:.0f} ms)")
        state = [outputs[aliases[i]] if i in aliases else state[i] for i in range(len(state))]
        ref_state = [expected[aliases[i]] if i in aliases else ref_state[i] for i in range(len(ref_state))]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
