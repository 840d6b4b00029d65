// alpa-layer-construction's errors: `file:line:col: error: message`, exit status 1, no
// Python traceback.

// A bad layer count is reported at the option in the pipeline text.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-layer-construction{layers=two})' 2>&1 | filecheck %s --check-prefix=OPTION
// OPTION-NOT: Traceback
// OPTION:     <pass-pipeline>:1:16: error: bad value for option 'layers' of alpa-layer-construction: expected 'auto' or a positive integer, got 'two'
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-layer-construction{layers=0})' 2>&1 | filecheck %s --check-prefix=ZERO
// ZERO:       <pass-pipeline>:1:16: error: bad value for option 'layers' of alpa-layer-construction: expected 'auto' or a positive integer, got '0'

// Each split below fails on its own; --split-input-file reports them all.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-layer-construction{layers=5})' 2>&1 | filecheck %s
// CHECK-NOT: Traceback

// CHECK: layer_construction_failures.mlir:[[# @LINE + 1]]:1: error: alpa-layer-construction needs a @main function (found: @step)
module {
  func.func @step(%arg0: tensor<4xf32>) -> tensor<4xf32> {
    return %arg0 : tensor<4xf32>
  }
}

// -----

// CHECK: layer_construction_failures.mlir:[[# @LINE + 1]]:1: error: alpa-layer-construction: no scalar float result to treat as the loss (results: tensor<4xf32>)
func.func @main(%w: tensor<4xf32> {tf.aliasing_output = 0 : i32}, %x: tensor<8x4xf32>) -> tensor<4xf32> {
  %0 = stablehlo.multiply %w, %w : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// Three forward ops (dot, constant, reduce) cannot make five layers.
// CHECK: layer_construction_failures.mlir:[[# @LINE + 1]]:1: error: layers=5 needs at least 5 forward ops, but @main has 3 (the ancestors of loss result 1)
func.func @main(%w: tensor<4xf32> {tf.aliasing_output = 0 : i32}, %x: tensor<8x4xf32>) -> (tensor<4xf32>, tensor<f32>) {
  %0 = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4xf32>) -> tensor<8xf32>
  %cst = stablehlo.constant dense<0.0> : tensor<f32>
  %1 = stablehlo.reduce(%0 init: %cst) applies stablehlo.add across dimensions = [0] : (tensor<8xf32>, tensor<f32>) -> tensor<f32>
  return %w, %1 : tensor<4xf32>, tensor<f32>
}

// A loss-result option that names no result.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{loss-result=99})' 2>&1 | filecheck %s --check-prefix=LOSS
// LOSS: mlp_tiny.mlir:3:3: error: alpa-layer-construction: loss result 99 is out of range: the function has 20 results

// No partition meets the FLOPs bound: the MLP's middle matmul alone is more than 1.5x a
// third of the step's forward FLOPs.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{layers=3})' 2>&1 | filecheck %s --check-prefix=INFEASIBLE
// INFEASIBLE-NOT: Traceback
// INFEASIBLE:     mlp_tiny.mlir:3:3: error: layer clustering failed: no partition of 24 ops into 3 layers keeps every layer's FLOPs <= (1 + eps) * total / L = 14976.5 (eps=0.5, total=29953), {{.*}} which needs eps >= 0.641 (op 7 alone has 16384 FLOPs)
// With eps=1 it fits.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{layers=3 eps=1})' | filecheck %s --check-prefix=EPS
// EPS: attributes {alpa.num_layers = 3 : i64}
