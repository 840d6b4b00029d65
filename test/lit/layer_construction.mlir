// alpa-layer-construction on the zoo's tiny MLP training step (3 dense layers, Adam):
// every op of @main gets a phase and a layer; relu helpers are inlined first.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{layers=2})' | filecheck %s
// With too few dot ops for Alpa's 3-per-layer floor, layers=auto settles on one layer.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction)' | filecheck %s --check-prefix=AUTO
// GPT tiny (two transformer blocks): auto finds more than one layer.
// RUN: alpa-opt %inputs/gpt_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{layers=auto})' | filecheck %s --check-prefix=GPT

// CHECK-LABEL: func.func public @main
// CHECK-SAME:  attributes {alpa.num_layers = 2 : i64}
// The forward pass: the first dense layer's matmul is layer 0 (the DP's cut: one
// 8x32 activation crosses), the rest of the forward pass layer 1.
// CHECK:       stablehlo.dot_general %arg19, %arg1, {{.*}} {alpa.layer = 0 : i64, alpa.phase = "forward"}
// CHECK:       stablehlo.maximum {{.*}} {alpa.layer = 1 : i64, alpa.phase = "forward"}
// The relu mask is only needed by the backward pass.
// CHECK:       stablehlo.compare GT, {{.*}} {alpa.layer = 1 : i64, alpa.phase = "backward"}
// CHECK:       stablehlo.dot_general {{%[0-9]+}}, %arg3, {{.*}} {alpa.layer = 1 : i64, alpa.phase = "forward"}
// CHECK:       stablehlo.dot_general {{%[0-9]+}}, %arg5, contracting_dims = [1] x [0], {{.*}} {alpa.layer = 1 : i64, alpa.phase = "forward"}
// The loss.
// CHECK:       across dimensions = [0, 1] {alpa.layer = 1 : i64, alpa.phase = "forward"}
// A weight gradient contracts over the batch (backward); its transpose reads only the
// batch-free sum (apply).
// CHECK:       %[[GRAD:[0-9]+]] = stablehlo.dot_general {{%[0-9]+}}, {{%[0-9]+}}, contracting_dims = [0] x [0], {{.*}} {alpa.layer = 1 : i64, alpa.phase = "backward"}
// CHECK-NEXT:  stablehlo.transpose %[[GRAD]], {{.*}} {alpa.layer = 1 : i64, alpa.phase = "apply"}
// The Adam step counter.
// CHECK:       stablehlo.add %arg18, {{%[a-z0-9_]+}} {alpa.layer = 1 : i64, alpa.phase = "apply"}
// Each parameter's update sits in its parameter's layer: layer 0's kernel in layer 0.
// CHECK:       stablehlo.subtract %arg0, {{%[0-9]+}} {alpa.layer = 1 : i64, alpa.phase = "apply"}
// CHECK:       stablehlo.subtract %arg1, {{%[0-9]+}} {alpa.layer = 0 : i64, alpa.phase = "apply"}
// CHECK:       return
// CHECK-NOT:   func.func private @relu

// AUTO-LABEL:  func.func public @main
// AUTO-SAME:   attributes {alpa.num_layers = 1 : i64}
// AUTO-NOT:    alpa.layer = 1

// GPT-LABEL:   func.func public @main
// GPT-SAME:    attributes {alpa.num_layers = 3 : i64}
// GPT:         alpa.layer = 2 : i64
