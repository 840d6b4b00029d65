"""Predicted against actual collectives: alpa-auto-sharding's report against the HLO right
after XLA's SPMD partitioning, for the zoo (tiny presets) and the real-world corpus
(test/corpus: flax, equinox and optax training steps; needs the test extras).

    .venv/bin/python benchmarks/predicted_collectives.py                    # zoo + corpus, 2x4 and 8
    .venv/bin/python benchmarks/predicted_collectives.py --corpus flax_gpt_scan --meshes 2x4
    .venv/bin/python benchmarks/predicted_collectives.py --markdown         # the docs table

Prints one line per (program, mesh, collective kind) with both counts and bytes, and
exits non-zero when any count differs (the tests assert the same; this prints all of it).
Programs are planned with `cluster=p3.16xlarge`, the corpus's setting (the zoo tests use
the default cluster: some plans, and so some counts, differ from theirs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZOO = ("mlp", "gpt", "bert", "moe", "wide-resnet")


def _setup() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=8".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, str(REPO / "test"))  # the corpus


def _rows(name: str, text: str, mesh: str) -> list:  # type: ignore[type-arg]
    import jax

    from alpa_mlir.dialect_utils.context import make_context, parse_module
    from alpa_mlir.passes import PassManager
    from alpa_mlir.runtime.collectives import compare_prediction
    from alpa_mlir.runtime.spmd import CompileSettings, compile_program

    ctx = make_context()
    module = parse_module(text, ctx)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.json"
        pipeline = f"builtin.module(alpa-auto-sharding{{mesh={mesh} cluster=p3.16xlarge report={path}}})"
        PassManager.parse(pipeline, ctx).run(module)
        report = json.loads(path.read_text())
    program = compile_program(module, jax.devices()[:8], CompileSettings(count_collectives=True))
    assert program.collectives is not None
    return compare_prediction(name, mesh, report["predicted_collectives"], program.collectives)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", nargs="*", default=list(ZOO), help="zoo models (tiny preset)")
    p.add_argument("--corpus", nargs="*", default=None, help="corpus cases (default: all)")
    p.add_argument("--meshes", nargs="*", default=["2x4", "8"])
    p.add_argument("--markdown", action="store_true", help="one markdown table, kinds present only")
    args = p.parse_args()
    _setup()
    import corpus

    from alpa_mlir.models.export import export_train_step
    from alpa_mlir.runtime.collectives import format_table

    programs = [(m, lambda m=m: export_train_step(m, "tiny", debug_info=False)) for m in args.zoo]
    names = list(corpus.CASES) if args.corpus is None else args.corpus
    programs += [(n, lambda n=n: corpus.export_text(corpus.CASES[n].build())) for n in names]
    all_rows = []
    for name, export in programs:
        text = export()
        for mesh in args.meshes:
            rows = [r for r in _rows(name, text, mesh) if r.predicted or r.actual]
            all_rows.extend(rows)
            if not args.markdown:
                counts = "; ".join(f"{r.kind.value} {r.predicted}/{r.actual}" + (" DIFFERS" if r.difference else "")
                                   for r in rows)
                print(f"{name:22s} {mesh:4s} predicted/XLA: {counts or 'none'}", flush=True)
    if args.markdown:
        print(format_table(all_rows))
    differing = sorted({(r.model, r.mesh) for r in all_rows if r.difference})
    print(f"{len(differing)} of {len(programs) * len(args.meshes)} plans differ in some count"
          + (": " + ", ".join(f"{n} on {m}" for n, m in differing) if differing else ""))
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
