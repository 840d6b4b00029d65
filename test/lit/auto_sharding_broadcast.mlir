// alpa-auto-sharding on broadcast_in_dim: a broadcast follows its operand, the split
// moving to the result dim it maps to; dims that a broadcast creates or expands from size
// 1 are whole. A broadcast scalar (like a constant or iota) is free in any layout: it is
// no decision of the plan and gets no constraint; its users decide.
//
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' | filecheck %s

// CHECK-LABEL: module @vector_to_rows
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}]>}
// CHECK-SAME:    -> (tensor<1024x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>})
// CHECK:       %[[B:.*]] = stablehlo.broadcast_in_dim %arg0, dims = [0]
// CHECK-NEXT:  sdy.sharding_constraint %[[B]] <@mesh, [{"x", "y"}, {}]> : tensor<1024x16xf32>
module @vector_to_rows {
  func.func @main(%v: tensor<1024xf32>) -> tensor<1024x16xf32> {
    %0 = stablehlo.broadcast_in_dim %v, dims = [0] : (tensor<1024xf32>) -> tensor<1024x16xf32>
    return %0 : tensor<1024x16xf32>
  }
}

// -----

// Dim 0 expands 1 -> 8; dim 1 (16) carries the split.
// CHECK-LABEL: module @expand_size_one_dim
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<1x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    -> (tensor<8x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>})
// CHECK:       %[[B:.*]] = stablehlo.broadcast_in_dim %arg0, dims = [0, 1]
// CHECK-NEXT:  sdy.sharding_constraint %[[B]] <@mesh, [{}, {"x", "y"}]> : tensor<8x16xf32>
module @expand_size_one_dim {
  func.func @main(%v: tensor<1x16xf32>) -> tensor<8x16xf32> {
    %0 = stablehlo.broadcast_in_dim %v, dims = [0, 1] : (tensor<1x16xf32>) -> tensor<8x16xf32>
    return %0 : tensor<8x16xf32>
  }
}

// -----

// A broadcast scalar multiplied into a split tensor: the product follows the tensor.
// CHECK-LABEL: module @scalar
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<f32> {sdy.sharding = #sdy.sharding<@mesh, []>}
// CHECK-SAME:    %arg1: tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>})
// CHECK:       %[[B:.*]] = stablehlo.broadcast_in_dim %arg0, dims = []
// CHECK-NOT:   sdy.sharding_constraint %[[B]]
// CHECK:       %[[M:.*]] = stablehlo.multiply %[[B]], %arg1
// CHECK-NEXT:  sdy.sharding_constraint %[[M]] <@mesh, [{"x", "y"}, {}]> : tensor<64x3xf32>
module @scalar {
  func.func @main(%s: tensor<f32>, %a: tensor<64x3xf32>) -> tensor<64x3xf32> {
    %0 = stablehlo.broadcast_in_dim %s, dims = [] : (tensor<f32>) -> tensor<64x3xf32>
    %1 = stablehlo.multiply %0, %a : tensor<64x3xf32>
    return %1 : tensor<64x3xf32>
  }
}

// -----

// A bias added to a data-parallel layer: the sum follows the matmul (batch split), not
// the broadcast bias; the bias vector is replicated (splitting it along the features
// would put its split on the wrong dim of the sum).
// CHECK-LABEL: module @bias
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    %arg1: tensor<16x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// CHECK-SAME:    %arg2: tensor<64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}]>}
// CHECK-SAME:    -> (tensor<8192x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>})
// CHECK:       %[[ADD:.*]] = stablehlo.add
// CHECK-NEXT:  sdy.sharding_constraint %[[ADD]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x64xf32>
module @bias {
  func.func @main(%x: tensor<8192x16xf32>, %w: tensor<16x64xf32>, %b: tensor<64xf32>) -> tensor<8192x64xf32> {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8192x16xf32>, tensor<16x64xf32>) -> tensor<8192x64xf32>
    %bb = stablehlo.broadcast_in_dim %b, dims = [1] : (tensor<64xf32>) -> tensor<8192x64xf32>
    %0 = stablehlo.add %bb, %h : tensor<8192x64xf32>
    return %0 : tensor<8192x64xf32>
  }
}
