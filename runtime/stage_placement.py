"""Where each stage of a pipeline program runs (the pipeline runtime's step 2).

`place_stages`: each stage's submesh, from the plan in `alpa.stage_plan` (hosts x
devices per host, Alpa's allocation of whole hosts first, then power-of-two slices at
aligned offsets; a plan whose submeshes cannot be placed is an error; a module without a
plan gets consecutive devices), and its logical mesh (the topology's axes, row-major).
The devices are explicit, so which process runs a stage is a property of its devices
(`jax.Device.process_index`): host h of the plan's cluster is the h-th block of
`devices_per_host` devices, i.e. process h when every process has that many.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh as JaxMesh

from alpa_mlir.dialect_utils.stage_plan import StagePlanRecord

from .errors import ExecutionError
from .pipeline_program import PipelineProgram


@dataclass(frozen=True)
class StagePlacement:
    """Where one stage runs: its devices (host-major) and its logical mesh."""

    stage: int
    mesh_name: str
    devices: tuple[jax.Device, ...]
    jax_mesh: JaxMesh


def place_stages(program: PipelineProgram, devices: Sequence[jax.Device]) -> tuple[StagePlacement, ...]:
    """Each stage's devices (module docstring, step 2)."""
    sizes = [m.size for m in program.meshes]
    needed = sum(sizes)
    if len(devices) < needed:
        raise ExecutionError(f"the program's {len(sizes)} stage meshes need {needed} devices, "
                             f"{len(devices)} given")
    blocks = _consecutive(sizes) if program.plan is None else _plan_blocks(program.plan, program, len(devices))
    placements = []
    for k, (mesh, ids) in enumerate(zip(program.meshes, blocks, strict=True)):
        devs = tuple(devices[i] for i in ids)
        grid = np.array(devs, dtype=object).reshape(mesh.shape)
        placements.append(StagePlacement(k, program.mesh_names[k], devs, JaxMesh(grid, mesh.axis_names)))
    return tuple(placements)


def _consecutive(sizes: Sequence[int]) -> list[list[int]]:
    out, start = [], 0
    for n in sizes:
        out.append(list(range(start, start + n)))
        start += n
    return out


def _plan_blocks(plan: StagePlanRecord, program: PipelineProgram, available: int) -> list[list[int]]:
    """Alpa's placement of the plan's submeshes on its cluster's host-major device grid:
    whole hosts first, then slices of a host at offsets aligned to their size. Raises
    ExecutionError when the plan does not match the program or its submeshes do not fit."""
    hosts, per_host = plan.cluster.hosts, plan.cluster.devices_per_host
    where = f"the stage plan (cluster {plan.cluster.name}, {hosts}x{per_host})"
    if plan.num_stages != program.num_stages:
        raise ExecutionError(f"{where} has {plan.num_stages} stages, the program {program.num_stages} meshes")
    if hosts * per_host > available:
        raise ExecutionError(f"{where} needs {hosts * per_host} devices, {available} given")
    for k, (stage, mesh) in enumerate(zip(plan.stages, program.meshes, strict=True)):
        if stage.num_devices != mesh.size:
            raise ExecutionError(f"{where}: stage {k} has submesh {stage.submesh[0]}x{stage.submesh[1]} "
                                 f"({stage.num_devices} devices) but mesh {program.mesh_names[k]} has {mesh.size}")
    free = np.ones((hosts, per_host), dtype=bool)
    blocks: list[list[int]] = [[] for _ in plan.stages]
    for k in sorted(range(plan.num_stages), key=lambda k: -plan.stages[k].num_devices):
        h, d = plan.stages[k].submesh
        found = _find_block(free, h, d)
        if found is None:
            taken = ", ".join(f"{s.submesh[0]}x{s.submesh[1]}" for s in plan.stages)
            raise ExecutionError(f"{where}: the submeshes [{taken}] cannot be placed: no free "
                                 f"{h}x{d} block left for stage {k}")
        rows, cols = found
        free[rows, cols] = False
        blocks[k] = [r * per_host + c for r in range(rows.start, rows.stop) for c in range(cols.start, cols.stop)]
    return blocks


def _find_block(free: np.ndarray, h: int, d: int) -> tuple[slice, slice] | None:
    hosts, per_host = free.shape
    for r in range(0, hosts - h + 1):
        for c in range(0, per_host - d + 1, d):
            if free[r:r + h, c:c + d].all():
                return slice(r, r + h), slice(c, c + d)
    return None
