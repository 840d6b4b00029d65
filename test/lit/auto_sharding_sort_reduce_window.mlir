// alpa-auto-sharding on sort and reduce_window: the sorted dim and the windowed (or
// padded) dims must stay whole; the others keep the operand's split.
//
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' | filecheck %s

// Sorting each row (dim 1): the rows are split.
// CHECK-LABEL: module @sort_rows
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<64x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>})
// CHECK:       %[[S:.*]] = "stablehlo.sort"(%arg0)
// CHECK:       sdy.sharding_constraint %[[S]] <@mesh, [{"x", "y"}, {}]> : tensor<64x64xf32>
module @sort_rows {
  func.func @main(%a: tensor<64x64xf32>) -> tensor<64x64xf32> {
    %0 = "stablehlo.sort"(%a) <{dimension = 1 : i64, is_stable = true}> ({
    ^bb0(%l: tensor<f32>, %r: tensor<f32>):
      %c = stablehlo.compare LT, %l, %r, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
      stablehlo.return %c : tensor<i1>
    }) : (tensor<64x64xf32>) -> tensor<64x64xf32>
    return %0 : tensor<64x64xf32>
  }
}

// -----

// 2x2 max pooling, NHWC with 3 channels: only the batch can be split.
// CHECK-LABEL: module @max_pool
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x8x8x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}, {}, {}]>}
// CHECK-SAME:    -> (tensor<64x4x4x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}, {}, {}]>})
// CHECK:       %[[P:.*]] = "stablehlo.reduce_window"(%arg0
// CHECK:       sdy.sharding_constraint %[[P]] <@mesh, [{"x", "y"}, {}, {}, {}]> : tensor<64x4x4x3xf32>
module @max_pool {
  func.func @main(%x: tensor<64x8x8x3xf32>) -> tensor<64x4x4x3xf32> {
    %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
    %0 = "stablehlo.reduce_window"(%x, %ninf) <{window_dimensions = array<i64: 1, 2, 2, 1>, window_strides = array<i64: 1, 2, 2, 1>}> ({
    ^bb0(%a: tensor<f32>, %b: tensor<f32>):
      %m = stablehlo.maximum %a, %b : tensor<f32>
      stablehlo.return %m : tensor<f32>
    }) : (tensor<64x8x8x3xf32>, tensor<f32>) -> tensor<64x4x4x3xf32>
    return %0 : tensor<64x4x4x3xf32>
  }
}

// -----

// A cumulative sum down the columns (window 64 over dim 0, padded): dim 1 is split.
// CHECK-LABEL: module @cumsum
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    -> (tensor<64x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>})
// CHECK:       %[[C:.*]] = "stablehlo.reduce_window"(%arg0
// CHECK:       sdy.sharding_constraint %[[C]] <@mesh, [{}, {"x", "y"}]> : tensor<64x64xf32>
module @cumsum {
  func.func @main(%x: tensor<64x64xf32>) -> tensor<64x64xf32> {
    %z = stablehlo.constant dense<0.0> : tensor<f32>
    %0 = "stablehlo.reduce_window"(%x, %z) <{padding = dense<[[63, 0], [0, 0]]> : tensor<2x2xi64>, window_dimensions = array<i64: 64, 1>}> ({
    ^bb0(%a: tensor<f32>, %b: tensor<f32>):
      %s = stablehlo.add %a, %b : tensor<f32>
      stablehlo.return %s : tensor<f32>
    }) : (tensor<64x64xf32>, tensor<f32>) -> tensor<64x64xf32>
    return %0 : tensor<64x64xf32>
  }
}
