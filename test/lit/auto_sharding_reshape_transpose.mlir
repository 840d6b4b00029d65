// alpa-auto-sharding on transpose and reshape: a transpose permutes its operand's layout;
// a reshape moves each split to the major dim of the matching dim group when the size
// still divides (splits that cannot follow are dropped, so a free input avoids them).
//
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' | filecheck %s

// CHECK-LABEL: module @transpose_2d
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<3x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>})
// CHECK:       %[[T:.*]] = stablehlo.transpose %arg0, dims = [1, 0]
// CHECK-NEXT:  sdy.sharding_constraint %[[T]] <@mesh, [{}, {"x", "y"}]> : tensor<3x64xf32>
module @transpose_2d {
  func.func @main(%a: tensor<64x3xf32>) -> tensor<3x64xf32> {
    %0 = stablehlo.transpose %a, dims = [1, 0] : (tensor<64x3xf32>) -> tensor<3x64xf32>
    return %0 : tensor<3x64xf32>
  }
}

// -----

// 6x4x3: "x" splits dim 0, "y" dim 1; the permutation [2, 0, 1] carries both along.
// CHECK-LABEL: module @transpose_3d
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<6x4x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {"y"}, {}]>}
// CHECK-SAME:    -> (tensor<3x6x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x"}, {"y"}]>})
// CHECK:       %[[T:.*]] = stablehlo.transpose %arg0, dims = [2, 0, 1]
// CHECK-NEXT:  sdy.sharding_constraint %[[T]] <@mesh, [{}, {"x"}, {"y"}]> : tensor<3x6x4xf32>
module @transpose_3d {
  func.func @main(%a: tensor<6x4x3xf32>) -> tensor<3x6x4xf32> {
    %0 = stablehlo.transpose %a, dims = [2, 0, 1] : (tensor<6x4x3xf32>) -> tensor<3x6x4xf32>
    return %0 : tensor<3x6x4xf32>
  }
}

// -----

// Splitting dim 64 into 8x8: the split goes to the major part (8 divides by 8).
// CHECK-LABEL: module @reshape_split_dim
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<8x8x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}, {}]>})
// CHECK:       %[[R:.*]] = stablehlo.reshape %arg0
// CHECK-NEXT:  sdy.sharding_constraint %[[R]] <@mesh, [{"x", "y"}, {}, {}]> : tensor<8x8x3xf32>
module @reshape_split_dim {
  func.func @main(%a: tensor<64x3xf32>) -> tensor<8x8x3xf32> {
    %0 = stablehlo.reshape %a : (tensor<64x3xf32>) -> tensor<8x8x3xf32>
    return %0 : tensor<8x8x3xf32>
  }
}

// -----

// 64 -> 4x16: the major part (4) only divides by "y", so the input takes "y" alone
// ({"x", "y"} would have to be gathered).
// CHECK-LABEL: module @reshape_split_small_major
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"y"}, {}]>}
// CHECK-SAME:    -> (tensor<4x16x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"y"}, {}, {}]>})
// CHECK:       %[[R:.*]] = stablehlo.reshape %arg0
// CHECK-NEXT:  sdy.sharding_constraint %[[R]] <@mesh, [{"y"}, {}, {}]> : tensor<4x16x3xf32>
module @reshape_split_small_major {
  func.func @main(%a: tensor<64x3xf32>) -> tensor<4x16x3xf32> {
    %0 = stablehlo.reshape %a : (tensor<64x3xf32>) -> tensor<4x16x3xf32>
    return %0 : tensor<4x16x3xf32>
  }
}

// -----

// Merging 6x4 into 24: only a split of the major dim (6, by "x") survives; the minor
// dim stays whole rather than being gathered.
// CHECK-LABEL: module @reshape_merge_dims
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<6x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}
// CHECK-SAME:    -> (tensor<24xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}]>})
// CHECK:       %[[R:.*]] = stablehlo.reshape %arg0
// CHECK-NEXT:  sdy.sharding_constraint %[[R]] <@mesh, [{"x"}]> : tensor<24xf32>
module @reshape_merge_dims {
  func.func @main(%a: tensor<6x4xf32>) -> tensor<24xf32> {
    %0 = stablehlo.reshape %a : (tensor<6x4xf32>) -> tensor<24xf32>
    return %0 : tensor<24xf32>
  }
}

// -----

// Attention heads under Megatron: the column-split hidden dim (1024 over all 8 devices)
// becomes the split heads dim (8 heads of 128), and the transpose moves heads first.
// CHECK-LABEL: module @megatron_heads
// CHECK:       func.func @main(
// CHECK-SAME:    %arg1: tensor<256x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    -> (tensor<8x8x128xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}, {}]>})
// CHECK:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NEXT:  %[[H_C:.*]] = sdy.sharding_constraint %[[H]] <@mesh, [{}, {"x", "y"}]> : tensor<8x1024xf32>
// CHECK-NEXT:  %[[R:.*]] = stablehlo.reshape %[[H_C]]
// CHECK-NEXT:  %[[R_C:.*]] = sdy.sharding_constraint %[[R]] <@mesh, [{}, {"x", "y"}, {}]> : tensor<8x8x128xf32>
// CHECK-NEXT:  %[[T:.*]] = stablehlo.transpose %[[R_C]], dims = [1, 0, 2]
// CHECK-NEXT:  sdy.sharding_constraint %[[T]] <@mesh, [{"x", "y"}, {}, {}]> : tensor<8x8x128xf32>
module @megatron_heads {
  func.func @main(%x: tensor<8x256xf32>, %w: tensor<256x1024xf32>) -> tensor<8x8x128xf32> {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x256xf32>, tensor<256x1024xf32>) -> tensor<8x1024xf32>
    %r = stablehlo.reshape %h : (tensor<8x1024xf32>) -> tensor<8x8x128xf32>
    %t = stablehlo.transpose %r, dims = [1, 0, 2] : (tensor<8x8x128xf32>) -> tensor<8x8x128xf32>
    return %t : tensor<8x8x128xf32>
  }
}

// -----

// A data-parallel activation through a split into heads, a transpose, an elementwise op
// and back: the batch split (all 8 devices) rides along on whichever dim holds the batch.
// CHECK-LABEL: module @batch_through_heads
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<8192x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>})
// CHECK:       stablehlo.reshape
// CHECK-NEXT:  sdy.sharding_constraint {{.*}} <@mesh, [{"x", "y"}, {}, {}]> : tensor<8192x4x16xf32>
// CHECK-NEXT:  stablehlo.transpose
// CHECK-NEXT:  sdy.sharding_constraint {{.*}} <@mesh, [{}, {"x", "y"}, {}]> : tensor<4x8192x16xf32>
// CHECK-NEXT:  stablehlo.exponential
// CHECK-NEXT:  sdy.sharding_constraint {{.*}} <@mesh, [{}, {"x", "y"}, {}]> : tensor<4x8192x16xf32>
// CHECK-NEXT:  stablehlo.transpose
// CHECK-NEXT:  sdy.sharding_constraint {{.*}} <@mesh, [{"x", "y"}, {}, {}]> : tensor<8192x4x16xf32>
// CHECK-NEXT:  stablehlo.reshape
// CHECK-NEXT:  sdy.sharding_constraint {{.*}} <@mesh, [{"x", "y"}, {}]> : tensor<8192x64xf32>
module @batch_through_heads {
  func.func @main(%x: tensor<8192x16xf32>, %w: tensor<16x64xf32>) -> tensor<8192x64xf32> {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8192x16xf32>, tensor<16x64xf32>) -> tensor<8192x64xf32>
    %r = stablehlo.reshape %h : (tensor<8192x64xf32>) -> tensor<8192x4x16xf32>
    %t = stablehlo.transpose %r, dims = [1, 0, 2] : (tensor<8192x4x16xf32>) -> tensor<4x8192x16xf32>
    %e = stablehlo.exponential %t : tensor<4x8192x16xf32>
    %b = stablehlo.transpose %e, dims = [1, 0, 2] : (tensor<4x8192x16xf32>) -> tensor<8192x4x16xf32>
    %o = stablehlo.reshape %b : (tensor<8192x4x16xf32>) -> tensor<8192x64xf32>
    return %o : tensor<8192x64xf32>
  }
}
