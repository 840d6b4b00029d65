"""Collectives of a compiled SPMD program, counted right after SPMD partitioning.

XLA's final HLO combines all-reduces (`exe.get_hlo_text()`), so per-tensor counts come
from the HLO module dumped right after the `spmd-partitioning` pass:

```
compile with debug options xla_dump_to=DIR, xla_dump_hlo_pass_re="spmd-partitioning",
                           xla_dump_hlo_as_text=True
DIR/module_0000.jit_f.0001.spmd-partitioner.after_spmd-partitioning.before_<next>.txt
  %all-reduce = f32[8,4]{1,0} all-reduce(%dot.2), channel_id=1, replica_groups=[2,4]<=[8], ...
-> Collective(ALL_REDUCE, shapes=(("f32", (8, 4)),), nbytes=128, group_size=4)
```

Scalar all-reduces (a loss summed across devices) are left out of the counts and kept
apart (`CollectiveStats.scalar_all_reduces`); a tuple-shaped all-reduce counts once per
non-scalar element. Bytes are the result's bytes (per device). Collectives inside called
computations (while bodies, ...) are counted once each, statically.

`compare_prediction` sets a plan's predicted collectives (an alpa-auto-sharding report)
beside the counted ones, kind by kind.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alpa_mlir.dialect_utils.collective_kind import CollectiveKind

SPMD_PASS_RE = "spmd-partitioning"
_AFTER_SPMD = "after_spmd-partitioning"


HloShape = tuple[str, tuple[int, ...]]  # (element type, dims): ("f32", (8, 4))

_ELEMENT_BITS = {
    "pred": 8, "s2": 2, "u2": 2, "s4": 4, "u4": 4, "s8": 8, "u8": 8, "s16": 16, "u16": 16,
    "s32": 32, "u32": 32, "s64": 64, "u64": 64, "f16": 16, "bf16": 16, "f32": 32, "f64": 64,
    "c64": 64, "c128": 128,
}

_OPCODES = "|".join(re.escape(k.value) for k in CollectiveKind)
_INSTRUCTION = re.compile(
    rf"^\s*(?:ROOT\s+)?%?(?P<name>[^\s=]+)\s*=\s*(?P<shape>.*?)\s+(?P<op>{_OPCODES})\("
)
_ARRAY_SHAPE = re.compile(r"\b(?P<type>[a-z][a-z0-9]*)\[(?P<dims>[0-9,]*)\]")
_IOTA_GROUPS = re.compile(r"replica_groups=\[(?P<dims>[0-9,]+)\]<=")
_LIST_GROUPS = re.compile(r"replica_groups=\{\{(?P<first>[0-9,\s]*)\}")
# mesh['axis_0'=2,'axis_1'=4] {'axis_0'}, optionally with `, device_ids=(...)` before the braces
_MESH_GROUPS = re.compile(r"replica_groups=mesh\[(?P<axes>[^\]]*)\][^{}]*?\{(?P<used>[^}]*)\}")


def element_bits(element_type: str) -> int:
    """Bits per element of an HLO element type (f8 variants: 8; unknown: 32)."""
    if element_type.startswith("f8"):
        return 8
    return _ELEMENT_BITS.get(element_type, 32)


def shape_bytes(shape: HloShape) -> int:
    return (math.prod(shape[1]) * element_bits(shape[0]) + 7) // 8


@dataclass(frozen=True)
class Collective:
    """One collective instruction (or one element of a tuple-shaped all-reduce)."""

    kind: CollectiveKind
    name: str  # the HLO instruction name
    shapes: tuple[HloShape, ...]  # result array shapes counted here
    group_size: int | None  # devices per replica group, when the HLO says

    @property
    def nbytes(self) -> int:
        return sum(shape_bytes(s) for s in self.shapes)


@dataclass(frozen=True)
class CollectiveStats:
    """Collectives of one program right after SPMD partitioning."""

    collectives: tuple[Collective, ...] = ()
    scalar_all_reduces: int = 0  # left out of `collectives`

    def count(self, kind: CollectiveKind) -> int:
        return sum(1 for c in self.collectives if c.kind is kind)

    def nbytes(self, kind: CollectiveKind) -> int:
        return sum(c.nbytes for c in self.collectives if c.kind is kind)

    @property
    def counts(self) -> dict[CollectiveKind, int]:
        return {k: self.count(k) for k in CollectiveKind}

    @property
    def bytes_per_kind(self) -> dict[CollectiveKind, int]:
        return {k: self.nbytes(k) for k in CollectiveKind}

    @property
    def total(self) -> int:
        return len(self.collectives)

    @property
    def total_bytes(self) -> int:
        return sum(c.nbytes for c in self.collectives)

    def summary(self) -> str:
        """`all-reduce=2 all-gather=0 ... (scalar all-reduces ignored: 1)`."""
        parts = [f"{k.value}={self.count(k)}" for k in CollectiveKind]
        return " ".join(parts) + f" (scalar all-reduces ignored: {self.scalar_all_reduces})"


def _array_shapes(shape_text: str) -> tuple[HloShape, ...]:
    return tuple(
        (m.group("type"), tuple(int(d) for d in m.group("dims").split(",") if d))
        for m in _ARRAY_SHAPE.finditer(shape_text)
    )


def _group_size(line: str) -> int | None:
    if m := _IOTA_GROUPS.search(line):
        return int(m.group("dims").split(",")[-1])
    if m := _LIST_GROUPS.search(line):
        return len([x for x in m.group("first").split(",") if x.strip()])
    if m := _MESH_GROUPS.search(line):
        sizes = dict(re.findall(r"'([^']+)'=(\d+)", m.group("axes")))
        size = 1
        for axis in re.findall(r"'([^']+)'(?::\(\d+\)(\d+))?", m.group("used")):
            size *= int(axis[1]) if axis[1] else int(sizes.get(axis[0], 1))
        return size
    return None


def parse_hlo_collectives(hlo_text: str) -> CollectiveStats:
    """The collectives of an HLO module's text."""
    found: list[Collective] = []
    scalars = 0
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if m is None:
            continue
        kind = CollectiveKind(m.group("op"))
        shapes = _array_shapes(m.group("shape"))
        group = _group_size(line)
        if kind is CollectiveKind.ALL_REDUCE:
            for shape in shapes:
                if shape[1]:
                    found.append(Collective(kind, m.group("name"), (shape,), group))
                else:
                    scalars += 1
        else:
            found.append(Collective(kind, m.group("name"), shapes, group))
    return CollectiveStats(tuple(found), scalars)


def find_after_spmd_partitioning(dump_dir: Path) -> Path | None:
    """The first HLO text dumped after `spmd-partitioning` in `dump_dir`, if any."""
    candidates = sorted(p for p in dump_dir.iterdir() if _AFTER_SPMD in p.name and p.suffix == ".txt")
    return candidates[0] if candidates else None


def read_dump(dump_dir: Path) -> CollectiveStats:
    """Collectives from an XLA dump directory; no dump after partitioning (a program of
    one partition is never partitioned) means no collectives."""
    path = find_after_spmd_partitioning(dump_dir)
    if path is None:
        return CollectiveStats()
    return parse_hlo_collectives(path.read_text())


@dataclass(frozen=True)
class CollectiveRow:
    """One collective kind of one planned program: the plan's prediction and XLA's count
    right after SPMD partitioning. Bytes: predicted as the report sums them (the tensor
    each collective produces, on its group), actual as per-device result bytes (scalar
    all-reduces left out)."""

    model: str
    mesh: str
    kind: CollectiveKind
    predicted: int
    actual: int
    predicted_bytes: float
    actual_bytes: int

    @property
    def difference(self) -> int:
        return self.predicted - self.actual


def compare_prediction(model: str, mesh: str, predicted: Mapping[str, Mapping[str, float]],
                       stats: CollectiveStats) -> list[CollectiveRow]:
    """Per collective kind, a plan's prediction (the `predicted_collectives` of an
    alpa-auto-sharding report: kind -> count and bytes) against XLA's count, XLA's scalar
    all-reduces (the loss) added to its all-reduce count since the prediction counts them
    too."""
    rows = []
    for kind in CollectiveKind:
        actual = stats.count(kind) + (stats.scalar_all_reduces if kind is CollectiveKind.ALL_REDUCE else 0)
        entry = predicted.get(kind.value, {"count": 0, "bytes": 0.0})
        rows.append(CollectiveRow(model, mesh, kind, int(entry["count"]), actual,
                                  float(entry["bytes"]), stats.nbytes(kind)))
    return rows


def format_table(rows: list[CollectiveRow]) -> str:
    """Markdown: one line per (model, mesh, kind), predicted / actual counts and bytes."""
    lines = [
        "| model | mesh | collective | predicted | actual | predicted bytes | actual bytes |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.model} | {r.mesh} | {r.kind.value} | {r.predicted} | {r.actual} | "
        f"{r.predicted_bytes:.0f} | {r.actual_bytes} |"
        for r in rows
    ]
    return "\n".join(lines)


def mismatches(rows: list[CollectiveRow]) -> list[str]:
    """`kind: predicted P, XLA A` for every kind whose counts differ."""
    return [f"{r.kind.value}: predicted {r.predicted}, XLA {r.actual}" for r in rows if r.difference]
