"""The stage plan that alpa-stage-construction writes and the pipeline runtime reads.

One typed record, `StagePlanRecord`, stored as JSON in the module attribute
`alpa.stage_plan` and, with timings added, in the pass's `report=` file. The planner
builds it, `write_stage_plan` stores it, `read_stage_plan` parses and validates it; the
runtime reads the schedule the plan was costed for and the submesh of every stage from
it, never by JSON key. The JSON keys are the field names below::

    {"cluster": {"name", "hosts", "devices_per_host", "memory_limit_bytes"},
     "mode", "schedule", "num_microbatches", "num_layers",
     "stages": [{"stage", "layers", "submesh", "logical_shape", "latency_s", "compute_s",
                 "communication_s", "param_bytes", "grad_bytes", "optimizer_bytes",
                 "activation_bytes", "temp_bytes", "peak_bytes", "stashed_microbatches",
                 "memory_plan", "zero_stage"}, ...],
     "predicted_step_s", "t_max_s", "total_latency_s", "fragments", "transfers",
     "cost_model", "remat", "zero_stage", "stage_sharding"}

Memory per device is by component: `peak_bytes` = param + grad (gradient accumulators)
+ optimizer (optimizer state) + (stashed_microbatches - 1) x activation + max(temp,
activation) (the temporaries hold the microbatch being worked on), where
activation is what the stage's memory plan stashes per microbatch (`memory_plan`: the
residency of each of its layers' activations, keep / recompute / selective / offload)
and the stage's ZeRO level `zero_stage` (the top-level `zero_stage` is the option: one
level, or "auto" for a level per stage).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from jax.extend.mlir import ir

from .attributes import STAGE_PLAN_ATTR
from .schedules import ScheduleKind


class StagePlanError(ValueError):
    """An `alpa.stage_plan` that is not a stage plan this version reads."""


@dataclass(frozen=True)
class PlanCluster:
    """The cluster a plan was made for."""

    name: str
    hosts: int
    devices_per_host: int
    memory_limit_bytes: float


@dataclass(frozen=True)
class PlanStage:
    """One stage: its layers (first, last; inclusive), submesh (hosts, devices per host),
    logical mesh (data, model), predicted latency per microbatch and memory per device
    (module docstring)."""

    stage: int
    layers: tuple[int, int]
    submesh: tuple[int, int]
    logical_shape: tuple[int, int]
    latency_s: float
    compute_s: float
    communication_s: float
    param_bytes: float
    grad_bytes: float
    optimizer_bytes: float
    activation_bytes: float
    temp_bytes: float
    peak_bytes: float
    stashed_microbatches: int
    memory_plan: tuple[str, ...] = ()  # per layer: keep, recompute, selective or offload
    zero_stage: int = 0  # the ZeRO level of this stage's state

    @property
    def num_devices(self) -> int:
        return self.submesh[0] * self.submesh[1]


@dataclass(frozen=True)
class StagePlanRecord:
    """A whole plan (module docstring). `cost_model`, `remat` and `stage_sharding` are
    the planner's counters, kept as written."""

    cluster: PlanCluster
    mode: str
    schedule: ScheduleKind
    num_microbatches: int
    num_layers: int
    stages: tuple[PlanStage, ...]
    predicted_step_s: float
    t_max_s: float
    total_latency_s: float
    fragments: Mapping[str, int] = field(default_factory=dict)
    transfers: int = 0
    cost_model: Mapping[str, Any] = field(default_factory=dict)
    remat: Mapping[str, Any] = field(default_factory=dict)
    zero_stage: int | str = 0  # the option: a level for every stage, or "auto" (each stage's own)
    stage_sharding: Mapping[str, Any] | None = None

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON data (tuples as lists, the schedule by its name)."""
        data = asdict(self)
        data["schedule"] = self.schedule.value
        if self.stage_sharding is None:
            del data["stage_sharding"]
        return json.loads(json.dumps(data))

    @classmethod
    def from_json(cls, data: object) -> StagePlanRecord:
        """Parse JSON data; raises StagePlanError naming the first field that is missing
        or of the wrong kind."""
        top = _mapping(data, "the stage plan")
        cluster = _mapping(top.get("cluster"), "cluster")
        stages = top.get("stages")
        if not isinstance(stages, list) or not stages:
            raise StagePlanError(f"stages: expected a non-empty list, got {stages!r}")
        try:
            schedule = ScheduleKind.parse(str(top.get("schedule", ScheduleKind.ONE_F_ONE_B.value)))
        except ValueError as e:
            raise StagePlanError(f"schedule: {e}") from None
        zero_stage: int | str = ("auto" if top.get("zero_stage") == "auto"
                                 else _int({"zero_stage": 0, **top}, "zero_stage", "plan"))
        return cls(
            cluster=PlanCluster(
                name=_str(cluster, "name", "cluster"),
                hosts=_int(cluster, "hosts", "cluster"),
                devices_per_host=_int(cluster, "devices_per_host", "cluster"),
                memory_limit_bytes=_float(cluster, "memory_limit_bytes", "cluster"),
            ),
            mode=_str(top, "mode", "plan"),
            schedule=schedule,
            num_microbatches=_int(top, "num_microbatches", "plan"),
            num_layers=_int(top, "num_layers", "plan"),
            stages=tuple(_stage(s, k, zero_stage if isinstance(zero_stage, int) else 0)
                         for k, s in enumerate(stages)),
            predicted_step_s=_float(top, "predicted_step_s", "plan"),
            t_max_s=_float(top, "t_max_s", "plan"),
            total_latency_s=_float(top, "total_latency_s", "plan"),
            fragments=dict(_mapping(top.get("fragments", {}), "fragments")),
            transfers=int(top.get("transfers", 0)),
            cost_model=dict(_mapping(top.get("cost_model", {}), "cost_model")),
            remat=dict(_mapping(top.get("remat", {}), "remat")),
            zero_stage=zero_stage,
            stage_sharding=(None if top.get("stage_sharding") is None
                            else dict(_mapping(top["stage_sharding"], "stage_sharding"))),
        )


def read_stage_plan(module: ir.Module) -> StagePlanRecord | None:
    """The module's `alpa.stage_plan`, or None when it has none. Raises StagePlanError
    on an attribute that is not a plan."""
    attrs = module.operation.attributes
    if STAGE_PLAN_ATTR not in attrs:
        return None
    try:
        data = json.loads(str(ir.StringAttr(attrs[STAGE_PLAN_ATTR]).value))
    except (ValueError, TypeError) as e:
        raise StagePlanError(f"{STAGE_PLAN_ATTR} is not a JSON string: {e}") from None
    return StagePlanRecord.from_json(data)


def write_stage_plan(module: ir.Module, record: StagePlanRecord) -> None:
    """Store `record` as the module's `alpa.stage_plan` (compact JSON, sorted keys)."""
    text = json.dumps(record.to_json(), sort_keys=True)
    with module.context:
        module.operation.attributes[STAGE_PLAN_ATTR] = ir.StringAttr.get(text)


# --- parsing helpers ---------------------------------------------------------------


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise StagePlanError(f"{what}: expected an object, got {value!r}")
    return value


def _get(data: Mapping[str, Any], key: str, where: str) -> object:
    if key not in data:
        raise StagePlanError(f"{where}: missing field {key!r}")
    return data[key]


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = _get(data, key, where)
    if not isinstance(value, str):
        raise StagePlanError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _int(data: Mapping[str, Any], key: str, where: str) -> int:
    value = _get(data, key, where)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StagePlanError(f"{where}.{key}: expected an integer >= 0, got {value!r}")
    return value


def _float(data: Mapping[str, Any], key: str, where: str) -> float:
    value = _get(data, key, where)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise StagePlanError(f"{where}.{key}: expected a finite number, got {value!r}")
    return float(value)


def _pair(data: Mapping[str, Any], key: str, where: str) -> tuple[int, int]:
    value = _get(data, key, where)
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise StagePlanError(f"{where}.{key}: expected two integers >= 0, got {value!r}")
    return int(value[0]), int(value[1])


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StagePlanError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


_STAGE_FLOATS = tuple(f.name for f in fields(PlanStage) if f.type == "float")


def _stage(value: object, k: int, zero_stage: int) -> PlanStage:
    """Stage k; `zero_stage`: its level where it names none (plans of one level)."""
    where = f"stages[{k}]"
    data = _mapping(value, where)
    floats = {name: _float(data, name, where) for name in _STAGE_FLOATS}
    return PlanStage(
        stage=_int(data, "stage", where),
        layers=_pair(data, "layers", where),
        submesh=_pair(data, "submesh", where),
        logical_shape=_pair(data, "logical_shape", where),
        stashed_microbatches=_int(data, "stashed_microbatches", where),
        memory_plan=_strings(data.get("memory_plan", []), f"{where}.memory_plan"),
        zero_stage=_int({"zero_stage": zero_stage, **data}, "zero_stage", where),
        **floats,
    )
