// alpa-stage-construction{remat=true} on the zoo's tiny MLP: every layer's forward is
// recomputed inside its backward fragment, so a stage keeps only its layer inputs
// between a microbatch's forward and backward fragments (Alpa's layer-boundary
// checkpointing), and the plan is costed that way.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{layers=2},alpa-stage-construction{devices=2x4 num-microbatches=2 remat=true stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,1x4 report=%t.json})' -o %t.mlir
// RUN: filecheck %s < %t.mlir
// RUN: filecheck %s --check-prefix=REPORT < %t.json
// Without remat the same plan stashes more per microbatch.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{layers=2},alpa-stage-construction{devices=2x4 num-microbatches=2 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,1x4 report=%t.keep.json})' -o /dev/null
// RUN: %python -c "import json; a, b = (json.load(open(p)) for p in ('%t.json', '%t.keep.json')); print([x['activation_bytes'] < y['activation_bytes'] for x, y in zip(a['stages'], b['stages'])])" | filecheck %s --check-prefix=LESS
// The recomputing program still computes the original step.
// RUN: alpa-run %t.mlir --reference | filecheck %s --check-prefix=PIPE

// The forward fragment of stage 0 hands stage 1 its input and nothing for its own
// backward (one result); the backward fragment recomputes the layer's dot.
// CHECK:       func.func private @microbatch
// CHECK:       {{%[0-9]+}} = mpmd.fragment<mesh="stage0", origin=["layer0"], stage=0> {{.*}} {alpa.kind = "forward"}
// CHECK:       mpmd.fragment<mesh="stage1", origin=["layer1"(1)], stage=1> {{.*}} {alpa.kind = "backward"}
// CHECK:       stablehlo.dot_general {{.*}} {alpa.layer = 1 : i64, alpa.phase = "backward"
// CHECK:       mpmd.fragment<mesh="stage0", origin=["layer0"(1)], stage=0> {{.*}} {alpa.kind = "backward"}
// CHECK:       stablehlo.dot_general {{.*}} {alpa.layer = 0 : i64, alpa.phase = "backward"

// REPORT:      "remat": {
// REPORT-NEXT:   "enabled": true,
// REPORT-NEXT:   "mode": "fixed",
// REPORT-NEXT:   "offloaded_values": 0,
// REPORT-NEXT:   "recomputed_ops": {{[1-9][0-9]*}}
// LESS: [True, True]
// PIPE:        reference check: PASS
