// alpa-gradient-accumulation on a step with a counted loop over per-example values (what
// `jax.lax.scan` / `nn.scan` over layers lower to): the loop is unrolled (one copy of the
// body per iteration, the counter a constant in each), so each copy runs per microbatch
// like any other op; loops that do not read the batch are left alone.

// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2})' 2>/dev/null | filecheck %s
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2})' 2>&1 >/dev/null | filecheck %s --check-prefix=ERR
// CHECK-LABEL: module @scan_over_layers
// CHECK:       func.func private @microbatch(%arg0: tensor<2x2xf32>, %arg1: tensor<4x2xf32>,
// The body's two copies, each reading its layer's slice of the stacked parameter.
// CHECK:         stablehlo.slice %arg0 [0:1, 0:2]
// CHECK:         %[[H:.*]] = stablehlo.multiply %arg1, %{{.*}} : tensor<4x2xf32>
// CHECK:         stablehlo.slice %arg0 [1:2, 0:2]
// CHECK:         stablehlo.multiply %[[H]], %{{.*}} : tensor<4x2xf32>
// CHECK-NOT:   stablehlo.while
// CHECK:       func.func public @main
// CHECK-NOT:     stablehlo.while
// CHECK:         call @microbatch(
// CHECK:         call @microbatch(

module @scan_over_layers {
  func.func public @main(%w: tensor<2x2xf32>, %x: tensor<8x2xf32>) -> (tensor<2x2xf32>, tensor<f32>) {
    %c0 = stablehlo.constant dense<0> : tensor<i32>
    %h:2 = stablehlo.while(%i = %c0, %a = %x) : tensor<i32>, tensor<8x2xf32>
      cond {
        %n = stablehlo.constant dense<2> : tensor<i32>
        %lt = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
        stablehlo.return %lt : tensor<i1>
      } do {
        %z = stablehlo.constant dense<0> : tensor<i32>
        %wi = stablehlo.dynamic_slice %w, %i, %z, sizes = [1, 2] : (tensor<2x2xf32>, tensor<i32>, tensor<i32>) -> tensor<1x2xf32>
        %wb = stablehlo.broadcast_in_dim %wi, dims = [0, 1] : (tensor<1x2xf32>) -> tensor<8x2xf32>
        %next = stablehlo.multiply %a, %wb : tensor<8x2xf32>
        %one = stablehlo.constant dense<1> : tensor<i32>
        %i1 = stablehlo.add %i, %one : tensor<i32>
        stablehlo.return %i1, %next : tensor<i32>, tensor<8x2xf32>
      }
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %loss = stablehlo.reduce(%h#1 init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x2xf32>, tensor<f32>) -> tensor<f32>
    %g = stablehlo.reduce(%h#1 init: %zero) applies stablehlo.add across dimensions = [0] : (tensor<8x2xf32>, tensor<f32>) -> tensor<2xf32>
    %gb = stablehlo.broadcast_in_dim %g, dims = [1] : (tensor<2xf32>) -> tensor<2x2xf32>
    %w2 = stablehlo.subtract %w, %gb : tensor<2x2xf32>
    return %w2, %loss : tensor<2x2xf32>, tensor<f32>
  }
}

// -----

// A loop over per-example values whose trip count is an argument cannot be unrolled.
// ERR: gradient_accumulation_loop.mlir:[[# @LINE + 4]]:12: error: alpa-gradient-accumulation: a loop over per-example values whose trip count is not a constant
module @dynamic_trip_count {
  func.func public @main(%w: tensor<2xf32>, %x: tensor<8x2xf32>, %n: tensor<i32>) -> (tensor<2xf32>, tensor<f32>) {
    %c0 = stablehlo.constant dense<0> : tensor<i32>
    %h:2 = stablehlo.while(%i = %c0, %a = %x) : tensor<i32>, tensor<8x2xf32>
      cond {
        %lt = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
        stablehlo.return %lt : tensor<i1>
      } do {
        %wb = stablehlo.broadcast_in_dim %w, dims = [1] : (tensor<2xf32>) -> tensor<8x2xf32>
        %next = stablehlo.multiply %a, %wb : tensor<8x2xf32>
        %one = stablehlo.constant dense<1> : tensor<i32>
        %i1 = stablehlo.add %i, %one : tensor<i32>
        stablehlo.return %i1, %next : tensor<i32>, tensor<8x2xf32>
      }
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %loss = stablehlo.reduce(%h#1 init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x2xf32>, tensor<f32>) -> tensor<f32>
    %g = stablehlo.reduce(%h#1 init: %zero) applies stablehlo.add across dimensions = [0] : (tensor<8x2xf32>, tensor<f32>) -> tensor<2xf32>
    %w2 = stablehlo.subtract %w, %g : tensor<2xf32>
    return %w2, %loss : tensor<2xf32>, tensor<f32>
  }
}
