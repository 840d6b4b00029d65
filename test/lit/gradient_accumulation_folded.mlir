// alpa-gradient-accumulation when a reshape folds the batch behind another dim, as MoE
// routing does with its [top-k choice, tokens] layout: the batch is followed through the
// reshape's factors, so the folded value shrinks by M in the microbatch function too.
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2 allow-per-microbatch-statistics=true})' 2>&1 | filecheck %s
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2 allow-per-microbatch-statistics=true})' -o /dev/null 2>&1 | filecheck %s --check-prefix=WARN

// Only per-example work on the folded value: the split is exact, no warning.
// CHECK-LABEL: module @folded
// CHECK:       func.func private @microbatch(%arg0: tensor<2x3xf32>, %arg1: tensor<3x3xf32>,
// CHECK:         stablehlo.broadcast_in_dim %arg0, dims = [1, 2] : (tensor<2x3xf32>) -> tensor<2x2x3xf32>
// CHECK:         stablehlo.reshape {{.*}} : (tensor<2x2x3xf32>) -> tensor<4x3xf32>
// CHECK:         stablehlo.tanh {{.*}} : tensor<4x3xf32>
// CHECK:       func.func public @main
// CHECK-COUNT-2: call @microbatch
module @folded {
  func.func public @main(%w: tensor<3x3xf32>, %x: tensor<4x3xf32>) -> (tensor<3x3xf32>, tensor<f32>) {
    %b = stablehlo.broadcast_in_dim %x, dims = [1, 2] : (tensor<4x3xf32>) -> tensor<2x4x3xf32>
    %r = stablehlo.reshape %b : (tensor<2x4x3xf32>) -> tensor<8x3xf32>
    %t = stablehlo.tanh %r : tensor<8x3xf32>
    %g = stablehlo.dot_general %t, %r, contracting_dims = [0] x [0] : (tensor<8x3xf32>, tensor<8x3xf32>) -> tensor<3x3xf32>
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %loss = stablehlo.reduce(%t init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x3xf32>, tensor<f32>) -> tensor<f32>
    %w2 = stablehlo.subtract %w, %g : tensor<3x3xf32>
    return %w2, %loss : tensor<3x3xf32>, tensor<f32>
  }
}

// -----

// A cumulative sum over the folded tokens (MoE capacity positions): accepted with
// allow-per-microbatch-statistics=true, each microbatch counting its own tokens: the
// window and padding shrink with the dim.
// WARN: warning: 1 cumulative reductions along the batch are computed per microbatch (allow-per-microbatch-statistics=true)
// CHECK-LABEL: module @cumsum
// CHECK:       func.func private @microbatch(
// CHECK:         stablehlo.reduce_window
// CHECK-SAME:      padding = dense<{{\[\[}}3, 0], [0, 0]]>
// CHECK-SAME:      window_dimensions = array<i64: 4, 1>
// CHECK:         }) : (tensor<4x3xf32>, tensor<f32>) -> tensor<4x3xf32>
module @cumsum {
  func.func public @main(%w: tensor<3x3xf32>, %x: tensor<4x3xf32>) -> (tensor<3x3xf32>, tensor<f32>) {
    %b = stablehlo.broadcast_in_dim %x, dims = [1, 2] : (tensor<4x3xf32>) -> tensor<2x4x3xf32>
    %r = stablehlo.reshape %b : (tensor<2x4x3xf32>) -> tensor<8x3xf32>
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %c = "stablehlo.reduce_window"(%r, %zero) <{padding = dense<[[7, 0], [0, 0]]> : tensor<2x2xi64>, window_dimensions = array<i64: 8, 1>}> ({
    ^bb0(%a: tensor<f32>, %e: tensor<f32>):
      %s = stablehlo.add %a, %e : tensor<f32>
      stablehlo.return %s : tensor<f32>
    }) : (tensor<8x3xf32>, tensor<f32>) -> tensor<8x3xf32>
    %g = stablehlo.dot_general %c, %r, contracting_dims = [0] x [0] : (tensor<8x3xf32>, tensor<8x3xf32>) -> tensor<3x3xf32>
    %loss = stablehlo.reduce(%c init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x3xf32>, tensor<f32>) -> tensor<f32>
    %w2 = stablehlo.subtract %w, %g : tensor<3x3xf32>
    return %w2, %loss : tensor<3x3xf32>, tensor<f32>
  }
}
