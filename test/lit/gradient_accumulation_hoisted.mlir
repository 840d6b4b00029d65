// alpa-gradient-accumulation on a step whose dropout-like mask is drawn from a key
// argument and an iota over the batch (as jax.random's counters are): the mask does not
// read the batch but differs from example to example, so it is computed once in @main for
// the whole batch and each microbatch gets its slice, as it gets its slice of x. (Computed
// inside the microbatch function, each microbatch would draw the first microbatch's mask.)

// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2})' | filecheck %s
// CHECK-LABEL: module @dropout_mask
// CHECK:       func.func private @microbatch(%arg0: tensor<4x2xf32>, %arg1: tensor<4x4xf32>, %arg2: tensor<4x2xi1>,
// CHECK-NOT:     stablehlo.iota
// CHECK:         stablehlo.select %arg2,
// CHECK:       func.func public @main(%arg0: tensor<4x2xf32>, %arg1: tensor<8x4xf32>, %arg2: tensor<ui32>)
// CHECK:         stablehlo.iota dim = 0 : tensor<8x2xui32>
// CHECK:         %[[MASK:.*]] = stablehlo.compare  LT, {{.*}} : (tensor<8x2xui32>, tensor<8x2xui32>) -> tensor<8x2xi1>
// CHECK-DAG:     %[[X0:.*]] = stablehlo.slice %arg1 [0:4, 0:4]
// CHECK-DAG:     %[[M0:.*]] = stablehlo.slice %[[MASK]] [0:4, 0:2]
// CHECK-DAG:     %[[M1:.*]] = stablehlo.slice %[[MASK]] [4:8, 0:2]
// CHECK:         call @microbatch(%arg0, %[[X0]], %[[M0]],
// CHECK:         call @microbatch(%arg0, %{{.*}}, %[[M1]],

module @dropout_mask {
  func.func public @main(%w: tensor<4x2xf32>, %x: tensor<8x4xf32>, %key: tensor<ui32>) -> (tensor<4x2xf32>, tensor<f32>) {
    %i = stablehlo.iota dim = 0 : tensor<8x2xui32>
    %k = stablehlo.broadcast_in_dim %key, dims = [] : (tensor<ui32>) -> tensor<8x2xui32>
    %bits = stablehlo.xor %i, %k : tensor<8x2xui32>
    %half = stablehlo.constant dense<4> : tensor<8x2xui32>
    %keep = stablehlo.compare LT, %bits, %half : (tensor<8x2xui32>, tensor<8x2xui32>) -> tensor<8x2xi1>
    %y = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4x2xf32>) -> tensor<8x2xf32>
    %zeros = stablehlo.constant dense<0.0> : tensor<8x2xf32>
    %yd = stablehlo.select %keep, %y, %zeros : tensor<8x2xi1>, tensor<8x2xf32>
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %loss = stablehlo.reduce(%yd init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x2xf32>, tensor<f32>) -> tensor<f32>
    %ones = stablehlo.constant dense<1.0> : tensor<8x2xf32>
    %dy = stablehlo.select %keep, %ones, %zeros : tensor<8x2xi1>, tensor<8x2xf32>
    %g = stablehlo.dot_general %x, %dy, contracting_dims = [0] x [0] : (tensor<8x4xf32>, tensor<8x2xf32>) -> tensor<4x2xf32>
    %w2 = stablehlo.subtract %w, %g : tensor<4x2xf32>
    return %w2, %loss : tensor<4x2xf32>, tensor<f32>
  }
}
