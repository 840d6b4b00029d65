"""dialect_utils.stage_plan: the typed record of `alpa.stage_plan` (planner -> runtime)."""

from __future__ import annotations

import json

import pytest

from alpa_mlir.dialect_utils.attributes import STAGE_PLAN_ATTR
from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.dialect_utils.schedules import ScheduleKind
from alpa_mlir.dialect_utils.stage_plan import (
    PlanCluster,
    PlanStage,
    StagePlanError,
    StagePlanRecord,
    read_stage_plan,
    write_stage_plan,
)


def _stage(k: int, layers: tuple[int, int], submesh: tuple[int, int]) -> PlanStage:
    return PlanStage(stage=k, layers=layers, submesh=submesh, logical_shape=(submesh[1], 1),
                     latency_s=0.5, compute_s=0.25, communication_s=0.25, param_bytes=60.0,
                     grad_bytes=15.0, optimizer_bytes=25.0, activation_bytes=10.0, temp_bytes=5.0,
                     peak_bytes=125.0, stashed_microbatches=2)


RECORD = StagePlanRecord(
    cluster=PlanCluster("test[1x4]", 1, 4, 1e9), mode="manual", schedule=ScheduleKind.GPIPE,
    num_microbatches=2, num_layers=3, stages=(_stage(0, (0, 1), (1, 2)), _stage(1, (2, 2), (1, 2))),
    predicted_step_s=1.5, t_max_s=0.5, total_latency_s=1.0, fragments={"forward": 2}, transfers=3,
)


def test_round_trip_through_json_and_the_module() -> None:
    data = RECORD.to_json()
    assert data["schedule"] == "gpipe"
    assert data["stages"][1]["submesh"] == [1, 2]
    assert "stage_sharding" not in data
    assert StagePlanRecord.from_json(json.loads(json.dumps(data))) == RECORD
    module = parse_module("module {}", make_context())
    assert read_stage_plan(module) is None
    write_stage_plan(module, RECORD)
    assert STAGE_PLAN_ATTR in str(module)
    assert read_stage_plan(module) == RECORD
    assert RECORD.num_stages == 2 and RECORD.stages[0].num_devices == 2


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("stages"), r"stages: expected a non-empty list, got None"),
    (lambda d: d["cluster"].pop("hosts"), r"cluster: missing field 'hosts'"),
    (lambda d: d.update(schedule="zigzag"), r"schedule: unknown pipeline schedule 'zigzag'"),
    (lambda d: d["stages"][0].update(submesh=[1]), r"stages\[0\].submesh: expected two integers >= 0, got \[1\]"),
    (lambda d: d.update(t_max_s="fast"), r"plan.t_max_s: expected a finite number, got 'fast'"),
    (lambda d: d.update(num_microbatches=-1), r"plan.num_microbatches: expected an integer >= 0, got -1"),
])
def test_malformed_plans_name_the_field(edit: object, message: str) -> None:
    data = RECORD.to_json()
    edit(data)  # type: ignore[operator]
    with pytest.raises(StagePlanError, match=message):
        StagePlanRecord.from_json(data)


def test_not_json_is_an_error() -> None:
    module = parse_module('module attributes {alpa.stage_plan = "{not json"} {}', make_context())
    with pytest.raises(StagePlanError, match=r"alpa\.stage_plan is not a JSON string"):
        read_stage_plan(module)
