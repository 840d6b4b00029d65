"""Export the corpus to StableHLO text, and check it (``--check``, ``--shard-check``).

Usage::

    .venv/bin/python test/corpus/export.py OUTDIR [case ...]            # OUTDIR/<case>.mlir
    .venv/bin/python test/corpus/export.py OUTDIR [case ...] --check    # + per-case table
    .venv/bin/python test/corpus/export.py OUTDIR [case ...] --shard-check

``--check`` builds every case, writes its ``.mlir``, runs its one-device reference and
verifies that ``flat_inputs`` matches the arguments of the exported ``@main`` (count,
shapes, element types) and the reference outputs match its results; it prints a table of
@main arguments/results, lines, private functions, notable op counts, build/export/
reference seconds. ``--shard-check`` additionally runs each step on 8 fake CPU devices
(every argument leaf sharded along its first dimension divisible by 8, the rest left to
the partitioner) and reports the worst error against the reference in units of the
case's tolerance (``<= 1`` passes).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

if "--shard-check" in sys.argv:  # before anything imports jax's backend
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=8".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/: import corpus

from corpus import (
    CASES,
    Built,
    Case,
    export_text,
    flat_inputs,
    main_signature,
    reference_outputs,
)

NOTABLE = [
    "stablehlo.while",
    "stablehlo.optimization_barrier",
    "stablehlo.custom_call",
    "stablehlo.rng_bit_generator",
    "stablehlo.case",
]

_OP = re.compile(r'(?<![#!\w.])"?((?:stablehlo|chlo)\.[a-z_0-9]+)\b')
_CUSTOM_CALL_TARGET = re.compile(
    r"stablehlo\.custom_call\s*@([\w.$-]+)|call_target_name\s*=\s*\"([^\"]+)\""
)

_ELEMENT = {
    "float32": "f32",
    "float16": "f16",
    "bfloat16": "bf16",
    "float64": "f64",
    "int32": "i32",
    "int64": "i64",
    "int8": "i8",
    "uint8": "ui8",
    "uint32": "ui32",
    "bool": "i1",
}


def tensor_type(array: np.ndarray) -> str:
    """The MLIR type of a numpy array: ``tensor<8x16xf32>``, ``tensor<i32>``."""
    dims = "".join(f"{d}x" for d in array.shape)
    return f"tensor<{dims}{_ELEMENT[str(array.dtype)]}>"


def op_counts(text: str) -> Counter[str]:
    return Counter(_OP.findall(text))


def custom_call_targets(text: str) -> Counter[str]:
    return Counter(a or b for a, b in _CUSTOM_CALL_TARGET.findall(text))


def signature_problems(text: str, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[str]:
    args, results = main_signature(text)
    return [*_type_problems("arg", args, "flat_inputs", inputs),
            *_type_problems("result", results, "reference", outputs)]


def _type_problems(kind: str, declared: list[str], source: str, arrays: list[np.ndarray]) -> list[str]:
    """@main's `kind` types against the arrays `source` gives, in order."""
    if len(declared) != len(arrays):
        return [f"@main has {len(declared)} {kind}s, {source} gives {len(arrays)}"]
    return [f"{kind} {i}: @main {t} vs {source} {tensor_type(a)}"
            for i, (t, a) in enumerate(zip(declared, arrays, strict=True)) if t != tensor_type(a)]


def sharded_outputs(built: Built) -> list[np.ndarray]:
    """The step on 8 devices: each leaf split along its first dim divisible by 8."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:8]), ("x",))

    def place(leaf: Any) -> Any:
        spec: list[str | None] = [None] * leaf.ndim
        for dim, size in enumerate(leaf.shape):
            if size % 8 == 0:
                spec[dim] = "x"
                break
        return jax.device_put(leaf, NamedSharding(mesh, PartitionSpec(*spec)))

    args = jax.tree.map(place, built.args)
    out = jax.jit(built.step)(*args)
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(out)]


def tolerance_units(case: Case, got: list[np.ndarray], want: list[np.ndarray]) -> float:
    """max |got - want| / (atol + rtol |want|) over all outputs (<= 1: within tolerance)."""
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        ratio = np.abs(g64 - w64) / (case.atol + case.rtol * np.abs(w64))
        worst = max(worst, float(ratio.max(initial=0.0)))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("cases", nargs="*", help=f"default: all of {', '.join(CASES)}")
    parser.add_argument(
        "--check", action="store_true", help="run references, verify, print a table"
    )
    parser.add_argument(
        "--shard-check", action="store_true", help="--check plus an 8-device run vs the reference"
    )
    opts = parser.parse_args(argv)
    unknown = [c for c in opts.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {list(CASES)}")
    names = opts.cases or list(CASES)
    check = opts.check or opts.shard_check
    opts.outdir.mkdir(parents=True, exist_ok=True)

    rows, failures = [], 0
    start_all = time.perf_counter()
    for name in names:
        case = CASES[name]
        t0 = time.perf_counter()
        built = case.build()
        t1 = time.perf_counter()
        text = export_text(built)
        t2 = time.perf_counter()
        (opts.outdir / f"{name}.mlir").write_text(text)
        if not check:
            print(f"{name}: {opts.outdir / f'{name}.mlir'} ({t2 - t1:.2f}s)")
            continue
        reference = reference_outputs(built)
        t3 = time.perf_counter()
        args, results = main_signature(text)
        problems = signature_problems(text, flat_inputs(built), reference)
        problems += [
            f"output {i} not finite"
            for i, r in enumerate(reference)
            if not np.isfinite(r.astype(np.float64)).all()
        ]
        ops = op_counts(text)
        chlo = sorted(op for op in ops if op.startswith("chlo."))
        targets = custom_call_targets(text)
        row = {
            "case": name,
            "args": len(args),
            "results": len(results),
            "lines": text.count("\n") + 1,
            "funcs": len(re.findall(r"^\s*func\.func ", text, re.M)),
            "while": ops["stablehlo.while"],
            "opt_barrier": ops["stablehlo.optimization_barrier"],
            "case_op": ops["stablehlo.case"],
            "rng_bit_gen": ops["stablehlo.rng_bit_generator"],
            "custom_call": ops["stablehlo.custom_call"],
            "chlo": " ".join(f"{op[5:]}={ops[op]}" for op in chlo) or "-",
            "targets": " ".join(f"{t}={n}" for t, n in sorted(targets.items())) or "-",
            "build_s": f"{t1 - t0:.2f}",
            "export_s": f"{t2 - t1:.2f}",
            "ref_s": f"{t3 - t2:.2f}",
        }
        if opts.shard_check:
            t4 = time.perf_counter()
            units = tolerance_units(case, sharded_outputs(built), reference)
            row["shard_err/tol"] = f"{units:.3f}"
            row["shard_s"] = f"{time.perf_counter() - t4:.2f}"
            if units > 1.0:
                problems.append(f"8-device run off by {units:.2f}x the tolerance")
        row["ok"] = "ok" if not problems else "FAIL"
        rows.append(row)
        failures += bool(problems)
        for problem in problems:
            print(f"{name}: {problem}", file=sys.stderr)
    if not check:
        return 0

    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))
    print(f"{len(rows)} cases, {failures} failing, {time.perf_counter() - start_all:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
