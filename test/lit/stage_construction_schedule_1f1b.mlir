// alpa-stage-construction{schedule=1f1b} (the default): under 1F1B a stage with s stages
// from it to the end stashes min(s, M) microbatches (dialect_utils.schedules). The zoo's
// tiny MLP (2 layers) on 1x2 devices, 8 microbatches: stage 0 stashes 2, stage 1 one,
// so the two-stage plan that GPipe cannot fit in 45000 bytes fits here
// (stage_construction_schedule_gpipe.mlir).

// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 num-microbatches=8 schedule=1f1b memory-limit=45000 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x1,1x1 stage-logical-shapes=1x1,1x1 report=%t.manual.json})' -o /dev/null
// RUN: filecheck %s --check-prefix=MANUAL --input-file=%t.manual.json
// MANUAL:      "schedule": "1f1b",
// MANUAL:          "peak_bytes": 16896.0,
// MANUAL:          "stashed_microbatches": 2
// MANUAL:          "peak_bytes": 42252.0,
// MANUAL:          "stashed_microbatches": 1

// A tighter limit: stage 0 still fits with 2 stashed, stage 1 does not with 1.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 num-microbatches=8 memory-limit=42000 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x1,1x1 stage-logical-shapes=1x1,1x1})' -o /dev/null 2>&1 | filecheck %s --check-prefix=LIMIT
// LIMIT: mlp_tiny.mlir:3:3: error: alpa-pipeshard: stage 1 (layers 1..1 on submesh (1, 1) as (1, 1)) needs 42252 bytes per device with 1 microbatch stashed under 1f1b (a stage followed by s - 1 stages stashes min(s, M) microbatches): params 5408 + gradient sums 5408 + optimizer state 10820 + 0 x activations 548 + the larger of temp 20616 and one microbatch's activations, more than device_memory_bytes=42000

// The DP under 45000 keeps the two stages (GPipe cannot), and alpa-run runs 1F1B.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 num-microbatches=8 memory-limit=45000 report=%t.auto.json})' -o %t.mlir
// RUN: filecheck %s --check-prefix=AUTO --input-file=%t.auto.json
// AUTO:      "schedule": "1f1b",
// AUTO:          "stashed_microbatches": 2
// AUTO:          "stashed_microbatches": 1
// RUN: alpa-run %t.mlir --reference 2>&1 | filecheck %s --check-prefix=EXEC
// EXEC-NOT: warning
// EXEC: executor: pipeline (1f1b, 2 stages, 8 microbatches
// EXEC: reference check: PASS
