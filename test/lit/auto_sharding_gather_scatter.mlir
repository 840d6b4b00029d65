// alpa-auto-sharding on gather and scatter (embedding lookups and their gradients).
// gather: a mesh axis splits the indices' batch dims with the matching result dims (the
// table stays whole), or a table dim taken whole by the slice with the matching result
// offset dim (the hidden split of an embedding). scatter: an axis splits an update window
// dim together with the operand and result dim it covers.
//
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' | filecheck %s

// Many indices (8192, 32 KiB) into a small table (4 KiB): the indices and the result are
// split along the batch; the table is replicated.
// CHECK-LABEL: module @gather_batch_split_indices
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// CHECK-SAME:    %arg1: tensor<8192x1xi32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>})
// CHECK:       %[[G:.*]] = "stablehlo.gather"(%arg0, %arg1)
// CHECK-NEXT:  sdy.sharding_constraint %[[G]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
module @gather_batch_split_indices {
  func.func @main(%table: tensor<64x16xf32>, %ids: tensor<8192x1xi32>) -> tensor<8192x16xf32> {
    %0 = "stablehlo.gather"(%table, %ids) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 16>}> : (tensor<64x16xf32>, tensor<8192x1xi32>) -> tensor<8192x16xf32>
    return %0 : tensor<8192x16xf32>
  }
}

// -----

// Few indices into a 2 MiB table: the table's hidden dim (taken whole by each slice) is
// split with the result's offset dim; the looked-up vocabulary dim stays whole.
// CHECK-LABEL: module @gather_hidden_split_table
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<1024x512xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    %arg1: tensor<8x1xi32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// CHECK-SAME:    -> (tensor<8x512xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>})
// CHECK:       %[[G:.*]] = "stablehlo.gather"(%arg0, %arg1)
// CHECK-NEXT:  sdy.sharding_constraint %[[G]] <@mesh, [{}, {"x", "y"}]> : tensor<8x512xf32>
module @gather_hidden_split_table {
  func.func @main(%table: tensor<1024x512xf32>, %ids: tensor<8x1xi32>) -> tensor<8x512xf32> {
    %0 = "stablehlo.gather"(%table, %ids) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 512>}> : (tensor<1024x512xf32>, tensor<8x1xi32>) -> tensor<8x512xf32>
    return %0 : tensor<8x512xf32>
  }
}

// -----

// A token embedding as jax exports it (indices [batch, seq, 1], offset dim last): the
// table (8 KiB) outweighs the indices (512 B), so the hidden dim is split.
// CHECK-LABEL: module @gather_embedding_3d
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x32xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    %arg1: tensor<8x16x1xi32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}, {}]>}
// CHECK-SAME:    -> (tensor<8x16x32xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}, {"x", "y"}]>})
// CHECK:       %[[G:.*]] = "stablehlo.gather"(%arg0, %arg1)
// CHECK-NEXT:  sdy.sharding_constraint %[[G]] <@mesh, [{}, {}, {"x", "y"}]> : tensor<8x16x32xf32>
module @gather_embedding_3d {
  func.func @main(%table: tensor<64x32xf32>, %ids: tensor<8x16x1xi32>) -> tensor<8x16x32xf32> {
    %0 = "stablehlo.gather"(%table, %ids) <{dimension_numbers = #stablehlo.gather<offset_dims = [2], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 1, 32>}> : (tensor<64x32xf32>, tensor<8x16x1xi32>) -> tensor<8x16x32xf32>
    return %0 : tensor<8x16x32xf32>
  }
}

// -----

// The embedding gradient: rows of updates added into a 2 MiB table. The window dim
// (hidden, 512) is split over all 8 devices in the table, the updates and the result,
// with no communication.
// CHECK-LABEL: module @scatter_hidden_split
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<1024x512xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    %arg1: tensor<8x1xi32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// CHECK-SAME:    %arg2: tensor<8x512xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    -> (tensor<1024x512xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>})
// CHECK:       %[[S:.*]] = "stablehlo.scatter"(%arg0, %arg1, %arg2)
// CHECK:       sdy.sharding_constraint %[[S]] <@mesh, [{}, {"x", "y"}]> : tensor<1024x512xf32>
module @scatter_hidden_split {
  func.func @main(%table: tensor<1024x512xf32>, %ids: tensor<8x1xi32>, %upd: tensor<8x512xf32>) -> tensor<1024x512xf32> {
    %0 = "stablehlo.scatter"(%table, %ids, %upd) <{indices_are_sorted = false, scatter_dimension_numbers = #stablehlo.scatter<update_window_dims = [1], inserted_window_dims = [0], scatter_dims_to_operand_dims = [0], index_vector_dim = 1>, unique_indices = false}> ({
    ^bb0(%a: tensor<f32>, %b: tensor<f32>):
      %s = stablehlo.add %a, %b : tensor<f32>
      stablehlo.return %s : tensor<f32>
    }) : (tensor<1024x512xf32>, tensor<8x1xi32>, tensor<8x512xf32>) -> tensor<1024x512xf32>
    return %0 : tensor<1024x512xf32>
  }
}
