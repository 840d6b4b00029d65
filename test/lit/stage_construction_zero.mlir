// alpa-stage-construction{zero-stage=N} on the zoo's tiny MLP: ZeRO over each stage's
// devices. Level 3 splits the optimizer state (in @main), the gradient accumulators and
// the parameters (arguments of the microbatch function) over every device of their
// stage, the plan records the level and counts each component, and the program still
// computes the original step.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{layers=2},alpa-stage-construction{devices=2x4 num-microbatches=2 zero-stage=3 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,1x4 report=%t.json})' -o %t.mlir
// RUN: filecheck %s < %t.mlir
// RUN: filecheck %s --check-prefix=REPORT < %t.json
// RUN: alpa-run %t.mlir --reference | filecheck %s --check-prefix=PIPE
// Without ZeRO the same plan keeps more per device on stage 1 (its 1x4 mesh replicates
// the parameters' vectors).
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{layers=2},alpa-stage-construction{devices=2x4 num-microbatches=2 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,1x4 report=%t.none.json})' -o %t.none.mlir
// RUN: %python -c "import json; a, b = (json.load(open(p))['stages'][1] for p in ('%t.json', '%t.none.json')); print([a[k] < b[k] for k in ('param_bytes', 'grad_bytes', 'optimizer_bytes', 'peak_bytes')])" | filecheck %s --check-prefix=LESS
// RUN: filecheck %s --check-prefix=NONE < %t.none.mlir
// A level that is not one.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{layers=2},alpa-stage-construction{devices=2x4 zero-stage=4})' 2>&1 | filecheck %s --check-prefix=BAD

// The microbatch function's first argument is a [32] parameter of stage 1: split over
// the stage's four devices with ZeRO-3, replicated without.
// CHECK:       func.func private @microbatch(%arg0: !mpmd.mesh_tensor<"stage1", tensor<32xf32>, sharding=<@stage1, [{"y"}]>>
// NONE:        func.func private @microbatch(%arg0: !mpmd.mesh_tensor<"stage1", tensor<32xf32>, sharding=<@stage1, [{}]>>

// REPORT:      "optimizer_bytes":
// REPORT:      "zero_stage": 3
// LESS: [True, True, True, True]
// PIPE:        reference check: PASS
// BAD:         error: {{.*}}zero-stage must be 0, 1, 2, 3 or auto, got '4'
// BAD-NOT:     Traceback
