// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-strip-sharding)' | filecheck %s

// CHECK-NOT: sdy.mesh
// CHECK-LABEL: module @sharded attributes {mhlo.num_partitions = 1 : i32
// CHECK: func.func @main(%arg0: tensor<8x16xf32>, %arg1: tensor<16x4xf32>) -> (tensor<8x4xf32> {jax.result_info = "out"})
// CHECK-NEXT: %[[DOT:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NEXT: %[[TANH:.*]] = stablehlo.tanh %[[DOT]]
// CHECK-NEXT: return %[[TANH]]
// CHECK-NOT: sdy.
module @sharded attributes {mhlo.num_partitions = 8 : i32, mhlo.num_replicas = 1 : i32} {
  sdy.mesh @mesh = <["x"=2, "y"=4]>
  func.func @main(%arg0: tensor<8x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>},
                  %arg1: tensor<16x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"y"}]>})
      -> (tensor<8x4xf32> {jax.result_info = "out", sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {"y"}]>}) {
    %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
    %1 = sdy.sharding_constraint %0 <@mesh, [{"x"}, {}]> : tensor<8x4xf32>
    %2 = stablehlo.tanh %1 {sdy.sharding = #sdy.sharding_per_value<[<@mesh, [{"x"}, {}]>]>} : tensor<8x4xf32>
    return %2 : tensor<8x4xf32>
  }
}
