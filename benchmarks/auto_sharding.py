"""Benchmark alpa-auto-sharding on zoo training steps: ILP size, solve time, pass time,
peak memory. Each case runs in a fresh subprocess so its peak RSS is its own.

    .venv/bin/python benchmarks/auto_sharding.py                 # the default table
    .venv/bin/python benchmarks/auto_sharding.py --cases gpt:125M --meshes 2x4
    .venv/bin/python benchmarks/auto_sharding.py --time-limit 120

Columns: ops (top-level ops of @main after inlining), nodes (decision nodes before
follow-merging) -> roots (after), ILP variables, solve s, optimal?, pass s (export
excluded), peak RSS of the planning process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CASES = ["gpt:tiny", "gpt:125M", "gpt:350M", "gpt:1.3B", "moe:380M", "wide-resnet:250M"]
DEFAULT_MESHES = ["8", "2x4", "8x8"]
CLUSTER_FOR = {"8": "p3.16xlarge", "2x4": "p3.16xlarge", "8x8": "p3.16xlarge-x8"}


def run_case(model: str, preset: str, mesh: str, time_limit: float | None) -> dict[str, object]:
    """Export, then plan; returns the report plus timings (runs in this process)."""
    from alpa_mlir.dialect_utils.context import make_context, parse_module
    from alpa_mlir.models.export import export_train_step
    from alpa_mlir.passes import PassManager

    text = export_train_step(model, preset, debug_info=False)
    ctx = make_context()
    module = parse_module(text, ctx)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        limit = f" time-limit={time_limit}" if time_limit else ""
        options = f"mesh={mesh} cluster={CLUSTER_FOR.get(mesh, 'p3.16xlarge')} report={report}{limit}"
        start = time.perf_counter()
        PassManager.parse(f"builtin.module(alpa-auto-sharding{{{options}}})", ctx).run(module)
        seconds = time.perf_counter() - start
        data = json.loads(report.read_text())
    data["pass_wall_seconds"] = seconds
    data["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="*", default=DEFAULT_CASES, help="model:preset ...")
    p.add_argument("--meshes", nargs="*", default=DEFAULT_MESHES)
    p.add_argument("--time-limit", type=float, default=None, help="ILP time limit per case (s)")
    p.add_argument("--case-timeout", type=float, default=600, help="wall-clock limit per case (s)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = p.parse_args()
    if args.one:
        model, preset, mesh = args.one.split(":")
        print(json.dumps(run_case(model, preset, mesh, args.time_limit)))
        return 0
    header = f"{'model':<12}{'preset':<8}{'mesh':<6}{'ops':>7}{'nodes':>8}{'roots':>7}{'vars':>9}{'solve s':>9}  {'status':<10}{'pass s':>8}{'RSS MiB':>9}"
    print(header)
    print("-" * len(header))
    for case in args.cases:
        model, preset = case.split(":")
        for mesh in args.meshes:
            cmd = [sys.executable, __file__, "--one", f"{model}:{preset}:{mesh}"]
            if args.time_limit:
                cmd += ["--time-limit", str(args.time_limit)]
            env = {**os.environ, "JAX_PLATFORMS": "cpu"}
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, env=env, check=False, timeout=args.case_timeout
                )
            except subprocess.TimeoutExpired:
                print(f"{model:<12}{preset:<8}{mesh:<6}  over {args.case_timeout:.0f} s", flush=True)
                continue
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{model:<12}{preset:<8}{mesh:<6}  failed: {last}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            ilp, solver = r["ilp"], r["solver"]
            print(
                f"{model:<12}{preset:<8}{mesh:<6}{r['ops']:>7}{ilp['nodes']:>8}{ilp['merged_nodes']:>7}"
                f"{ilp['variables']:>9}{solver['seconds']:>9.2f}  {solver['status']:<10}"
                f"{r['pass_wall_seconds']:>8.2f}{r['peak_rss_mib']:>9.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
