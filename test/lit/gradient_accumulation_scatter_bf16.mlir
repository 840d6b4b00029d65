// alpa-gradient-accumulation on the embedding gradient of a bf16 model: the backward of
// `emb[ids]` is a scatter-add of the per-example cotangents into a bf16 zero table. It
// ends the batch as a sum, so each microbatch scatters its own ids and the tables are
// accumulated (the bf16 zero splat is recognized as a zero init like an f32 one).
// The step (jax.jit(step).lower, no donation: emb is state because its result at the same
// position is emb - 0.1 * g; ids is the batch):
//   def step(emb, ids):
//       loss, g = jax.value_and_grad(lambda e: jnp.sum(e[ids].astype(f32) ** 2) / ids.size)(emb)
//       return emb - 0.1 * g, loss

// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=2})' -o %t.mlir
// RUN: filecheck %s --input-file=%t.mlir
// CHECK:       func.func private @microbatch(%arg0: tensor<16x4xbf16>, %arg1: tensor<4xi32>, %arg2: tensor<f32>, %arg3: tensor<16x4xbf16>) -> (tensor<f32>, tensor<16x4xbf16>)
// CHECK:         %[[SC:.*]] = "stablehlo.scatter"
// CHECK:         stablehlo.add %arg3, %{{.*}} : tensor<16x4xbf16>
// CHECK:       func.func public @main(%arg0: tensor<16x4xbf16>, %arg1: tensor<8xi32>)
// CHECK:         stablehlo.slice %arg1 [0:4]
// CHECK:         stablehlo.slice %arg1 [4:8]
// CHECK-COUNT-2: call @microbatch(%arg0,
// RUN: alpa-run %t.mlir | filecheck %s --check-prefix=EXEC
// EXEC: run: 1 x

module @jit_step attributes {mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32} {
  func.func public @main(%arg0: tensor<16x4xbf16>, %arg1: tensor<8xi32>) -> (tensor<16x4xbf16> {jax.result_info = "result[0]"}, tensor<f32> {jax.result_info = "result[1]"}) {
    %c = stablehlo.constant dense<0> : tensor<i32>
    %0 = stablehlo.broadcast_in_dim %c, dims = [] : (tensor<i32>) -> tensor<8xi32>
    %1 = stablehlo.compare LT, %arg1, %0, SIGNED : (tensor<8xi32>, tensor<8xi32>) -> tensor<8xi1>
    %c_0 = stablehlo.constant dense<16> : tensor<i32>
    %2 = stablehlo.broadcast_in_dim %c_0, dims = [] : (tensor<i32>) -> tensor<8xi32>
    %3 = stablehlo.add %arg1, %2 : tensor<8xi32>
    %4 = stablehlo.select %1, %3, %arg1 : tensor<8xi1>, tensor<8xi32>
    %5 = stablehlo.broadcast_in_dim %4, dims = [0] : (tensor<8xi32>) -> tensor<8x1xi32>
    %6 = "stablehlo.gather"(%arg0, %5) <{dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, indices_are_sorted = false, slice_sizes = array<i64: 1, 4>}> : (tensor<16x4xbf16>, tensor<8x1xi32>) -> tensor<8x4xbf16>
    %7 = stablehlo.convert %6 : (tensor<8x4xbf16>) -> tensor<8x4xf32>
    %8 = stablehlo.multiply %7, %7 : tensor<8x4xf32>
    %cst = stablehlo.constant dense<0.000000e+00> : tensor<f32>
    %9 = stablehlo.reduce(%8 init: %cst) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x4xf32>, tensor<f32>) -> tensor<f32>
    %cst_1 = stablehlo.constant dense<8.000000e+00> : tensor<f32>
    %10 = stablehlo.divide %9, %cst_1 : tensor<f32>
    %cst_2 = stablehlo.constant dense<1.000000e+00> : tensor<f32>
    %cst_3 = stablehlo.constant dense<8.000000e+00> : tensor<f32>
    %11 = stablehlo.divide %cst_2, %cst_3 : tensor<f32>
    %12 = stablehlo.broadcast_in_dim %11, dims = [] : (tensor<f32>) -> tensor<8x4xf32>
    %13 = stablehlo.multiply %7, %12 : tensor<8x4xf32>
    %14 = stablehlo.multiply %12, %7 : tensor<8x4xf32>
    %15 = stablehlo.add %13, %14 : tensor<8x4xf32>
    %16 = stablehlo.convert %15 : (tensor<8x4xf32>) -> tensor<8x4xbf16>
    %cst_4 = stablehlo.constant dense<0.000000e+00> : tensor<bf16>
    %17 = stablehlo.broadcast_in_dim %cst_4, dims = [] : (tensor<bf16>) -> tensor<16x4xbf16>
    %18 = "stablehlo.scatter"(%17, %5, %16) <{indices_are_sorted = false, scatter_dimension_numbers = #stablehlo.scatter<update_window_dims = [1], inserted_window_dims = [0], scatter_dims_to_operand_dims = [0], index_vector_dim = 1>, unique_indices = false}> ({
    ^bb0(%arg2: tensor<bf16>, %arg3: tensor<bf16>):
      %22 = stablehlo.add %arg2, %arg3 : tensor<bf16>
      stablehlo.return %22 : tensor<bf16>
    }) : (tensor<16x4xbf16>, tensor<8x1xi32>, tensor<8x4xbf16>) -> tensor<16x4xbf16>
    %cst_5 = stablehlo.constant dense<1.000980e-01> : tensor<bf16>
    %19 = stablehlo.broadcast_in_dim %cst_5, dims = [] : (tensor<bf16>) -> tensor<16x4xbf16>
    %20 = stablehlo.multiply %19, %18 : tensor<16x4xbf16>
    %21 = stablehlo.subtract %arg0, %20 : tensor<16x4xbf16>
    return %21, %10 : tensor<16x4xbf16>, tensor<f32>
  }
}

