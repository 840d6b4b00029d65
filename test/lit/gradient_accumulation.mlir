// alpa-gradient-accumulation on a hand-written least-squares step: w' = w - 0.1 * X^T (XW - Y) / 4,
// loss = sum((XW - Y)^2) / 8, with the batch (8 examples) in 4 microbatches.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=4})' | filecheck %s
// The rewritten step runs (numerical equality: test/unit/test_gradient_accumulation.py).
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=4})' -o %t.mlir
// RUN: alpa-run %t.mlir | filecheck %s --check-prefix=RUNS

// The per-microbatch work: batch dims 8 -> 2, the cotangent constant shrunk with them,
// the two sums (the loss and the weight gradient) added into accumulators.
// CHECK-LABEL: func.func private @microbatch(%arg0: tensor<4x2xf32>, %arg1: tensor<2x4xf32>, %arg2: tensor<2x2xf32>, %arg3: tensor<f32>, %arg4: tensor<4x2xf32>) -> (tensor<f32>, tensor<4x2xf32>)
// CHECK:       stablehlo.constant dense<2.500000e-01> : tensor<2x2xf32>
// CHECK:       stablehlo.add %arg3,
// CHECK:       stablehlo.add %arg4,
// The step: slices, four calls threading the accumulators, the update once.
// CHECK-LABEL: func.func @main(%arg0: tensor<4x2xf32> {tf.aliasing_output = 0 : i32}, %arg1: tensor<8x4xf32>, %arg2: tensor<8x2xf32>) -> (tensor<4x2xf32>, tensor<f32>) attributes {alpa.num_microbatches = 4 : i64}
// CHECK:       stablehlo.constant {alpa.kind = "accumulators"} dense<0.000000e+00> : tensor<f32>
// CHECK-COUNT-4: stablehlo.slice %arg1
// CHECK:       %[[C0:.*]]:2 = call @microbatch(%arg0, {{.*}}) {alpa.microbatch = 0 : i64}
// CHECK-NEXT:  %[[C1:.*]]:2 = call @microbatch(%arg0, {{.*}}, %[[C0]]#0, %[[C0]]#1) {alpa.microbatch = 1 : i64}
// CHECK-NEXT:  %[[C2:.*]]:2 = call @microbatch(%arg0, {{.*}}, %[[C1]]#0, %[[C1]]#1) {alpa.microbatch = 2 : i64}
// CHECK-NEXT:  %[[C3:.*]]:2 = call @microbatch(%arg0, {{.*}}, %[[C2]]#0, %[[C2]]#1) {alpa.microbatch = 3 : i64}
// CHECK:       stablehlo.multiply %[[C3]]#0,
// CHECK:       stablehlo.subtract %arg0,
func.func @main(%w: tensor<4x2xf32> {tf.aliasing_output = 0 : i32}, %x: tensor<8x4xf32>, %y: tensor<8x2xf32>)
    -> (tensor<4x2xf32>, tensor<f32>) {
  %p = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4x2xf32>) -> tensor<8x2xf32>
  %d = stablehlo.subtract %p, %y : tensor<8x2xf32>
  %sq = stablehlo.multiply %d, %d : tensor<8x2xf32>
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  %s = stablehlo.reduce(%sq init: %z) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x2xf32>, tensor<f32>) -> tensor<f32>
  %n = stablehlo.constant dense<0.125> : tensor<f32>
  %loss = stablehlo.multiply %s, %n : tensor<f32>
  %c = stablehlo.constant dense<0.25> : tensor<8x2xf32>
  %dd = stablehlo.multiply %d, %c : tensor<8x2xf32>
  %g = stablehlo.dot_general %x, %dd, contracting_dims = [0] x [0] : (tensor<8x4xf32>, tensor<8x2xf32>) -> tensor<4x2xf32>
  %lr = stablehlo.constant dense<0.1> : tensor<4x2xf32>
  %u = stablehlo.multiply %g, %lr : tensor<4x2xf32>
  %w2 = stablehlo.subtract %w, %u : tensor<4x2xf32>
  return %w2, %loss : tensor<4x2xf32>, tensor<f32>
}

// RUNS: run: 1 x
