// alpa-gradient-accumulation on a step exported without donation (the default of
// `jax.jit(step).lower(...)`): which arguments are state, batch or neither is inferred
// (passes/sharding/step_args.py). Here w comes back updated at its position (w - lr * g:
// an update), x has the batch dim (8), and the learning rate lr is a scalar: neither,
// passed whole to every microbatch. Only x is sliced.

// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2})' | filecheck %s
// Naming the roles gives the same split.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2 state-args=0 batch-args=1})' | filecheck %s
// CHECK-LABEL: module @no_donation
// CHECK:       func.func private @microbatch(%arg0: tensor<4x2xf32>, %arg1: tensor<4x4xf32>, %arg2: tensor<f32>, %arg3: tensor<4x2xf32>) -> (tensor<f32>, tensor<4x2xf32>)
// CHECK:       func.func public @main(%arg0: tensor<4x2xf32>, %arg1: tensor<8x4xf32>, %arg2: tensor<f32>)
// CHECK:         %[[LRB:.*]] = stablehlo.broadcast_in_dim %arg2
// CHECK:         %[[S0:.*]] = stablehlo.slice %arg1 [0:4, 0:4]
// CHECK:         %[[S1:.*]] = stablehlo.slice %arg1 [4:8, 0:4]
// CHECK:         call @microbatch(%arg0, %[[S0]],
// CHECK:         call @microbatch(%arg0, %[[S1]],
// CHECK:         stablehlo.subtract %arg0,

// The options are checked when the pipeline is parsed.
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2 state-args=1 batch-args=1})' 2>&1 | filecheck %s --check-prefix=BOTH
// BOTH: <pass-pipeline>:1:16: error: invalid options for alpa-gradient-accumulation: argument 1 is in both batch-args and state-args
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2 state-args=0,0})' 2>&1 | filecheck %s --check-prefix=TWICE
// TWICE: <pass-pipeline>:1:16: error: invalid options for alpa-gradient-accumulation: state-args=0,0 names an argument twice
// An index past the arguments is known only with the module: at @main.
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2 state-args=7})' 2>&1 | filecheck %s --check-prefix=RANGE
// RANGE: gradient_accumulation_step_args.mlir:[[# @LINE + 3]]:3: error: state-args names argument 7, but @main has 3 arguments

module @no_donation {
  func.func public @main(%w: tensor<4x2xf32>, %x: tensor<8x4xf32>, %lr: tensor<f32>) -> (tensor<4x2xf32>, tensor<f32>) {
    %y = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4x2xf32>) -> tensor<8x2xf32>
    %sq = stablehlo.multiply %y, %y : tensor<8x2xf32>
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %sum = stablehlo.reduce(%sq init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x2xf32>, tensor<f32>) -> tensor<f32>
    %n = stablehlo.constant dense<16.0> : tensor<f32>
    %loss = stablehlo.divide %sum, %n : tensor<f32>
    %two = stablehlo.constant dense<0.125> : tensor<8x2xf32>
    %dy = stablehlo.multiply %y, %two : tensor<8x2xf32>
    %g = stablehlo.dot_general %x, %dy, contracting_dims = [0] x [0] : (tensor<8x4xf32>, tensor<8x2xf32>) -> tensor<4x2xf32>
    %lrb = stablehlo.broadcast_in_dim %lr, dims = [] : (tensor<f32>) -> tensor<4x2xf32>
    %step = stablehlo.multiply %lrb, %g : tensor<4x2xf32>
    %w2 = stablehlo.subtract %w, %step : tensor<4x2xf32>
    return %w2, %loss : tensor<4x2xf32>, tensor<f32>
  }
}
