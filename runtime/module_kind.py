"""What kind of program a module is, and so how the runtime executes it.

- PLAIN: no partitioning annotations; runs on one device.
- SPMD:  `sdy.mesh` + `sdy.sharding` annotations; XLA's Shardy partitioner turns it into one
         program per device of the mesh (`runtime.spmd`).
- GSPMD: `mhlo.sharding` annotations (the deprecated GSPMD format), compiled with XLA's GSPMD partitioner.
- MPMD:  Shardy's `mpmd` dialect (`#mpmd.topology` on @main, `mpmd.fragment`s per stage);
         executed by `mpmd_reference.SequentialExecutor` (one device) until the pipeline runtime exists.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import shardy
from alpa_mlir.dialect_utils.diagnostics import module_location

from .errors import UnsupportedModuleError

MPMD_TOPOLOGY_ATTR = "topology"
GSPMD_SHARDING_ATTR = "mhlo.sharding"


class ModuleKind(enum.Enum):
    PLAIN = "plain"
    SPMD = "spmd"
    GSPMD = "gspmd"
    MPMD = "mpmd"


def _any_op(module: ir.Module, predicate: Callable[[ir.Operation], bool]) -> bool:
    """Whether some op of the module (nested ones included) satisfies `predicate`."""
    found = False

    def visit(op: ir.Operation) -> ir.WalkResult:
        nonlocal found
        if predicate(op):
            found = True
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


def _is_mpmd(op: ir.Operation) -> bool:
    attrs = op.attributes
    return op.name.startswith("mpmd.") or (
        MPMD_TOPOLOGY_ATTR in attrs and str(attrs[MPMD_TOPOLOGY_ATTR]).startswith("#mpmd.topology")
    )


def _is_gspmd(op: ir.Operation) -> bool:
    attrs = op.attributes
    keys = ("arg_attrs", "res_attrs") if op.name == "func.func" else ()
    return GSPMD_SHARDING_ATTR in attrs or any(k in attrs and GSPMD_SHARDING_ATTR in str(attrs[k]) for k in keys)


def module_kind(module: ir.Module) -> ModuleKind:
    if _any_op(module, _is_mpmd):
        return ModuleKind.MPMD
    if shardy.meshes(module):
        return ModuleKind.SPMD
    if _any_op(module, _is_gspmd):
        return ModuleKind.GSPMD
    return ModuleKind.PLAIN


def spmd_mesh(module: ir.Module) -> tuple[str, shardy.Mesh] | None:
    """The mesh an SPMD module runs on: its largest `sdy.mesh` (None without meshes).

    Every mesh of more than one device must have that same size: XLA compiles one
    program for one device count. A `mhlo.num_partitions` other than 1 (a single-device
    export's) must be that size too.
    """
    found = shardy.meshes(module)
    if not found:
        return None
    name, mesh = max(found.items(), key=lambda item: item[1].size)
    for other_name, other in found.items():
        if other.size not in (1, mesh.size):
            raise UnsupportedModuleError(
                f"meshes of different sizes: @{name} has {mesh.size} devices, "
                f"@{other_name} has {other.size}; one SPMD program runs on one device count"
            )
    attrs = module.operation.attributes
    if "mhlo.num_partitions" in attrs:
        n = int(ir.IntegerAttr(attrs["mhlo.num_partitions"]).value)
        # 1 is what a single-device export carries before shardings are added to it: unset.
        if n not in (1, mesh.size):
            raise UnsupportedModuleError(
                f"mhlo.num_partitions = {n} disagrees with mesh @{name} {mesh.text()} "
                f"({mesh.size} devices): set it to {mesh.size} or remove it",
                module_location(module))
    return name, mesh
