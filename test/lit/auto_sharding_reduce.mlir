// alpa-auto-sharding on reduce: the reduce follows its input's layout; the result drops
// the reduced dims (a split reduced dim leaves partial sums: an all-reduce, and a
// replicated result along those axes).
//
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' | filecheck %s

// A data-parallel matmul (4096-row batch over all 8 devices) reduced both ways: over the
// split batch dim (the result is replicated) and over the whole dim 1 (the result keeps
// the batch split).
// CHECK-LABEL: module @reduce_dims
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<4096x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    %arg1: tensor<16x8xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// CHECK-SAME:    -> (tensor<8xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}]>},
// CHECK-SAME:        tensor<4096xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}]>})
// CHECK:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NEXT:  %[[H_C:.*]] = sdy.sharding_constraint %[[H]] <@mesh, [{"x", "y"}, {}]> : tensor<4096x8xf32>
// CHECK:       %[[R0:.*]] = stablehlo.reduce(%[[H_C]] init: {{.*}}) applies stablehlo.add across dimensions = [0]
// CHECK-NEXT:  sdy.sharding_constraint %[[R0]] <@mesh, [{}]> : tensor<8xf32>
// CHECK:       %[[R1:.*]] = stablehlo.reduce(%[[H_C]] init: {{.*}}) applies stablehlo.add across dimensions = [1]
// CHECK-NEXT:  sdy.sharding_constraint %[[R1]] <@mesh, [{"x", "y"}]> : tensor<4096xf32>
module @reduce_dims {
  func.func @main(%x: tensor<4096x16xf32>, %w: tensor<16x8xf32>) -> (tensor<8xf32>, tensor<4096xf32>) {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<4096x16xf32>, tensor<16x8xf32>) -> tensor<4096x8xf32>
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %s0 = stablehlo.reduce(%h init: %zero) applies stablehlo.add across dimensions = [0] : (tensor<4096x8xf32>, tensor<f32>) -> tensor<8xf32>
    %s1 = stablehlo.reduce(%h init: %zero) applies stablehlo.add across dimensions = [1] : (tensor<4096x8xf32>, tensor<f32>) -> tensor<4096xf32>
    return %s0, %s1 : tensor<8xf32>, tensor<4096xf32>
  }
}

// -----

// A free input (an argument) is not split along the reduced dim: that would cost an
// all-reduce, while leaving "y" idle costs only a little replication. 6x4: "x" splits
// dim 0, "y" could only split the reduced dim 1.
// CHECK-LABEL: module @reduce_free_input
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<6x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}
// CHECK-SAME:    -> (tensor<6xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}]>})
// CHECK:       %[[R:.*]] = stablehlo.reduce(%arg0
// CHECK-NEXT:  sdy.sharding_constraint %[[R]] <@mesh, [{"x"}]> : tensor<6xf32>
module @reduce_free_input {
  func.func @main(%a: tensor<6x4xf32>) -> tensor<6xf32> {
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %s = stablehlo.reduce(%a init: %zero) applies stablehlo.add across dimensions = [1] : (tensor<6x4xf32>, tensor<f32>) -> tensor<6xf32>
    return %s : tensor<6xf32>
  }
}

// -----

// A variadic reduce (argmax over dim 1, with an iota of indices): both results keep the
// row split; the iota takes the layout for free and gets no constraint.
// CHECK-LABEL: module @argmax
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x32xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}]>},
// CHECK-SAME:        tensor<64xi32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}]>})
// CHECK:       %[[IOTA:.*]] = stablehlo.iota dim = 1 : tensor<64x32xi32>
// CHECK-NOT:   sdy.sharding_constraint %[[IOTA]]
// CHECK:       %[[R:.*]]:2 = stablehlo.reduce(%arg0 init: {{.*}}), (%[[IOTA]] init: {{.*}}) across dimensions = [1]
// CHECK-DAG:   sdy.sharding_constraint %[[R]]#0 <@mesh, [{"x", "y"}]> : tensor<64xf32>
// CHECK-DAG:   sdy.sharding_constraint %[[R]]#1 <@mesh, [{"x", "y"}]> : tensor<64xi32>
module @argmax {
  func.func @main(%x: tensor<64x32xf32>) -> (tensor<64xf32>, tensor<64xi32>) {
    %iota = stablehlo.iota dim = 1 : tensor<64x32xi32>
    %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
    %zi = stablehlo.constant dense<0> : tensor<i32>
    %r:2 = stablehlo.reduce(%x init: %ninf), (%iota init: %zi) across dimensions = [1] : (tensor<64x32xf32>, tensor<64x32xi32>, tensor<f32>, tensor<i32>) -> (tensor<64xf32>, tensor<64xi32>)
     reducer(%a: tensor<f32>, %c: tensor<f32>) (%b: tensor<i32>, %d: tensor<i32>) {
      %ge = stablehlo.compare GE, %a, %c, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
      %m = stablehlo.select %ge, %a, %c : tensor<i1>, tensor<f32>
      %i = stablehlo.select %ge, %b, %d : tensor<i1>, tensor<i32>
      stablehlo.return %m, %i : tensor<f32>, tensor<i32>
    }
    return %r#0, %r#1 : tensor<64xf32>, tensor<64xi32>
  }
}
