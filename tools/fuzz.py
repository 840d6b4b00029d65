"""alpa-fuzz: bad and unusual inputs for alpa-opt, alpa-run and alpa-export, judged.

    python -m alpa_mlir.tools.fuzz --n 1000 --seed 0        (make fuzz N=1000 SEED=0)

Each case is drawn from a seeded generator:
- `opt`: a small seed module (the zoo's tiny MLP step, hand-written modules with
  reductions, loops, chlo, custom calls, a sharded module), mutated or not (a dim made
  dynamic, zero or huge, an element type changed, a line deleted or duplicated, the text
  truncated, bytes that are not UTF-8, @main renamed or made a declaration), through
  `alpa-opt` with a pass pipeline, some with option values that are out of range or of
  the wrong kind, written with `-o` over an existing file;
- `run`: `alpa-run` on a seed module (mutated or not) with odd flags (device counts,
  tolerances, seeds, steps, output paths in folders that do not exist, npz inputs of the
  wrong shape or dtype);
- `export`: `alpa-export` with odd models, presets, overrides and output paths.

The tools run in a worker process (their `main` functions, in-process, so a case costs
no interpreter start); a worker that dies or runs past `--timeout` is replaced, and the
case counts as a crash or a hang. Each case is judged:
- *crash*: an exit status other than 0 and 1, a Python traceback, an "internal error",
  or a dead worker; *hang*: past the timeout;
- *diagnosed*: exit 1 with an `error:` line; exit 1 without one is a crash;
- *damaged*: a failed `alpa-opt -o FILE` that changed FILE;
- *wrong*: `alpa-opt` succeeded but the module it wrote computes something else than its
  input: both are run by `alpa-run` on the same random inputs (same signature, same
  seed) and compared (rtol 1e-4, atol 1e-5, NaN equal to NaN). Pipelines that change
  what is computed on purpose (per-microbatch statistics) are not drawn.
Exit status 1 when any case crashed, hung, damaged a file or was wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

BAD_OUTCOMES = ("crash", "hang", "damaged", "wrong")
SENTINEL = "// an existing output file: a failed run must leave it as it was\n"

# --------------------------------------------------------------------------- seeds

_SEEDS = {
    "dot": """func.func public @main(%w: tensor<4x2xf32>, %x: tensor<8x4xf32>) -> (tensor<4x2xf32>, tensor<f32>) {
  %p = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4x2xf32>) -> tensor<8x2xf32>
  %t = stablehlo.tanh %p : tensor<8x2xf32>
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  %l = stablehlo.reduce(%t init: %z) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x2xf32>, tensor<f32>) -> tensor<f32>
  %g = stablehlo.dot_general %x, %t, contracting_dims = [0] x [0] : (tensor<8x4xf32>, tensor<8x2xf32>) -> tensor<4x2xf32>
  %w2 = stablehlo.subtract %w, %g : tensor<4x2xf32>
  return %w2, %l : tensor<4x2xf32>, tensor<f32>
}
""",
    "loop": """func.func public @main(%x: tensor<8x4xf32>) -> tensor<8x4xf32> {
  %c0 = stablehlo.constant dense<0> : tensor<i32>
  %c1 = stablehlo.constant dense<1> : tensor<i32>
  %n = stablehlo.constant dense<3> : tensor<i32>
  %r:2 = stablehlo.while(%i = %c0, %v = %x) : tensor<i32>, tensor<8x4xf32>
    cond {
      %lt = stablehlo.compare LT, %i, %n : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    } do {
      %i2 = stablehlo.add %i, %c1 : tensor<i32>
      %v2 = stablehlo.sine %v : tensor<8x4xf32>
      stablehlo.return %i2, %v2 : tensor<i32>, tensor<8x4xf32>
    }
  return %r#1 : tensor<8x4xf32>
}
""",
    "chlo": """func.func public @main(%x: tensor<16x8xf32>, %w: tensor<8x8xf32>) -> tensor<16x8xf32> {
  %s = chlo.square %x : tensor<16x8xf32> -> tensor<16x8xf32>
  %e = chlo.erf %s : tensor<16x8xf32> -> tensor<16x8xf32>
  %y = stablehlo.dot_general %e, %w, contracting_dims = [1] x [0] : (tensor<16x8xf32>, tensor<8x8xf32>) -> tensor<16x8xf32>
  %c = stablehlo.custom_call @unknown_target(%y) : (tensor<16x8xf32>) -> tensor<16x8xf32>
  return %y : tensor<16x8xf32>
}
""",
    "sharded": """module @sharded attributes {mhlo.num_partitions = 8 : i32} {
  sdy.mesh @mesh = <["x"=2, "y"=4]>
  func.func public @main(%w: tensor<4x8xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"y"}]>}, %x: tensor<8x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}) -> tensor<8x8xf32> {
    %p = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>
    %q = stablehlo.exponential %p : tensor<8x8xf32>
    return %q : tensor<8x8xf32>
  }
}
""",
    "shard_map": """module @shard_map attributes {mhlo.num_partitions = 8 : i32} {
  sdy.mesh @mesh = <["x"=2, "y"=4]>
  func.func public @main(%w: tensor<16x32xf32>, %x: tensor<8x16xf32>) -> tensor<8x8xf32> {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x32xf32>) -> tensor<8x32xf32>
    %s = sdy.manual_computation(%h) in_shardings=[<@mesh, [{}, {"y"}]>] out_shardings=[<@mesh, [{}, {}]>] manual_axes={"x", "y"} (%l: tensor<8x8xf32>) {
      %m = stablehlo.multiply %l, %l : tensor<8x8xf32>
      %r = "stablehlo.all_reduce"(%m) <{channel_handle = #stablehlo.channel_handle<handle = 1, type = 1>, replica_groups = dense<[[0, 1, 2, 3], [4, 5, 6, 7]]> : tensor<2x4xi64>, use_global_device_ids}> ({
      ^bb0(%a: tensor<f32>, %b: tensor<f32>):
        %add = stablehlo.add %a, %b : tensor<f32>
        stablehlo.return %add : tensor<f32>
      }) : (tensor<8x8xf32>) -> tensor<8x8xf32>
      sdy.return %r : tensor<8x8xf32>
    } : (tensor<8x32xf32>) -> tensor<8x8xf32>
    return %s : tensor<8x8xf32>
  }
}
""",
    "ints": """func.func public @main(%a: tensor<6xi32>, %b: tensor<6xi1>, %c: tensor<2x3xbf16>) -> (tensor<6xi32>, tensor<3x2xbf16>) {
  %s = stablehlo.add %a, %a : tensor<6xi32>
  %z = stablehlo.constant dense<0> : tensor<6xi32>
  %m = stablehlo.select %b, %s, %z : tensor<6xi1>, tensor<6xi32>
  %t = stablehlo.transpose %c, dims = [1, 0] : (tensor<2x3xbf16>) -> tensor<3x2xbf16>
  return %m, %t : tensor<6xi32>, tensor<3x2xbf16>
}
""",
}

_PIPELINES = (
    "alpa-annotate-flops",
    "alpa-auto-sharding{devices=2x4 time-limit=20}",
    "alpa-auto-sharding{mesh=8 cluster=alpa-abstract time-limit=20}",
    "alpa-auto-sharding{devices=2x4 force-data-parallel=true time-limit=20}",
    "alpa-strip-sharding",
    "alpa-inline-calls,canonicalize",
    "alpa-gradient-accumulation{num-microbatches=2}",
    "alpa-layer-construction",
    "alpa-pipeshard{devices=2x4 num-microbatches=2 time-limit=5}",
    "alpa-auto-sharding{devices=2x4 time-limit=20},canonicalize",
)
"""Semantics-preserving pipelines: what they write must compute what they read."""

_ODD_VALUES = ("-1", "0", "1e30", "nan", "inf", "abc", "", "2x0", "99", "true", "x,y,z", "1x1x1x1x1",
               "0.5", "-0", "1e-300", "3x", "\"q\"", "{", "none")
_PASSES_WITH_OPTIONS = ("alpa-auto-sharding", "alpa-gradient-accumulation", "alpa-layer-construction",
                        "alpa-stage-construction", "alpa-pipeshard", "alpa-annotate-flops")
_MODELS = ("mlp", "gpt", "bert", "moe", "wide_resnet", "resnet", "", "MLP", "gpt2")
_PRESETS = ("tiny", "small", "nope", "", "2.6B", "125M")


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    number: int
    tool: str  # "alpa-opt", "alpa-run", "alpa-export"
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)  # written into the case folder first
    guarded: str | None = None  # an output file that a failed run must leave unchanged
    compare: tuple[str, str] | None = None  # (input, output): must compute the same on success
    what: str = ""


def mutate(text: str, rng: random.Random) -> tuple[bytes, str]:
    """One mutation of module text: (new bytes, what it did)."""
    kind = rng.choices(
        ("dim-all", "dim-one", "dtype-all", "dtype-one", "delete", "duplicate", "truncate", "bytes",
         "int", "main", "declaration", "swap"),
        weights=(6, 1, 4, 1, 1, 1, 1, 1, 3, 1, 1, 1))[0]
    lines = text.splitlines(keepends=True)
    types = re.findall(r"tensor<([0-9x]+)x(\w+)>", text)
    if kind in ("dim-all", "dim-one") and types:
        shape, dtype = rng.choice(types)
        dims = shape.split("x")
        dims[rng.randrange(len(dims))] = rng.choice(("?", "0", "1", "4294967296", "-1"))
        old, new = f"tensor<{shape}x{dtype}>", f"tensor<{'x'.join(dims)}x{dtype}>"
        return (text.replace(old, new) if kind == "dim-all" else text.replace(old, new, 1)).encode(), f"{kind} {old}->{new}"
    if kind in ("dtype-all", "dtype-one"):
        new = rng.choice(("f64", "bf16", "f16", "i32", "i1", "complex<f32>", "ui8"))
        return (text.replace("xf32>", f"x{new}>") if kind == "dtype-all"
                else text.replace("xf32>", f"x{new}>", 1)).encode(), f"{kind} f32->{new}"
    if kind == "delete" and len(lines) > 1:
        k = rng.randrange(len(lines))
        return "".join(lines[:k] + lines[k + 1:]).encode(), f"delete line {k + 1}"
    if kind == "duplicate" and lines:
        k = rng.randrange(len(lines))
        return "".join(lines[:k + 1] + lines[k:]).encode(), f"duplicate line {k + 1}"
    if kind == "swap" and len(lines) > 2:
        a, b = sorted(rng.sample(range(len(lines)), 2))
        lines[a], lines[b] = lines[b], lines[a]
        return "".join(lines).encode(), f"swap lines {a + 1},{b + 1}"
    if kind == "truncate":
        k = rng.randrange(len(text))
        return text[:k].encode(), f"truncate at {k}"
    if kind == "bytes":
        k = rng.randrange(len(text))
        raw = text.encode()
        return raw[:k] + bytes(rng.randrange(128, 256) for _ in range(3)) + raw[k:], f"bytes at {k}"
    if kind == "int":
        numbers = list(re.finditer(r"(?<![\w.])\d+(?![\w.])", text))
        if numbers:
            m = rng.choice(numbers)
            value = rng.choice(("0", "-1", "99", "9223372036854775807", "3"))
            return (text[:m.start()] + value + text[m.end():]).encode(), f"int {m.group()}->{value}"
    if kind == "main":
        return text.replace("@main", "@main2").encode(), "rename @main"
    if kind == "declaration":  # @main's body removed: a declaration only
        for k, line in enumerate(lines):
            if "func.func public @main(" in line and line.rstrip().endswith("{"):
                indent = line[: len(line) - len(line.lstrip())]
                close = next((j for j in range(k + 1, len(lines)) if lines[j].rstrip() == indent + "}"), None)
                if close is not None:
                    head = line.rstrip()[:-1].rstrip().replace("func.func public", "func.func private")
                    return "".join([*lines[:k], head + "\n", *lines[close + 1:]]).encode(), "declaration"
    return text.encode(), "unchanged"


def _odd_pipeline(rng: random.Random) -> str:
    from alpa_mlir.passes.registry import get_pass_class

    name = rng.choice(_PASSES_WITH_OPTIONS)
    specs = get_pass_class(name).options()  # type: ignore[union-attr]
    chosen = rng.sample(specs, min(len(specs), rng.choice((1, 1, 2))))
    parts = []
    for spec in chosen:
        value = rng.choice(_ODD_VALUES)
        parts.append(f"{spec.name}={value}" if rng.random() < 0.9 else f"{spec.name}")
    if rng.random() < 0.1 and parts:
        parts.append(parts[0])  # the same option twice
    if rng.random() < 0.1:
        parts.append("no-such-option=1")
    return f"{name}{{{' '.join(parts)}}}"


def make_case(number: int, rng: random.Random, seeds: dict[str, str]) -> Case:
    kind = rng.choices(("opt", "opt-options", "run", "export"), weights=(55, 20, 20, 5))[0]
    seed_name = rng.choice(sorted(seeds))
    text = seeds[seed_name]
    if kind in ("opt", "run") and rng.random() < 0.7:
        data, what = mutate(text, rng)
    else:
        data, what = text.encode(), "unchanged"
    if kind == "opt":
        pipeline = rng.choice(_PIPELINES)
        argv = ["in.mlir", f"--pass-pipeline=builtin.module({pipeline})", "-o", "out.mlir"]
        compare = ("in.mlir", "out.mlir") if not pipeline.startswith("alpa-layer-construction") else None
        return Case(number, "alpa-opt", argv, {"in.mlir": data, "out.mlir": SENTINEL.encode()},
                    guarded="out.mlir", compare=compare, what=f"{seed_name} {what} | {pipeline}")
    if kind == "opt-options":
        pipeline = _odd_pipeline(rng)
        argv = ["in.mlir", f"--pass-pipeline=builtin.module({pipeline})", "-o", "out.mlir"]
        if rng.random() < 0.1:
            argv += rng.choice((["-o", "again.mlir"], ["--pass-pipeline=builtin.module()"], ["--no-such-flag"]))
        return Case(number, "alpa-opt", argv, {"in.mlir": data, "out.mlir": SENTINEL.encode()},
                    guarded="out.mlir", what=f"{seed_name} | {pipeline}")
    if kind == "run":
        argv = ["in.mlir"]
        for flag, values in (("--devices", ("0", "1", "3", "8", "64", "-2")),
                             ("--rtol", ("nan", "-1", "0", "1e-3", "inf")),
                             ("--atol", ("nan", "1e-6", "-0.5")),
                             ("--seed", ("0", "-1", "99999999999")),
                             ("--steps", ("0", "2", "-3")),
                             ("--repeat", ("0", "2")),
                             ("--outputs", ("missing/out.npz", "o.npz", "in.mlir/x.npz"))):
            if rng.random() < 0.25:
                argv += [flag, rng.choice(values)]
        files = {"in.mlir": data}
        if rng.random() < 0.2:
            files["in.npz"] = _odd_npz(rng)
            argv += ["--inputs", "in.npz"]
        if rng.random() < 0.5:
            argv.append("--reference")
        return Case(number, "alpa-run", argv, files, what=f"{seed_name} {what} | {' '.join(argv[1:])}")
    argv = [rng.choice(_MODELS), "--preset", rng.choice(_PRESETS),
            "-o", rng.choice(("m.mlir", "missing/m.mlir", "-"))]
    if rng.random() < 0.3:
        argv += ["--set", rng.choice(("num_layers=0", "hidden=-4", "batch=3", "vocab=x", "nope=1", "seq_len=1"))]
    if rng.random() < 0.3:
        argv += ["--example-inputs", rng.choice(("in.npz", "missing/in.npz"))]
    return Case(number, "alpa-export", argv, what=" ".join(argv))


def _odd_npz(rng: random.Random) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    arrays = {f"arg{k}": rng.choice((np.zeros((8, 4), np.float32), np.ones((4, 2), np.float64),
                                     np.arange(6, dtype=np.int32), np.zeros((), np.float32)))
              for k in range(rng.randrange(0, 4))}
    if rng.random() < 0.3:
        return b"not an npz file"
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


# --------------------------------------------------------------------------- running


@dataclass
class Result:
    number: int
    outcome: str  # "ok", "diagnosed", "crash", "hang", "damaged", "wrong"
    detail: str
    seconds: float


_TOOLS = {"alpa-opt": "alpa_mlir.tools.alpa_opt", "alpa-run": "alpa_mlir.tools.alpa_run",
          "alpa-export": "alpa_mlir.tools.alpa_export"}


def _call(tool: str, argv: list[str]) -> tuple[int, str, str]:
    """Run a tool's `main` in this process: (exit status, stdout, stderr)."""
    import importlib

    main = importlib.import_module(_TOOLS[tool]).main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:
            import traceback

            traceback.print_exc(file=err)
            code = f"raised {type(e).__name__}"  # type: ignore[assignment]
    return code, out.getvalue(), err.getvalue()


def judge(case: Case, folder: str) -> Result:
    start = time.perf_counter()
    for name, data in case.files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code, out, err = _call(case.tool, case.argv)
        outcome, detail = _outcome(code, out, err)
        if outcome == "diagnosed" and case.guarded is not None:
            with open(case.guarded, "rb") as f:
                if f.read() != case.files[case.guarded]:
                    outcome, detail = "damaged", f"{case.guarded} changed by a failed run"
        if outcome == "ok" and case.compare is not None:
            outcome, detail = _same_results(*case.compare)
    finally:
        os.chdir(cwd)
    return Result(case.number, outcome, detail, time.perf_counter() - start)


_ERROR_LINE = re.compile(r"^(\S.*?:\d+:\d+|alpa-[a-z]+): error: ", re.M)


def _outcome(code: Any, out: str, err: str) -> tuple[str, str]:
    text = out + err
    if "Traceback (most recent call last)" in text or "internal error" in text:
        return "crash", _last_lines(err or out)
    if code == 0:
        return "ok", ""
    if code == 1:
        found = _ERROR_LINE.search(err)
        if found:
            return "diagnosed", (found.group(0) + err[found.end():].split("\n")[0])[:200]
        return "crash", f"exit 1 without an error line: {_last_lines(err or out)}"
    return "crash", f"exit {code}: {_last_lines(err or out)}"


def _same_results(source: str, target: str) -> tuple[str, str]:
    """`target` (what alpa-opt wrote) computes what `source` computes, on the same random inputs."""
    import numpy as np

    if not _terminates(source):
        return "ok", "input has a loop without a static trip count: not compared"
    code, _, _ = _call("alpa-run", [source, "--seed", "3", "--outputs", "want.npz"])
    if code != 0:
        return "ok", "input does not run: not compared"
    code, out, err = _call("alpa-run", [target, "--seed", "3", "--outputs", "got.npz"])
    if code != 0:
        outcome, detail = _outcome(code, out, err)
        return ("crash" if outcome == "crash" else "wrong"), f"the output module does not run: {detail}"
    want, got = np.load("want.npz"), np.load("got.npz")
    if sorted(want.files) != sorted(got.files):
        return "wrong", f"outputs {sorted(got.files)} vs {sorted(want.files)}"
    for key in want.files:
        a, b = want[key], got[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            return "wrong", f"{key}: {b.dtype}{list(b.shape)} vs {a.dtype}{list(a.shape)}"
        if a.dtype.kind in "fc":
            x, y = a.astype(np.complex128), b.astype(np.complex128)
            close = np.isclose(x, y, rtol=1e-4, atol=1e-5) | (np.isnan(x) & np.isnan(y))
        else:
            close = a == b
        if not np.all(close):
            return "wrong", f"{key}: {int((~close).sum())} of {a.size} values differ"
    return "ok", "compared: same results"


def _terminates(path: str) -> bool:
    """Every loop of the module has a static trip count (a mutated counter can make a
    loop run forever: that is the program, not a tool, and is not run)."""
    from jax.extend.mlir import ir

    from alpa_mlir.dialect_utils.context import make_context, parse_module
    from alpa_mlir.dialect_utils.control_flow import WHILE, static_trip_count

    with open(path, encoding="utf-8") as f:
        module = parse_module(f.read(), make_context())
    loops: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == WHILE:
            loops.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return all(static_trip_count(loop) is not None for loop in loops)


def _last_lines(text: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])[:400]


def _worker(conn: Any) -> None:
    folder = tempfile.mkdtemp(prefix="alpa-fuzz-")
    while True:
        case = conn.recv()
        if case is None:
            break
        sub = os.path.join(folder, str(case.number))
        os.makedirs(sub)
        try:
            conn.send(judge(case, sub))
        finally:
            shutil.rmtree(sub, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


class Runner:
    """One worker process at a time; replaced when it dies or hangs."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.ctx = mp.get_context("spawn")
        self.proc: Any = None
        self.conn: Any = None

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()
        self.conn = parent

    def run(self, case: Case) -> Result:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        start = time.perf_counter()
        self.conn.send(case)
        try:
            if self.conn.poll(self.timeout):
                return self.conn.recv()
        except EOFError:
            pass
        seconds = time.perf_counter() - start
        alive = self.proc.is_alive()
        self.proc.kill()
        self.proc.join()
        code = self.proc.exitcode
        self.proc = None
        if alive:
            return Result(case.number, "hang", f"past {self.timeout:.0f} s", seconds)
        return Result(case.number, "crash", f"the worker died (exit code {code})", seconds)

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(10)


def seed_modules() -> dict[str, str]:
    from alpa_mlir.models.export import export_train_step

    seeds = dict(_SEEDS)
    seeds["mlp_step"] = export_train_step("mlp", "tiny", debug_info=False)
    return seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="alpa-fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200, help="number of cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per case before it counts as a hang")
    p.add_argument("--verbose", action="store_true", help="print every case")
    args = p.parse_args(argv)
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    rng = random.Random(args.seed)
    seeds = seed_modules()
    runner = Runner(args.timeout)
    counts: Counter[str] = Counter()
    by_tool: Counter[tuple[str, str]] = Counter()
    bad: list[tuple[Case, Result]] = []
    start = time.perf_counter()
    try:
        for k in range(args.n):
            case = make_case(k, rng, seeds)
            result = runner.run(case)
            counts[result.outcome] += 1
            counts["compared"] += result.detail == "compared: same results"
            by_tool[case.tool, result.outcome] += 1
            if result.outcome in BAD_OUTCOMES:
                bad.append((case, result))
            if args.verbose or result.outcome in BAD_OUTCOMES:
                print(f"[{k}] {result.outcome:9s} {result.seconds:6.2f} s  {case.tool} {case.what}"
                      + (f"\n      {result.detail}" if result.detail else ""), flush=True)
    finally:
        runner.close()
    seconds = time.perf_counter() - start
    print(f"alpa-fuzz: {args.n} cases (seed {args.seed}) in {seconds:.0f} s")
    for tool in _TOOLS:
        row = {o: by_tool[tool, o] for o in ("ok", "diagnosed", *BAD_OUTCOMES) if by_tool[tool, o]}
        if row:
            print(f"  {tool:12s} " + "  ".join(f"{o}={n}" for o, n in row.items()))
    print("  total        " + "  ".join(f"{o}={counts[o]}" for o in ("ok", "diagnosed", *BAD_OUTCOMES)))
    print(f"  {counts['compared']} outputs of alpa-opt re-run against their inputs: the same results")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
