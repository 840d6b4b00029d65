// alpa-auto-sharding on convolution: like a matmul, each mesh axis splits the batch, the
// output features (with the kernel's output-feature dim) or the input features (a
// contraction: an all-reduce); spatial dims stay whole.
//
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' | filecheck %s

// A large batch (64) and a tiny kernel: data parallel over all 8 devices.
// CHECK-LABEL: module @conv_data_parallel
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x8x8x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}, {}, {}]>}
// CHECK-SAME:    %arg1: tensor<3x3x4x8xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}, {}, {}]>}
// CHECK-SAME:    -> (tensor<64x8x8x8xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}, {}, {}]>})
// CHECK:       %[[C:.*]] = stablehlo.convolution(%arg0, %arg1)
// CHECK-NEXT:  sdy.sharding_constraint %[[C]] <@mesh, [{"x", "y"}, {}, {}, {}]> : tensor<64x8x8x8xf32>
module @conv_data_parallel {
  func.func @main(%x: tensor<64x8x8x4xf32>, %k: tensor<3x3x4x8xf32>) -> tensor<64x8x8x8xf32> {
    %0 = stablehlo.convolution(%x, %k) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {stride = [1, 1], pad = [[1, 1], [1, 1]]} {batch_group_count = 1 : i64, feature_group_count = 1 : i64} : (tensor<64x8x8x4xf32>, tensor<3x3x4x8xf32>) -> tensor<64x8x8x8xf32>
    return %0 : tensor<64x8x8x8xf32>
  }
}

// -----

// The same in NCHW / OIHW: the batch is still dim 0 of the input and the output.
// CHECK-LABEL: module @conv_nchw
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x4x8x8xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}, {}, {}]>}
// CHECK-SAME:    %arg1: tensor<8x4x3x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}, {}, {}]>}
// CHECK-SAME:    -> (tensor<64x8x8x8xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}, {}, {}]>})
module @conv_nchw {
  func.func @main(%x: tensor<64x4x8x8xf32>, %k: tensor<8x4x3x3xf32>) -> tensor<64x8x8x8xf32> {
    %0 = stablehlo.convolution(%x, %k) dim_numbers = [b, f, 0, 1]x[o, i, 0, 1]->[b, f, 0, 1], window = {stride = [1, 1], pad = [[1, 1], [1, 1]]} {batch_group_count = 1 : i64, feature_group_count = 1 : i64} : (tensor<64x4x8x8xf32>, tensor<8x4x3x3xf32>) -> tensor<64x8x8x8xf32>
    return %0 : tensor<64x8x8x8xf32>
  }
}

// -----

// Batch 1 and a large 1x1 kernel (64 -> 512 features): the output features are split
// with the kernel (no communication); splitting the input features would all-reduce.
// CHECK-LABEL: module @conv_out_features
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<1x8x8x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}, {}, {}]>}
// CHECK-SAME:    %arg1: tensor<1x1x64x512xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}, {}, {"x", "y"}]>}
// CHECK-SAME:    -> (tensor<1x8x8x512xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}, {}, {"x", "y"}]>})
// CHECK:       %[[C:.*]] = stablehlo.convolution(%arg0, %arg1)
// CHECK-NEXT:  sdy.sharding_constraint %[[C]] <@mesh, [{}, {}, {}, {"x", "y"}]> : tensor<1x8x8x512xf32>
module @conv_out_features {
  func.func @main(%x: tensor<1x8x8x64xf32>, %k: tensor<1x1x64x512xf32>) -> tensor<1x8x8x512xf32> {
    %0 = stablehlo.convolution(%x, %k) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {stride = [1, 1], pad = [[0, 0], [0, 0]]} {batch_group_count = 1 : i64, feature_group_count = 1 : i64} : (tensor<1x8x8x64xf32>, tensor<1x1x64x512xf32>) -> tensor<1x8x8x512xf32>
    return %0 : tensor<1x8x8x512xf32>
  }
}

// -----

// Batch 2 only divides by "x": the batch takes "x" and the output features "y" (the
// 512 KiB input is then replicated 4 ways rather than 8).
// CHECK-LABEL: module @conv_batch_and_features
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<2x32x32x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}, {}, {}]>}
// CHECK-SAME:    %arg1: tensor<1x1x64x512xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}, {}, {"y"}]>}
// CHECK-SAME:    -> (tensor<2x32x32x512xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}, {}, {"y"}]>})
// CHECK:       %[[C:.*]] = stablehlo.convolution(%arg0, %arg1)
// CHECK-NEXT:  sdy.sharding_constraint %[[C]] <@mesh, [{"x"}, {}, {}, {"y"}]> : tensor<2x32x32x512xf32>
module @conv_batch_and_features {
  func.func @main(%x: tensor<2x32x32x64xf32>, %k: tensor<1x1x64x512xf32>) -> tensor<2x32x32x512xf32> {
    %0 = stablehlo.convolution(%x, %k) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f], window = {stride = [1, 1], pad = [[0, 0], [0, 0]]} {batch_group_count = 1 : i64, feature_group_count = 1 : i64} : (tensor<2x32x32x64xf32>, tensor<1x1x64x512xf32>) -> tensor<2x32x32x512xf32>
    return %0 : tensor<2x32x32x512xf32>
  }
}
