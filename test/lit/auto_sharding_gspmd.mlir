// sharding-format=gspmd writes the plan as XLA HloSharding strings (mhlo.sharding) and
// custom_call @Sharding constraints, without any Shardy op, and the result runs.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 beta=1,1 sharding-format=gspmd})' -o %t.mlir
// RUN: filecheck %s --input-file=%t.mlir
// RUN: alpa-run %t.mlir --reference | filecheck %s --check-prefix=EXEC

// A large-batch layer: the batch splits over all 8 devices, the weight stays whole.
// CHECK-NOT: sdy.
// CHECK-LABEL: module @gspmd attributes {mhlo.num_partitions = 8 : i32
// CHECK: func.func @main(%arg0: tensor<1024x16xf32> {mhlo.sharding = "{devices=[8,1]<=[8]}"}, %arg1: tensor<16x16xf32> {mhlo.sharding = "{replicated}"})
// CHECK-SAME: -> (tensor<1024x16xf32> {mhlo.sharding = "{devices=[8,1]<=[8]}"})
// CHECK: %[[DOT:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NEXT: stablehlo.custom_call @Sharding(%[[DOT]]) {mhlo.sharding = "{devices=[8,1]<=[8]}"}
// CHECK-NOT: sdy.
// EXEC: reference check: PASS
module @gspmd {
  func.func @main(%x: tensor<1024x16xf32>, %w: tensor<16x16xf32>) -> tensor<1024x16xf32> {
    %0 = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<1024x16xf32>, tensor<16x16xf32>) -> tensor<1024x16xf32>
    %1 = stablehlo.tanh %0 : tensor<1024x16xf32>
    return %1 : tensor<1024x16xf32>
  }
}
