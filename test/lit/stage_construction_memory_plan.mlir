// alpa-stage-construction{memory-plan=auto} on the zoo's tiny MLP, 2 devices, 8
// microbatches under GPipe, 45000 bytes per device: keeping every layer's activations
// does not fit in two stages (stage 1 needs 46088 bytes), recomputing every layer does
// but costs both stages the forward again. The DP keeps stage 0's layer and recomputes
// only the cheap ops of stage 1's (selective: 44492 bytes, where recomputing all of it
// would stash 43400 for more time): faster than either fixed plan. The module records
// the plan per layer, only layer 1's relu (not its dots) runs again in its backward, and
// the program computes the original step.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 num-microbatches=8 schedule=gpipe memory-limit=45000 memory-plan=auto report=%t.auto.json})' -o %t.mlir
// RUN: filecheck %s < %t.mlir
// RUN: filecheck %s --check-prefix=REPORT < %t.auto.json
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 num-microbatches=8 schedule=gpipe memory-limit=45000 remat=true report=%t.remat.json})' -o /dev/null
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 num-microbatches=8 schedule=gpipe memory-limit=45000 report=%t.keep.json})' -o /dev/null
// RUN: %python -c "import json; a, r, k = (json.load(open(p))['predicted_step_s'] for p in ('%t.auto.json', '%t.remat.json', '%t.keep.json')); print(a < r, a < k)" | filecheck %s --check-prefix=FASTER
// RUN: alpa-run %t.mlir --reference | filecheck %s --check-prefix=PIPE
// remat=true is the fixed plan memory-plan=auto replaces: not both.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x2 layers=2 memory-plan=auto remat=true})' 2>&1 | filecheck %s --check-prefix=BOTH

// CHECK:       module @jit_train_step attributes {alpa.memory_plan = ["keep", "selective"]
// CHECK:       mpmd.fragment<mesh="stage1", origin=["layer1"(1)], stage=1> {{.*}} {alpa.kind = "backward"}
// CHECK:       stablehlo.maximum {{.*}} {alpa.layer = 1 : i64, alpa.phase = "backward"

// REPORT:      "mode": "auto"
// REPORT:      "memory_plan": [
// REPORT-NEXT:   "keep"
// REPORT:      "memory_plan": [
// REPORT-NEXT:   "selective"
// FASTER: True True
// PIPE:        reference check: PASS
// BOTH:        error: {{.*}}remat=true is the fixed plan that recomputes every layer; memory-plan=auto decides per layer: give one of them
