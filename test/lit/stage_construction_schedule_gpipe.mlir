// alpa-stage-construction{schedule=gpipe}: GPipe runs every forward before any backward,
// so EVERY stage stashes all M microbatches of activations (dialect_utils.schedules);
// the memory rule, the report, the plan and alpa-run's default schedule all say so.
// The zoo's tiny MLP (2 layers) on 1x2 devices, 8 microbatches. Under 1F1B the same
// manual plan fits in 45000 bytes (stage_construction_schedule_1f1b.mlir).

// The manual two-stage plan does not fit: stage 1 holds 8 microbatches, not 1.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 num-microbatches=8 schedule=gpipe memory-limit=45000 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x1,1x1 stage-logical-shapes=1x1,1x1})' -o %t.rejected.mlir 2>&1 | filecheck %s --check-prefix=MANUAL
// MANUAL-NOT: Traceback
// MANUAL: mlp_tiny.mlir:3:3: error: alpa-pipeshard: stage 1 (layers 1..1 on submesh (1, 1) as (1, 1)) needs 46088 bytes per device with 8 microbatches stashed under gpipe (every stage stashes all M microbatches): params 5408 + gradient sums 5408 + optimizer state 10820 + 7 x activations 548 + the larger of temp 20616 and one microbatch's activations, more than device_memory_bytes=45000

// Without a limit the report gives both stages 8 stashed microbatches.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 num-microbatches=8 schedule=gpipe stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x1,1x1 stage-logical-shapes=1x1,1x1 report=%t.manual.json})' -o /dev/null
// RUN: filecheck %s --check-prefix=REPORT --input-file=%t.manual.json
// REPORT:      "schedule": "gpipe",
// REPORT:      "stages": [
// REPORT:          "peak_bytes": 18048.0,
// REPORT:          "stashed_microbatches": 8
// REPORT:          "peak_bytes": 46088.0,
// REPORT:          "stashed_microbatches": 8

// The DP under the same limit: no two-stage plan fits, so one stage on both devices.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 num-microbatches=8 schedule=gpipe memory-limit=45000 report=%t.auto.json})' -o %t.mlir
// RUN: filecheck %s --check-prefix=AUTO --input-file=%t.auto.json
// AUTO:      "schedule": "gpipe",
// AUTO:      "stages": [
// AUTO:          "layers": [
// AUTO-NEXT:       0,
// AUTO-NEXT:       1
// AUTO:          "stashed_microbatches": 8
// AUTO-NOT:      "layers"
// AUTO:        "t_max_s"

// alpa-run runs the schedule the plan was costed for, and warns when told otherwise.
// RUN: alpa-run %t.mlir --reference 2>&1 | filecheck %s --check-prefix=EXEC
// EXEC-NOT: warning
// EXEC: executor: pipeline (gpipe, 1 stages, 8 microbatches
// EXEC: reference check: PASS
// RUN: alpa-run %t.mlir --schedule 1f1b 2>&1 | filecheck %s --check-prefix=OVERRIDE
// OVERRIDE: warning: running schedule 1f1b, but the stage plan was costed for gpipe: its memory figures do not hold for 1f1b
// OVERRIDE: executor: pipeline (1f1b, 1 stages
