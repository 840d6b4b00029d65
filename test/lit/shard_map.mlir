// A shard_map region (sdy.manual_computation) is the user's own parallel program: it is
// kept as written, with its mesh. alpa-strip-sharding removes only the shardings around
// it; alpa-auto-sharding plans around it on its mesh and names that mesh when asked for
// another; the pipeshard path says it cannot pipeline it; alpa-run checks it against a
// reference that keeps the region on its mesh.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-strip-sharding)' | filecheck %s --check-prefix=STRIP
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{devices=2x4})' -o %t.planned.mlir 2>&1 | filecheck %s --check-prefix=PLAN
// RUN: alpa-run %t.planned.mlir --reference | filecheck %s --check-prefix=RUNOK
// RUN: alpa-run %s --reference | filecheck %s --check-prefix=RUNOK
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=8})' 2>&1 | filecheck %s --check-prefix=MESH
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4})' 2>&1 | filecheck %s --check-prefix=PIPE

// STRIP: module @shard_map attributes {mhlo.num_partitions = 8 : i32}
// STRIP: sdy.mesh @mesh = <["x"=2, "y"=4]>
// STRIP: func.func public @main(%arg0: tensor<16x32xf32>, %arg1: tensor<8x16xf32>) -> tensor<f32>
// STRIP: sdy.manual_computation(%{{.*}}) in_shardings=[<@mesh, [{}, {"y"}]>] out_shardings=[<@mesh, [{}, {}]>] manual_axes={"x", "y"}
// PLAN: shard_map.mlir:[[# @LINE + 10]]:10: remark: a shard_map region (sdy.manual_computation) is kept as written
// RUNOK: reference check: PASS (1 output match)
// MESH: shard_map.mlir:[[# @LINE + 8]]:10: error: alpa-auto-sharding: a shard_map region (sdy.manual_computation) runs on mesh @mesh <["x"=2, "y"=4]>, and the plan's mesh @mesh is <["x"=8]>: plan on the region's mesh (mesh=2x4 mesh-axes=x,y)
// PIPE: shard_map.mlir:[[# @LINE + 7]]:10: error: alpa-pipeshard: a shard_map region (sdy.manual_computation) cannot be pipelined

module @shard_map attributes {mhlo.num_partitions = 8 : i32} {
  sdy.mesh @mesh = <["x"=2, "y"=4]>
  func.func public @main(%w: tensor<16x32xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"y"}]>}, %x: tensor<8x16xf32>) -> tensor<f32> {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x32xf32>) -> tensor<8x32xf32>
    %t = stablehlo.tanh %h : tensor<8x32xf32>
    %s = sdy.manual_computation(%t) in_shardings=[<@mesh, [{}, {"y"}]>] out_shardings=[<@mesh, [{}, {}]>] manual_axes={"x", "y"} (%local: tensor<8x8xf32>) {
      %two = stablehlo.constant dense<2.0> : tensor<8x8xf32>
      %m = stablehlo.multiply %local, %two : tensor<8x8xf32>
      %sum = "stablehlo.all_reduce"(%m) <{channel_handle = #stablehlo.channel_handle<handle = 1, type = 1>, replica_groups = dense<[[0, 1, 2, 3], [4, 5, 6, 7]]> : tensor<2x4xi64>, use_global_device_ids}> ({
      ^bb0(%a: tensor<f32>, %b: tensor<f32>):
        %add = stablehlo.add %a, %b : tensor<f32>
        stablehlo.return %add : tensor<f32>
      }) : (tensor<8x8xf32>) -> tensor<8x8xf32>
      sdy.return %sum : tensor<8x8xf32>
    } : (tensor<8x32xf32>) -> tensor<8x8xf32>
    %sq = stablehlo.multiply %s, %s : tensor<8x8xf32>
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %loss = stablehlo.reduce(%sq init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x8xf32>, tensor<f32>) -> tensor<f32>
    return %loss : tensor<f32>
  }
}
