// alpa-auto-sharding on slice, dynamic_slice, reverse, pad and concatenate: the dims the
// op changes (sliced, reversed, padded, concatenated) must stay whole; every other dim
// keeps its operand's split. Each input below has one such dim and one free dim of the
// same divisibility, so the plan must put the split on the free one.
//
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' | filecheck %s

// CHECK-LABEL: module @slice
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<1024x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<1024x8xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>})
// CHECK:       %[[S:.*]] = stablehlo.slice %arg0 [0:1024, 4:12]
// CHECK-NEXT:  sdy.sharding_constraint %[[S]] <@mesh, [{"x", "y"}, {}]> : tensor<1024x8xf32>
module @slice {
  func.func @main(%a: tensor<1024x16xf32>) -> tensor<1024x8xf32> {
    %0 = stablehlo.slice %a [0:1024, 4:12] : (tensor<1024x16xf32>) -> tensor<1024x8xf32>
    return %0 : tensor<1024x8xf32>
  }
}

// -----

// The start index of dim 0 is dynamic: dim 1 carries the split.
// CHECK-LABEL: module @dynamic_slice
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    %arg1: tensor<i32> {sdy.sharding = #sdy.sharding<@mesh, []>}
// CHECK-SAME:    -> (tensor<8x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>})
// CHECK:       %[[S:.*]] = stablehlo.dynamic_slice %arg0, %arg1
// CHECK-NEXT:  sdy.sharding_constraint %[[S]] <@mesh, [{}, {"x", "y"}]> : tensor<8x1024xf32>
module @dynamic_slice {
  func.func @main(%a: tensor<64x1024xf32>, %i: tensor<i32>) -> tensor<8x1024xf32> {
    %z = stablehlo.constant dense<0> : tensor<i32>
    %0 = stablehlo.dynamic_slice %a, %i, %z, sizes = [8, 1024] : (tensor<64x1024xf32>, tensor<i32>, tensor<i32>) -> tensor<8x1024xf32>
    return %0 : tensor<8x1024xf32>
  }
}

// -----

// CHECK-LABEL: module @reverse
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    -> (tensor<64x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>})
// CHECK:       %[[R:.*]] = stablehlo.reverse %arg0, dims = [0]
// CHECK-NEXT:  sdy.sharding_constraint %[[R]] <@mesh, [{}, {"x", "y"}]> : tensor<64x64xf32>
module @reverse {
  func.func @main(%a: tensor<64x64xf32>) -> tensor<64x64xf32> {
    %0 = stablehlo.reverse %a, dims = [0] : tensor<64x64xf32>
    return %0 : tensor<64x64xf32>
  }
}

// -----

// CHECK-LABEL: module @pad
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<16x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    -> (tensor<24x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>})
// CHECK:       %[[P:.*]] = stablehlo.pad %arg0, {{.*}}, low = [4, 0], high = [4, 0]
// CHECK-NEXT:  sdy.sharding_constraint %[[P]] <@mesh, [{}, {"x", "y"}]> : tensor<24x64xf32>
module @pad {
  func.func @main(%a: tensor<16x64xf32>) -> tensor<24x64xf32> {
    %z = stablehlo.constant dense<0.0> : tensor<f32>
    %0 = stablehlo.pad %a, %z, low = [4, 0], high = [4, 0], interior = [0, 0] : (tensor<16x64xf32>, tensor<f32>) -> tensor<24x64xf32>
    return %0 : tensor<24x64xf32>
  }
}

// -----

// A concatenate along dim 0 cannot be split along dim 0: both inputs split dim 1.
// CHECK-LABEL: module @concatenate
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<16x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    %arg1: tensor<16x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    -> (tensor<32x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>})
// CHECK:       %[[C:.*]] = stablehlo.concatenate %arg0, %arg1, dim = 0
// CHECK-NEXT:  sdy.sharding_constraint %[[C]] <@mesh, [{}, {"x", "y"}]> : tensor<32x1024xf32>
module @concatenate {
  func.func @main(%a: tensor<16x1024xf32>, %b: tensor<16x1024xf32>) -> tensor<32x1024xf32> {
    %0 = stablehlo.concatenate %a, %b, dim = 0 : (tensor<16x1024xf32>, tensor<16x1024xf32>) -> tensor<32x1024xf32>
    return %0 : tensor<32x1024xf32>
  }
}

// -----

// Concatenating features (dim 1) of data-parallel activations keeps the batch split.
// CHECK-LABEL: module @concatenate_features
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<8192x32xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>})
// CHECK:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NEXT:  %[[H_C:.*]] = sdy.sharding_constraint %[[H]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// CHECK-NEXT:  %[[C:.*]] = stablehlo.concatenate %[[H_C]], %arg0, dim = 1
// CHECK-NEXT:  sdy.sharding_constraint %[[C]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x32xf32>
module @concatenate_features {
  func.func @main(%x: tensor<8192x16xf32>, %w: tensor<16x16xf32>) -> tensor<8192x32xf32> {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8192x16xf32>, tensor<16x16xf32>) -> tensor<8192x16xf32>
    %0 = stablehlo.concatenate %h, %x, dim = 1 : (tensor<8192x16xf32>, tensor<8192x16xf32>) -> tensor<8192x32xf32>
    return %0 : tensor<8192x32xf32>
  }
}
