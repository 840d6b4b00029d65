"""Benchmark the pipeshard planner (alpa-pipeshard: layer construction, stage DP, MPMD
writing) on the weak-scaling suites of the Alpa paper: GPT, MoE and Wide-ResNet on 8, 16,
32 and 64 GPUs (p3.16xlarge, -x2, -x4, -x8).

    .venv/bin/python benchmarks/stage_construction.py                # the default table
    .venv/bin/python benchmarks/stage_construction.py --quick        # GPT 2.6B on 1x8 only
    .venv/bin/python benchmarks/stage_construction.py --cases gpt:39B --layers auto
    .venv/bin/python benchmarks/stage_construction.py --microbatches 1024 --case-timeout 900
    .venv/bin/python benchmarks/stage_construction.py --raise-microbatches
    .venv/bin/python benchmarks/stage_construction.py --extra memory-limit=1e15   # time only
    .venv/bin/python benchmarks/stage_construction.py --plan alpa --extra remat=true
    .venv/bin/python benchmarks/stage_construction.py --dtype fp16   # mixed precision, as Alpa ran

Every case runs its tools as subprocesses (one failure does not stop the table):
`alpa-export` (abstract shapes, no weights), `alpa-opt` with alpa-inline-calls +
alpa-annotate-flops (the FLOPs of the exported step, forward + backward + Adam), then
`alpa-opt` with `alpa-pipeshard{cluster=... num-microbatches=M layers=L report=...}`.
Model sizes, microbatch counts and layer counts follow Alpa's recorded auto-search
solutions (benchmark/alpa/suite_auto_gpt.py, suite_auto_moe.py, suite_wresnet.py in
alpa-projects/alpa); see docs/plans.md.

Columns: model and size, parameters, cluster (hosts x devices), microbatches M, layers L
(after layer construction), the chosen stages (`first-last:HxD/DPxMP` per stage),
predicted step time (the DP objective sum t_i + (M-1) max t_i), predicted TFLOP/s per
device (step FLOPs / predicted step / devices), the largest predicted per-device peak
memory of a stage (GB), DP seconds (the stage DP, layer ILP
solves included), layer-ILP seconds (their share), compile seconds (wall of the planning
alpa-opt process) and its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv's bin: alpa-export, alpa-opt


@dataclass(frozen=True)
class Case:
    """One (model, size, GPU count) of Alpa's weak-scaling suites."""

    model: str  # zoo model name
    size: str  # label (Alpa's model name)
    gpus: int  # 8, 16, 32 or 64: p3.16xlarge with gpus // 8 hosts
    microbatches: int  # Alpa's num_micro_batches for this case
    alpa_layers: int  # Alpa's num_auto_layers for this case
    preset: str = ""  # zoo preset ("" = size)
    overrides: tuple[str, ...] = field(default=())  # alpa-export --set FIELD=VALUE
    stage_options: str = ""  # extra alpa-pipeshard options
    optimizer: str = "adam"  # alpa-export --optimizer
    # Alpa's published solution: layer ranges, submeshes (HxD), logical meshes (DPxMP)
    alpa_plan: tuple[str, str, str] = ("", "", "")

    @property
    def key(self) -> str:
        return f"{self.model}:{self.size}"

    @property
    def cluster(self) -> str:
        hosts = self.gpus // 8
        return "p3.16xlarge" if hosts == 1 else f"p3.16xlarge-x{hosts}"


# Alpa's perf-test solutions found for p3.16xlarge (num_micro_batches, num_auto_layers).
# MoE trains with Adafactor as Alpa's MoE benchmark did (GPT and Wide-ResNet with Adam).
# MoE 27B / 70B are not zoo presets: the 10B preset with Alpa's sizes set. Wide-ResNet
# 6.8B / 13B use Alpa's global batch of the solution (1536 / 1520). Batch norm uses
# per-microbatch statistics there, which the pass accepts only when told so.
_WRN = "allow-per-microbatch-statistics=true"


def _each(n: int, text: str) -> str:
    return ",".join([text] * n)


def _singles(n: int) -> str:
    return ",".join(str(k) for k in range(n))


CASES: tuple[Case, ...] = (
    Case("gpt", "2.6B", 8, 128, 8, alpa_plan=("0-1,2-3,4-7", "1x2,1x2,1x4", "2x1,2x1,4x1")),
    Case("gpt", "6.7B", 16, 64, 8, alpa_plan=("0-3,4-7", _each(2, "1x8"), _each(2, "2x4"))),
    Case("gpt", "15B", 32, 128, 16, alpa_plan=("0-3,4-7,8-11,12-15", _each(4, "1x8"), _each(4, "2x4"))),
    Case("gpt", "39B", 64, 1024, 16, alpa_plan=(_singles(16), _each(16, "1x4"), _each(16, "1x4"))),
    Case("moe", "2.4B", 8, 32, 8, optimizer="adafactor",
         alpa_plan=("0-3,4-7", _each(2, "1x4"), _each(2, "4x1"))),
    Case("moe", "10B", 16, 16, 8, optimizer="adafactor",
         alpa_plan=("0-3,4-7", _each(2, "1x8"), _each(2, "8x1"))),
    Case("moe", "27B", 32, 128, 8, preset="10B", overrides=("hidden_size=2048", "num_experts=48"),
         optimizer="adafactor", alpa_plan=(_singles(8), _each(8, "1x4"), _each(8, "4x1"))),
    Case("moe", "70B", 64, 64, 8, preset="10B",
         overrides=("hidden_size=2048", "num_layers=32", "num_experts=64"),
         optimizer="adafactor", alpa_plan=(_singles(8), _each(8, "1x8"), _each(8, "8x1"))),
    Case("wide-resnet", "2B", 8, 24, 16, stage_options=_WRN,
         alpa_plan=("0-7,8-15", "1x4,1x4", "4x1,1x4")),
    Case("wide-resnet", "4B", 16, 32, 16, stage_options=_WRN,
         alpa_plan=("0-4,5-8,9-15", "1x4,1x4,1x8", "4x1,4x1,8x1")),
    Case("wide-resnet", "6.8B", 32, 32, 16, stage_options=_WRN,
         alpa_plan=("0-4,5-8,9-12,13-15", _each(4, "1x8"), _each(4, "8x1"))),
    Case("wide-resnet", "13B", 64, 38, 33, overrides=("batch_size=1520",), stage_options=_WRN,
         alpa_plan=("0-3,4-7,8-11,12-15,16-19,20-23,24-28,29-32", _each(8, "1x8"),
                    "8x1,1x8,8x1,1x8,8x1,8x1,1x8,8x1")),
)
QUICK = ("gpt:2.6B",)


def _run(cmd: list[str], timeout: float) -> tuple[int, str, float, float]:
    """Run `cmd`; returns (exit status, stderr, wall seconds, peak RSS MiB of that process).
    Exit status 124 = killed at `timeout`."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        status = None
        while status is None:
            pid, raw, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(raw)
                break
            if time.perf_counter() - start > timeout:
                proc.kill()
                _, _, usage = os.wait4(proc.pid, 0)
                status = 124
                break
            time.sleep(0.2)
        proc.returncode = status  # reaped by wait4: keep Popen from waiting again
        err.seek(0)
        text = err.read().decode(errors="replace")
    return status, text, time.perf_counter() - start, usage.ru_maxrss / 1024


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower():
            return ln.strip()
    return lines[-1].strip() if lines else "?"


def _config(case: Case) -> tuple[object, object]:
    from alpa_mlir.models.registry import get_model, parse_override

    spec = get_model(case.model)
    config = spec.config(case.preset or case.size)
    overrides = {}
    for item in case.overrides:
        name, value = item.split("=", 1)
        overrides[name] = parse_override(config, name, value)
    return spec, spec.config(case.preset or case.size, **overrides)


def num_params(case: Case) -> int:
    spec, config = _config(case)
    return spec.num_params(config)  # type: ignore[attr-defined]


def batch_size(case: Case) -> int:
    return _config(case)[1].batch_size  # type: ignore[attr-defined]


def export(case: Case, dtype: str, work: Path, timeout: float) -> tuple[Path, str]:
    """The case's step exported with abstract shapes into `work` (once); returns its path
    and an error line ("" when it worked)."""
    src = work / f"{case.model}-{case.size}-{dtype}-{case.optimizer}.mlir"
    if not src.exists():
        cmd = [str(BIN / "alpa-export"), case.model, "--preset", case.preset or case.size,
               "--dtype", dtype, "--optimizer", case.optimizer, "--no-debug-info", "-o", str(src)]
        for item in case.overrides:
            cmd += ["--set", item]
        status, err, _, _ = _run(cmd, timeout)
        if status == 124:
            return src, f"export: over {timeout:.0f} s (killed)"
        if status != 0:
            return src, f"export: {_error_line(err)}"
    return src, ""


def run_case(case: Case, args: argparse.Namespace, work: Path) -> dict[str, object]:
    """Export, count FLOPs, plan; returns the row's figures (or `error`)."""
    row: dict[str, object] = {"case": case, "params": num_params(case)}
    src, error = export(case, args.dtype, work, args.case_timeout)
    if error:
        return {**row, "error": error}
    flops_json = src.with_suffix(".flops.json")
    if not flops_json.exists():
        pipeline = f"builtin.module(alpa-inline-calls,alpa-annotate-flops{{report={flops_json}}})"
        status, err, _, _ = _run([str(BIN / "alpa-opt"), str(src), f"--pass-pipeline={pipeline}",
                                  "-o", os.devnull], args.case_timeout)
        if status != 0:
            return {**row, "error": f"flops: {_error_line(err)}"}
    row["flops"] = json.loads(flops_json.read_text())["main"]["total"]
    m = args.microbatches or case.microbatches
    ceiling = batch_size(case)  # one example per microbatch
    attempts: list[dict[str, object]] = []
    while True:
        row = plan_case(case, args, work, src, m, row)
        error = str(row.get("error", ""))
        attempts.append({"microbatches": m, "compile_s": row.get("compile_s"), "rss_mib": row.get("rss_mib"),
                         "error": error, "plan": row.get("plan")})
        if not args.raise_microbatches or not error:
            break
        if "does not divide" in error and m // 2 > attempts[0]["microbatches"]:  # type: ignore[operator]
            ceiling = m = m // 2  # e.g. MoE: the expert groups bound the microbatch count
        elif "exceed device memory" in error and m < ceiling:
            m = ceiling
        else:
            break
    row["tried"] = [a["microbatches"] for a in attempts]
    row["attempts"] = attempts
    return row


def plan_case(case: Case, args: argparse.Namespace, work: Path, src: Path, m: int,
              row: dict[str, object]) -> dict[str, object]:
    """One alpa-pipeshard run with `m` microbatches."""
    row = {k: v for k, v in row.items() if k not in ("error", "plan")}
    layers = {"alpa": str(case.alpa_layers), "auto": "auto"}.get(args.layers, args.layers)
    row["microbatches"] = m
    report = work / f"{case.model}-{case.size}-{case.gpus}.plan.json"
    report.unlink(missing_ok=True)
    options = f"cluster={case.cluster} num-microbatches={m} layers={layers} report={report}"
    if args.plan == "alpa":
        ranges, submeshes, logical = case.alpa_plan
        options += (f" stages=manual layer-ranges={ranges} stage-submeshes={submeshes}"
                    f" stage-logical-shapes={logical}")
    if case.stage_options:
        options += f" {case.stage_options}"
    if args.extra:
        options += f" {args.extra}"
    cmd = [str(BIN / "alpa-opt"), str(src), f"--pass-pipeline=builtin.module(alpa-pipeshard{{{options}}})",
           "-o", os.devnull]
    status, err, wall, rss = _run(cmd, args.case_timeout)
    row.update(compile_s=wall, rss_mib=rss)
    if status == 124:
        return {**row, "error": f"over {args.case_timeout:.0f} s (killed)"}
    if status != 0:
        return {**row, "error": _error_line(err)}
    row["plan"] = json.loads(report.read_text())
    return row


def _stages(plan: dict[str, object]) -> str:
    parts = []
    for s in plan["stages"]:  # type: ignore[union-attr]
        first, last = s["layers"]
        parts.append(f"{first}-{last}:{s['submesh'][0]}x{s['submesh'][1]}/"
                     f"{s['logical_shape'][0]}x{s['logical_shape'][1]}")
    return " ".join(parts)


def _microbatches(row: dict[str, object]) -> str:
    tried = row.get("tried") or [row.get("microbatches", "-")]
    return str(tried[-1]) if len(tried) == 1 else f"{tried[0]}>{tried[-1]}"  # type: ignore[index]


def _params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def format_row(row: dict[str, object], markdown: bool) -> str:
    case: Case = row["case"]  # type: ignore[assignment]
    head = [f"{case.model} {case.size}", _params(row["params"]),  # type: ignore[arg-type]
            f"{case.gpus // 8}x8", _microbatches(row)]
    if "error" in row:
        failed = f"FAILED after {row.get('compile_s', 0):.0f} s, {row.get('rss_mib', 0):.0f} MiB: {row['error']}"
        return "| " + " | ".join([*head, failed]) + " |" if markdown else f"{_line(head)}  {failed}"
    plan = row["plan"]
    step = plan["predicted_step_s"]
    timing = plan["timing"]
    peak = max(s["peak_bytes"] for s in plan["stages"]) / 1e9
    figures = [str(plan["num_layers"]), f"{step:.2f}", f"{row['flops'] / step / case.gpus / 1e12:.1f}",
               f"{peak:.1f}",
               f"{timing['dp_s']:.1f}", f"{timing['layer_ilp_s']:.1f}", f"{row['compile_s']:.1f}",
               f"{row['rss_mib']:.0f}"]
    if markdown:
        return "| " + " | ".join([*head, figures[0], _stages(plan), *figures[1:]]) + " |"
    return _line([*head, *figures, _stages(plan)])


WIDTHS = (18, 7, 6, 10, 4, 8, 8, 8, 7, 7, 10, 8)
HEADER = ["model", "params", "hosts", "M", "L", "step s", "TFLOP/s", "peak GB", "DP s", "ILP s", "compile s",
          "RSS MiB", "stages (first-last:submesh/logical)"]


def _line(cells: list[str]) -> str:
    out = cells[0].ljust(WIDTHS[0])
    for cell, width in zip(cells[1:], WIDTHS[1:], strict=False):
        out += cell.rjust(width)
    return out + "".join("  " + c for c in cells[len(WIDTHS):])


def _markdown_header() -> list[str]:
    cols = [*HEADER[:5], HEADER[-1], *HEADER[5:-1]]
    return ["| " + " | ".join(cols) + " |",
            "|" + "|".join("---" if i in (0, 5) else "---:" for i in range(len(cols))) + "|"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="*", default=None, help="model:size ... (default: all)")
    p.add_argument("--gpus", nargs="*", type=int, default=None, help="keep only these GPU counts")
    p.add_argument("--quick", action="store_true", help="GPT 2.6B on 1x8 only")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="compute dtype of the exported steps (alpa-export --dtype)")
    p.add_argument("--layers", default="alpa", help="alpa (Alpa's layer count per case), auto or N")
    p.add_argument("--microbatches", type=int, default=None, help="override Alpa's per case")
    p.add_argument("--raise-microbatches", action="store_true",
                   help="when no plan fits in device memory, retry with one example per "
                        "microbatch (M = global batch; halved while M does not divide the batch)")
    p.add_argument("--plan", choices=("dp", "alpa"), default="dp",
                   help="dp: our stage DP chooses; alpa: Alpa's published solution for the "
                        "case (stages=manual), costed by our model")
    p.add_argument("--extra", default="", help="more alpa-pipeshard options (k=v k=v)")
    p.add_argument("--case-timeout", type=float, default=900, help="wall-clock limit per tool run (s)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--workdir", default=None, help="keep exports and plan reports here")
    p.add_argument("--json", default=None, help="also write the raw rows here")
    args = p.parse_args()
    wanted = QUICK if args.quick else (args.cases or [c.key for c in CASES])
    cases = [c for c in CASES if c.key in wanted and (args.gpus is None or c.gpus in args.gpus)]
    if not cases:
        p.error(f"no case matches; cases: {' '.join(c.key for c in CASES)}")
    print("\n".join(_markdown_header()) if args.markdown else _line(HEADER))
    rows = []
    for row in case_rows(cases, args, run_case):
        rows.append(row)
        print(format_row(row, args.markdown), flush=True)
    if args.json:
        write_rows(args.json, rows)
    return 0


def case_rows(cases: Sequence[Case], args: argparse.Namespace,
              run_case: Callable[[Case, argparse.Namespace, Path], dict[str, object]]) -> Iterator[dict[str, object]]:
    """Each case's row, as `run_case(case, args, work)` computes it in --workdir (or a
    temporary directory), one at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for case in cases:
            yield run_case(case, args, work)


def write_rows(path: str, rows: Sequence[dict[str, object]]) -> None:
    """The rows as JSON (a dataclass value, such as the case, as its fields)."""
    Path(path).write_text(json.dumps(
        [{k: (v.__dict__ if hasattr(v, "__dict__") else v) for k, v in r.items()} for r in rows],
        indent=1, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
