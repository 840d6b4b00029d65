"""Our plans against the baselines, all priced by one cost model: the best Megatron-style
grid plan, ZeRO data parallelism, an Alpa-equivalent plan (our stage DP without memory
plans) and ours, on the weak-scaling cases of the Alpa paper (`stage_construction.CASES`).

    .venv/bin/python benchmarks/plan_quality.py --cases gpt:2.6B
    .venv/bin/python benchmarks/plan_quality.py --cases gpt:2.6B moe:10B --markdown
    .venv/bin/python benchmarks/plan_quality.py --cases gpt:15B --columns ours --ours-microbatches 2

Per case (the step exported once, its layers built once with Alpa's layer count, or
--layers N):
- Megatron grid: every DP x TP x PP with TP a power of two inside a node, PP dividing
  the layers (uniform stages on equal submeshes), the microbatch size divisible by DP;
  every microbatch count of --grid-microbatches (factors of Alpa's count); no or full
  recomputation; no ZeRO. Layouts forced (`sharding.grid_layouts`): the batch over the
  data axis, each weight matrix split over the model axis (column or row, the ILP picks),
  the rest of the layout the ILP's. The fastest that fits device memory.
- ZeRO DP: one stage on every device, logical mesh N x 1 with the same forced layouts
  (parameters replicated under ZeRO-2, split under ZeRO-3), the grid's microbatch counts
  and those giving each device 1, 2 or 4 examples per microbatch (where the microbatch
  divides over the devices), no or full recomputation. The fastest that fits.
- Alpa-equivalent: our stage DP (stages, submeshes, logical meshes, free ILP layouts) with
  every layer kept (keep), or every layer recomputed (remat).
- Ours: the stage DP with per-layer memory plans (memory-plan=auto).
These two at every microbatch count of --ours-microbatches (by default the baselines'),
each column's fastest plan that fits.
The Alpa-equivalent plans and ours use the same ZeRO option (--zero, default auto: ZeRO-2
or ZeRO-3 per stage).
Each cell: predicted step seconds and the largest per-device peak (GB) of the plan;
"-" when nothing fits. Step = sum of stage latencies + (M - 1) x the slowest (the DP's
objective), the memory rule that of the stage DP (`pipeshard.cost_source.StageCost`).

Exit status 1 when a checked case fails: on GPT, ours slower than the best grid plan (or
no plan of ours); on MoE at 16+ GPUs, ours less than 2x faster than ZeRO DP (or no plan
of ours). Slow: the layer ILPs of every logical mesh; GPT 2.6B takes minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stage_construction import (
    BIN,
    CASES,
    Case,
    _error_line,
    _run,
    batch_size,
    case_rows,
    export,
    write_rows,
)

from alpa_mlir.dialect_utils.schedules import in_flight

COLUMNS = ("grid", "zero", "keep", "remat", "ours")


@dataclass(frozen=True)
class Priced:
    """One plan's prediction, or why there is none."""

    label: str
    step_s: float = math.inf
    peak_gb: float = math.nan
    error: str = ""

    @property
    def fits(self) -> bool:
        return not self.error and math.isfinite(self.step_s)

    def cell(self) -> str:
        if self.fits:
            return f"{self.step_s:.2f} s / {self.peak_gb:.1f} GB"
        return f"- (needs {self.peak_gb:.1f} GB)" if math.isfinite(self.peak_gb) else "-"


def _best(found: list[Priced], label: str) -> Priced:
    """The fastest that fits; else a failure naming the least memory any needs."""
    fitting = [p for p in found if p.fits]
    if fitting:
        return min(fitting, key=lambda p: p.step_s)
    needs = [p for p in found if math.isfinite(p.peak_gb)]
    leanest = min(needs, key=lambda p: p.peak_gb) if needs else None
    return Priced(leanest.label if leanest else label, error=f"none of {len(found)} fits",
                  peak_gb=leanest.peak_gb if leanest else math.nan)


def grid_points(gpus: int, layers: int, microbatch: int, per_host: int) -> Iterator[tuple[int, int, int]]:
    """(dp, tp, pp): TP a power of two within a node, PP dividing the layers and the
    devices, DP dividing the microbatch."""
    tp = 1
    while tp <= min(per_host, gpus):
        for pp in range(1, layers + 1):
            if layers % pp or (gpus // tp) % pp:
                continue
            dp = gpus // (tp * pp)
            if dp * tp * pp == gpus and microbatch % dp == 0:
                yield dp, tp, pp
        tp *= 2


def _submesh(devices: int, per_host: int) -> str:
    return f"{devices // per_host}x{per_host}" if devices >= per_host else f"1x{devices}"


class Planner:
    """The pass's front half on one layered step and microbatch count, and its plans."""

    def __init__(self, text: str, options: str, grid: bool, memory: float) -> None:
        from jax.extend.mlir import ir

        from alpa_mlir.dialect_utils.context import make_context
        from alpa_mlir.passes.pass_base import PassContext
        from alpa_mlir.passes.stage_construction import StageConstructionPass

        self.options = options
        self.memory = memory
        self.ctx = PassContext(pass_name=StageConstructionPass.NAME)
        self.mlir = make_context()
        with self.mlir, ir.Location.unknown(self.mlir):
            self.module = ir.Module.parse(text)
            self.base = StageConstructionPass.from_options(options)
            self.prepared = self.base.prepare(self.module, self.ctx, grid=grid)

    def price(self, label: str, extra: str, costs: object, limit: float | None = None) -> Priced:
        """The plan the pass makes with `extra` options on the cost model `costs`; when
        a manual plan does not fit, what it needs (`peak_gb`: its peak without the
        limit; a DP's fastest plan without the limit says nothing of its leanest)."""
        from jax.extend.mlir import ir

        from alpa_mlir.passes.pass_base import PassFailure
        from alpa_mlir.passes.stage_construction import StageConstructionPass

        with self.mlir, ir.Location.unknown(self.mlir):
            try:
                memory = self.memory if limit is None else limit
                stage_pass = StageConstructionPass.from_options(f"{self.options} {extra} memory-limit={memory:g}")
                plan, _ = stage_pass.plan(self.ctx, self.prepared.main, costs, self.prepared.num_layers)
            except PassFailure as e:
                error = str(e).split("error: ", 1)[-1][:300]
                if limit is not None or "stages=manual" not in extra:
                    return Priced(label, error=error)
                unlimited = self.price(label, extra, costs, limit=1e15)
                return Priced(label, error=error, peak_gb=unlimited.peak_gb)
            memory = stage_pass.device_memory(stage_pass.cluster_spec())
            ways, choices = stage_pass.memory_plans(plan, costs, memory)
            m = stage_pass.num_microbatches
            peak = max(w.memory_bytes(in_flight(stage_pass.schedule, plan.num_stages - k, m), c.stashed_bytes)
                       for k, (w, c) in enumerate(zip(ways, choices, strict=True)))
            return Priced(label, plan.objective, peak / 1e9)


def _layered(layers: int, src: Path, work: Path, timeout: float) -> tuple[Path, str]:
    out = work / f"{src.stem}.L{layers}.mlir"
    if not out.exists():
        pipeline = f"builtin.module(alpa-layer-construction{{layers={layers}}})"
        status, err, _, _ = _run([str(BIN / "alpa-opt"), str(src), f"--pass-pipeline={pipeline}",
                                  "-o", str(out)], timeout)
        if status != 0:
            return out, f"layers: {_error_line(err)}"
    return out, ""


def run_case(case: Case, args: argparse.Namespace, work: Path) -> dict[str, object]:
    from alpa_mlir.passes.pipeshard.memory_plan import MemoryPlanMode as Mode

    started = time.perf_counter()
    row: dict[str, object] = {"case": case}
    layers = case.alpa_layers if args.layers == "alpa" else int(args.layers)
    src, error = export(case, args.dtype, work, args.case_timeout)
    if not error:
        src, error = _layered(layers, src, work, args.case_timeout)
    if error:
        return {**row, "error": error}
    text = src.read_text()
    common = f"cluster={case.cluster} {case.stage_options}".strip()
    gpus, per_host, batch = case.gpus, 8, batch_size(case)
    found: dict[str, list[Priced]] = {c: [] for c in COLUMNS}

    def counts(factors: list[float]) -> set[int]:
        return {round(case.microbatches * f) for f in factors}

    grid_m = counts(args.grid_microbatches) if "grid" in args.columns else set()
    # ZeRO DP: the grid's counts and 1, 2 or 4 examples per device per microbatch
    zero_m = (counts(args.grid_microbatches) | {batch // (gpus * k) for k in (1, 2, 4)}
              if "zero" in args.columns else set())
    zero_m = {m for m in zero_m if m >= 1 and batch % m == 0 and (batch // m) % gpus == 0}
    ours_m = counts(args.ours_microbatches) if "ours" in args.columns else set()
    for m in sorted(grid_m | zero_m | ours_m):
        if m < 1 or batch % m:
            continue
        if m in grid_m or m in zero_m:
            planner = Planner(text, f"{common} num-microbatches={m}", True, args.memory)
            costs = planner.prepared.costs
            for dp, tp, pp in grid_points(gpus, layers, batch // m, per_host) if m in grid_m else ():
                per = layers // pp
                ranges = ",".join(f"{k * per}-{(k + 1) * per - 1}" for k in range(pp))
                sub = _submesh(gpus // pp, per_host)
                extra = (f"stages=manual layer-ranges={ranges} stage-submeshes={','.join([sub] * pp)}"
                         f" stage-logical-shapes={','.join([f'{dp}x{tp}'] * pp)}")
                for remat in (False, True):
                    label = f"{dp}x{tp}x{pp} M={m}{' remat' if remat else ''}"
                    found["grid"].append(planner.price(label, extra, costs.variant(remat=remat, levels=(0,))))
            if m in zero_m:
                extra = f"stages=manual layer-ranges=0-{layers - 1} stage-submeshes={_submesh(gpus, per_host)}" \
                        f" stage-logical-shapes={gpus}x1"
                for level in (2, 3):
                    for remat in (False, True):
                        label = f"ZeRO-{level} M={m}{' remat' if remat else ''}"
                        found["zero"].append(planner.price(label, extra, costs.variant(remat=remat, levels=(level,))))
            del planner, costs
        if m in ours_m:
            planner = Planner(text, f"{common} num-microbatches={m} zero-stage={args.zero} memory-plan=auto", False,
                              args.memory)
            costs = planner.prepared.costs
            found["keep"].append(planner.price(f"M={m}", "", costs.variant(memory_plan=Mode.FIXED, remat=False)))
            found["remat"].append(planner.price(f"M={m}", "", costs.variant(memory_plan=Mode.FIXED, remat=True)))
            found["ours"].append(planner.price(f"M={m}", "", costs))
            del planner, costs
        print(f"  {case.key} M={m}: " + "; ".join(
            f"{c} {_best([p for p in found[c] if f'M={m}' in p.label.split()], c).cell()}" for c in COLUMNS),
            file=sys.stderr, flush=True)
    row.update({c: _best(found[c], c) for c in COLUMNS})
    row.update(tried={c: len(found[c]) for c in COLUMNS}, seconds=time.perf_counter() - started,
               every={c: [p.__dict__ for p in found[c]] for c in COLUMNS})
    return row


def check(row: dict[str, object]) -> str:
    """"" when the case meets its target, else why not."""
    case: Case = row["case"]  # type: ignore[assignment]
    if "error" in row:
        return str(row["error"])
    ours: Priced = row["ours"]  # type: ignore[assignment]
    if case.model == "gpt":
        grid: Priced = row["grid"]  # type: ignore[assignment]
        if not ours.fits:
            return "no plan of ours"
        if grid.fits and ours.step_s > grid.step_s:
            return f"ours {ours.step_s:.2f} s > best grid {grid.step_s:.2f} s"
    if case.model == "moe" and case.gpus >= 16:
        zero: Priced = row["zero"]  # type: ignore[assignment]
        if not ours.fits:
            return "no plan of ours"
        if zero.fits and zero.step_s < 2 * ours.step_s:
            return f"ZeRO DP {zero.step_s:.2f} s < 2 x ours {ours.step_s:.2f} s"
    return ""


def format_row(row: dict[str, object], markdown: bool, checked: bool = True) -> str:
    case: Case = row["case"]  # type: ignore[assignment]
    head = [f"{case.model} {case.size}", f"{case.gpus}"]
    if "error" in row:
        cells = [*head, f"FAILED: {row['error']}"]
    else:
        priced: list[Priced] = [row[c] for c in COLUMNS]  # type: ignore[misc]
        cells = [*head, *(p.cell() for p in priced)]
        grid, zero, ours = priced[0], priced[1], priced[-1]
        cells.append(grid.label)
        cells.append(zero.label)
        cells.append(f"{ours.step_s / grid.step_s:.2f}" if ours.fits and grid.fits else "-")
        cells.append(f"{zero.step_s / ours.step_s:.2f}" if ours.fits and zero.fits else "-")
        cells.append((check(row) or "ok") if checked else "not checked (--columns)")
    return "| " + " | ".join(cells) + " |" if markdown else "  ".join(cells)


HEADER = ["case", "GPUs", "best grid", "ZeRO DP", "Alpa keep", "Alpa remat", "ours", "grid plan (DPxTPxPP)",
          "ZeRO plan", "ours / grid", "ZeRO / ours", "check"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="*", default=None, help="model:size ... (default: all)")
    p.add_argument("--dtype", default="fp16", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--memory", type=float, default=16e9, help="device memory, bytes (V100: 16e9)")
    p.add_argument("--layers", default="alpa", help="layer count of every plan: alpa (Alpa's per case) or N")
    p.add_argument("--columns", nargs="*", default=["grid", "zero", "ours"], choices=("grid", "zero", "ours"),
                   help="what to price (ours: also the Alpa-equivalent plans)")
    p.add_argument("--zero", default="auto", help="zero-stage of the Alpa-equivalent plans and ours")
    p.add_argument("--grid-microbatches", type=float, nargs="*", default=[0.5, 1, 2],
                   help="microbatch counts of the baselines, as factors of Alpa's")
    p.add_argument("--ours-microbatches", type=float, nargs="*", default=[0.5, 1, 2],
                   help="microbatch counts of the Alpa-equivalent plans and ours (of those above)")
    p.add_argument("--case-timeout", type=float, default=900, help="limit of each tool run (s)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--workdir", default=None, help="keep exports here")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    wanted = args.cases or [c.key for c in CASES]
    cases = [c for c in CASES if c.key in wanted]
    if not cases:
        p.error(f"no case matches; cases: {' '.join(c.key for c in CASES)}")
    print("| " + " | ".join(HEADER) + " |" if args.markdown else "  ".join(HEADER))
    if args.markdown:
        print("|" + "|".join(["---"] * len(HEADER)) + "|")
    failed = 0
    rows = []
    checked = set(args.columns) == {"grid", "zero", "ours"}
    for row in case_rows(cases, args, run_case):
        rows.append(row)
        failed += checked and bool(check(row))
        print(format_row(row, args.markdown, checked), flush=True)
    if args.json:
        write_rows(args.json, rows)
    if checked:
        print(f"{len(rows) - failed} of {len(rows)} cases meet their target", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main())
