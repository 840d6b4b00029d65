"""alpa-annotate-flops: write each op's FLOP count as `alpa.flops`."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.attributes import FLOPS_ATTR
from alpa_mlir.dialect_utils.flops import operation_flops
from alpa_mlir.dialect_utils.graph import functions
from alpa_mlir.dialect_utils.output_files import write_atomically

from .pass_base import Pass, PassContext

_I64_MAX = 2**63 - 1
_TERMINATORS = frozenset(("func.return", "stablehlo.return", "sdy.return", "mpmd.return"))


@dataclass(frozen=True)
class AnnotateFlopsPass(Pass):
    """Annotate every op with its floating-point operation count.

    Reads: any module of func/stablehlo/chlo ops.
    Writes: `alpa.flops = N : i64` on every op inside every function (terminators
    excepted; ops with regions count their nested ops once), the function total on each
    `func.func`, and optionally a JSON report.
    Algorithm: the per-op rules of `dialect_utils.flops` (a multiply-add is 2 FLOPs).
    """

    NAME: ClassVar[str] = "alpa-annotate-flops"
    SUMMARY: ClassVar[str] = "write each op's FLOP count as alpa.flops"

    report: str = field(
        default="",
        metadata={"help": "write {function: {total, by_op}} as JSON to this path"},
    )

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        i64 = ir.IntegerType.get_signless(64)
        summary: dict[str, dict[str, object]] = {}
        too_large: list[tuple[ir.Operation, int]] = []
        for name, func_op in functions(module).items():
            by_op: Counter[str] = Counter()
            total = 0

            def visit(op: ir.Operation, by_op: Counter[str] = by_op) -> ir.WalkResult:
                if op.name in _TERMINATORS or op.name == "func.func":
                    return ir.WalkResult.ADVANCE
                n = operation_flops(op)
                if n > _I64_MAX:
                    too_large.append((op, n))
                    return ir.WalkResult.INTERRUPT
                op.attributes[FLOPS_ATTR] = ir.IntegerAttr.get(i64, n)
                if op.parent is not None and op.parent.name == "func.func":
                    by_op[str(op.name)] += n
                return ir.WalkResult.ADVANCE

            func_op.walk(visit)
            total = sum(by_op.values())
            if too_large or total > _I64_MAX:
                op, n = too_large[0] if too_large else (func_op, total)
                ctx.fail(f"{self.NAME}: '{op.name}' has {n:.3e} FLOPs, more than alpa.flops (i64) can hold: "
                         "shapes this large cannot be planned", op.location)
            func_op.attributes[FLOPS_ATTR] = ir.IntegerAttr.get(i64, total)
            summary[name] = {"total": total, "by_op": dict(sorted(by_op.items()))}
        if self.report:
            try:
                write_atomically(self.report, json.dumps(summary, indent=2, sort_keys=True) + "\n")
            except OSError as e:
                ctx.fail(f"cannot write report '{self.report}': {e.strerror}")
