// alpa-stage-construction / alpa-pipeshard error paths: a clear `file:line:col: error:`,
// exit 1, no traceback.
// Not enough devices for the stages asked for.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x3 layers=2 stages=uniform num-stages=2})' 2>&1 | filecheck %s --check-prefix=DEVICES
// More stages than layers.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 stages=uniform num-stages=4})' 2>&1 | filecheck %s --check-prefix=LAYERS
// A manual plan that leaves devices unused.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x2 stage-logical-shapes=1x4,1x2})' 2>&1 | filecheck %s --check-prefix=MANUAL
// Memory that no plan fits in.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2 memory-limit=1000})' 2>&1 | filecheck %s --check-prefix=MEMORY
// Layers first.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-stage-construction{devices=2x4})' 2>&1 | filecheck %s --check-prefix=NOLAYERS
// A batch the microbatches do not divide (8 examples, 3 microbatches).
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=3})' 2>&1 | filecheck %s --check-prefix=DIVIDE

// DEVICES-NOT: Traceback
// DEVICES:     mlp_tiny.mlir:{{[0-9]+}}:{{[0-9]+}}: error: num-stages=2 does not divide the 3 devices of the cluster
// LAYERS:      mlp_tiny.mlir:{{[0-9]+}}:{{[0-9]+}}: error: num-stages=4 is more than the 2 layers: each stage needs at least one layer
// MANUAL:      error: alpa-pipeshard: submeshes [(1, 4), (1, 2)] use 6 devices, cluster 2x4 has 8
// MEMORY:      error: alpa-pipeshard: no stage plan for 2 layers on cluster 2x4 (8 devices)
// MEMORY-SAME: exceed device memory even with one microbatch stashed
// NOLAYERS:    error: alpa-stage-construction needs alpa.layer on every op: run alpa-layer-construction first
// DIVIDE:      error: alpa-pipeshard: batch argument 19 (tensor<8x16xf32>) has batch size 8, which num-microbatches=3 does not divide
