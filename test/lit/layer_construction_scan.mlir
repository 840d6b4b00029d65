// alpa-layer-construction on a step whose layers are a counted loop over stacked
// parameters (as `nn.scan` / `jax.lax.scan` export them): the loop is unrolled, each
// iteration's slice of the stacked weight is a static slice next to the dot that reads
// it, and the two iterations become the two layers, as in the unrolled model.

// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-layer-construction{layers=2})' | filecheck %s
// CHECK-LABEL: func.func public @main
// CHECK-SAME:  attributes {alpa.num_layers = 2 : i64}
// CHECK-NOT:   stablehlo.while
// CHECK:       stablehlo.slice %arg0 [0:1, 0:16, 0:16] {alpa.layer = 0 : i64, alpa.phase = "forward"}
// CHECK:       stablehlo.dot_general %arg1, {{.*}} {alpa.layer = 0 : i64, alpa.phase = "forward"}
// CHECK:       stablehlo.slice %arg0 [1:2, 0:16, 0:16] {alpa.layer = 1 : i64, alpa.phase = "forward"}
// CHECK:       stablehlo.dot_general {{.*}} {alpa.layer = 1 : i64, alpa.phase = "forward"}

module @scanned_layers {
  func.func public @main(%w: tensor<2x16x16xf32> {tf.aliasing_output = 0 : i32}, %x: tensor<8x16xf32>) -> (tensor<2x16x16xf32>, tensor<f32>) {
    %c0 = stablehlo.constant dense<0> : tensor<i32>
    %h:2 = stablehlo.while(%i = %c0, %a = %x) : tensor<i32>, tensor<8x16xf32>
      cond {
        %n = stablehlo.constant dense<2> : tensor<i32>
        %lt = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
        stablehlo.return %lt : tensor<i1>
      } do {
        %z = stablehlo.constant dense<0> : tensor<i32>
        %wi = stablehlo.dynamic_slice %w, %i, %z, %z, sizes = [1, 16, 16] : (tensor<2x16x16xf32>, tensor<i32>, tensor<i32>, tensor<i32>) -> tensor<1x16x16xf32>
        %wr = stablehlo.reshape %wi : (tensor<1x16x16xf32>) -> tensor<16x16xf32>
        %y = stablehlo.dot_general %a, %wr, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
        %t = stablehlo.tanh %y : tensor<8x16xf32>
        %one = stablehlo.constant dense<1> : tensor<i32>
        %i1 = stablehlo.add %i, %one : tensor<i32>
        stablehlo.return %i1, %t : tensor<i32>, tensor<8x16xf32>
      }
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %loss = stablehlo.reduce(%h#1 init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x16xf32>, tensor<f32>) -> tensor<f32>
    return %w, %loss : tensor<2x16x16xf32>, tensor<f32>
  }
}
