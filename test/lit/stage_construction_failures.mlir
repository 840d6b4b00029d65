// alpa-stage-construction / alpa-pipeshard errors on the zoo's tiny MLP (2 layers) and a
// 2x4 cluster: `file:line:col: error: message` at @main, exit status 1, no traceback.

// More stages than layers.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2 stages=uniform num-stages=3})' 2>&1 | filecheck %s --check-prefix=LAYERS
// LAYERS-NOT: Traceback
// LAYERS: mlp_tiny.mlir:3:3: error: num-stages=3 is more than the 2 layers: each stage needs at least one layer
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2 stages=manual layer-ranges=0-0,1-1,2-2 stage-submeshes=1x2,1x2,1x4 stage-logical-shapes=2x1,2x1,4x1})' 2>&1 | filecheck %s --check-prefix=RANGES
// RANGES: mlp_tiny.mlir:3:3: error: alpa-pipeshard: layer ranges cover layers 0..2, expected 0..1; got ranges [(0, 0), (1, 1), (2, 2)]

// Not enough devices for the manual plan's submeshes, and a plan that leaves some idle.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 num-microbatches=2 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x2,1x2 stage-logical-shapes=2x1,2x1})' 2>&1 | filecheck %s --check-prefix=DEVICES
// DEVICES: mlp_tiny.mlir:3:3: error: alpa-pipeshard: submeshes [(1, 2), (1, 2)] use 4 devices, cluster 1x2 has 2
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x2 stage-logical-shapes=1x4,1x2})' 2>&1 | filecheck %s --check-prefix=IDLE
// IDLE: mlp_tiny.mlir:3:3: error: alpa-pipeshard: submeshes [(1, 4), (1, 2)] use 6 devices, cluster 2x4 has 8

// Device memory: no automatic plan fits, or the manual plan's stage does not (its bytes named).
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2 memory-limit=1000})' 2>&1 | filecheck %s --check-prefix=MEMORY
// MEMORY: mlp_tiny.mlir:3:3: error: alpa-pipeshard: no stage plan for 2 layers on cluster 2x4 (8 devices) {{.*}} device_memory_bytes=1000.0: of 10 (layer range, submesh, logical mesh) options that can occur in a device-covering plan, 0 are infeasible (cost None) and 10 exceed device memory even with 1 microbatch stashed
// MEMORY-NOT: the other
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2 memory-limit=1000 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=4x1,4x1})' 2>&1 | filecheck %s --check-prefix=MANUALMEM
// MANUALMEM: mlp_tiny.mlir:3:3: error: alpa-pipeshard: stage 0 (layers 0..0 on submesh (1, 4) as (4, 1)) needs {{[0-9]+}} bytes per device with 2 microbatches stashed under 1f1b (a stage followed by s - 1 stages stashes min(s, M) microbatches): params {{[0-9]+}} + gradient sums {{[0-9]+}} + optimizer state {{[0-9.]+}} + 1 x activations {{[0-9]+}} + the larger of temp {{[0-9]+}} and one microbatch's activations, more than device_memory_bytes=1000

// Stage construction needs the layers first.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-stage-construction{devices=2x4})' 2>&1 | filecheck %s --check-prefix=NOLAYERS
// NOLAYERS: mlp_tiny.mlir:3:3: error: alpa-stage-construction needs alpa.layer on every op: run alpa-layer-construction first
