// alpa-auto-sharding on elementwise ops: they follow the layout of their operands, cost
// nothing to keep it, and every result gets a constraint with that layout (constants
// excepted). Arguments prefer the layout that shards them fully.
//
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' | filecheck %s

// Only dim 0 (64) divides the 8 devices: both axes split it, major axis first. A
// non-scalar constant takes the layout for free and gets no constraint of its own.
// CHECK-LABEL: module @unary_binary
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    %arg1: tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>})
// CHECK:       %[[ADD:.*]] = stablehlo.add %arg0, %arg1
// CHECK-NEXT:  %[[ADD_C:.*]] = sdy.sharding_constraint %[[ADD]] <@mesh, [{"x", "y"}, {}]> : tensor<64x3xf32>
// CHECK-NEXT:  %[[EXP:.*]] = stablehlo.exponential %[[ADD_C]]
// CHECK-NEXT:  %[[EXP_C:.*]] = sdy.sharding_constraint %[[EXP]] <@mesh, [{"x", "y"}, {}]> : tensor<64x3xf32>
// CHECK-NEXT:  %[[CST:.*]] = stablehlo.constant dense<2.000000e+00> : tensor<64x3xf32>
// CHECK-NEXT:  %[[MUL:.*]] = stablehlo.multiply %[[EXP_C]], %[[CST]]
// CHECK-NEXT:  %[[MUL_C:.*]] = sdy.sharding_constraint %[[MUL]] <@mesh, [{"x", "y"}, {}]> : tensor<64x3xf32>
// CHECK-NEXT:  return %[[MUL_C]]
module @unary_binary {
  func.func @main(%a: tensor<64x3xf32>, %b: tensor<64x3xf32>) -> tensor<64x3xf32> {
    %0 = stablehlo.add %a, %b : tensor<64x3xf32>
    %1 = stablehlo.exponential %0 : tensor<64x3xf32>
    %c = stablehlo.constant dense<2.0> : tensor<64x3xf32>
    %2 = stablehlo.multiply %1, %c : tensor<64x3xf32>
    return %2 : tensor<64x3xf32>
  }
}

// -----

// 6x4: "x" (2) can only split dim 0 and "y" (4) only dim 1. A compare keeps the layout
// on its i1 result.
// CHECK-LABEL: module @two_axes
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<6x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {"y"}]>}
// CHECK-SAME:    %arg1: tensor<6x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {"y"}]>}
// CHECK-SAME:    -> (tensor<6x4xi1> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {"y"}]>})
// CHECK:       %[[CMP:.*]] = stablehlo.compare GT, %arg0, %arg1
// CHECK-NEXT:  sdy.sharding_constraint %[[CMP]] <@mesh, [{"x"}, {"y"}]> : tensor<6x4xi1>
module @two_axes {
  func.func @main(%a: tensor<6x4xf32>, %b: tensor<6x4xf32>) -> tensor<6x4xi1> {
    %0 = stablehlo.compare GT, %a, %b, FLOAT : (tensor<6x4xf32>, tensor<6x4xf32>) -> tensor<6x4xi1>
    return %0 : tensor<6x4xi1>
  }
}

// -----

// A column-parallel matmul (the 1 MiB weight is split by columns over all 8 devices);
// the bias add, ReLU (compare + select against a broadcast scalar) and the cast all keep
// the matmul's layout, and the bias vector is split to match.
// CHECK-LABEL: module @follow_matmul
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<8x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// CHECK-SAME:    %arg1: tensor<256x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// CHECK-SAME:    %arg2: tensor<1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}]>}
// CHECK-SAME:    -> (tensor<8x1024xbf16> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>})
// CHECK:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NEXT:  %[[H_C:.*]] = sdy.sharding_constraint %[[H]] <@mesh, [{}, {"x", "y"}]> : tensor<8x1024xf32>
// CHECK:       %[[B:.*]] = stablehlo.broadcast_in_dim %arg2, dims = [1]
// CHECK-NEXT:  %[[B_C:.*]] = sdy.sharding_constraint %[[B]] <@mesh, [{}, {"x", "y"}]> : tensor<8x1024xf32>
// CHECK:       %[[ADD:.*]] = stablehlo.add %[[B_C]], %[[H_C]]
// CHECK-NEXT:  sdy.sharding_constraint %[[ADD]] <@mesh, [{}, {"x", "y"}]> : tensor<8x1024xf32>
// CHECK:       %[[CMP:.*]] = stablehlo.compare GT
// CHECK-NEXT:  sdy.sharding_constraint %[[CMP]] <@mesh, [{}, {"x", "y"}]> : tensor<8x1024xi1>
// CHECK:       %[[SEL:.*]] = stablehlo.select
// CHECK-NEXT:  sdy.sharding_constraint %[[SEL]] <@mesh, [{}, {"x", "y"}]> : tensor<8x1024xf32>
// CHECK:       %[[CVT:.*]] = stablehlo.convert
// CHECK-NEXT:  sdy.sharding_constraint %[[CVT]] <@mesh, [{}, {"x", "y"}]> : tensor<8x1024xbf16>
module @follow_matmul {
  func.func @main(%x: tensor<8x256xf32>, %w: tensor<256x1024xf32>, %bias: tensor<1024xf32>) -> tensor<8x1024xbf16> {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x256xf32>, tensor<256x1024xf32>) -> tensor<8x1024xf32>
    %bb = stablehlo.broadcast_in_dim %bias, dims = [1] : (tensor<1024xf32>) -> tensor<8x1024xf32>
    %0 = stablehlo.add %bb, %h : tensor<8x1024xf32>
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %z = stablehlo.broadcast_in_dim %zero, dims = [] : (tensor<f32>) -> tensor<8x1024xf32>
    %p = stablehlo.compare GT, %0, %z, FLOAT : (tensor<8x1024xf32>, tensor<8x1024xf32>) -> tensor<8x1024xi1>
    %r = stablehlo.select %p, %0, %z : tensor<8x1024xi1>, tensor<8x1024xf32>
    %c = stablehlo.convert %r : (tensor<8x1024xf32>) -> tensor<8x1024xbf16>
    return %c : tensor<8x1024xbf16>
  }
}

// -----

// A select with a scalar predicate: the scalar stays replicated, the tensors split.
// CHECK-LABEL: module @scalar_predicate
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<i1> {sdy.sharding = #sdy.sharding<@mesh, []>}
// CHECK-SAME:    %arg1: tensor<16x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    %arg2: tensor<16x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    -> (tensor<16x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>})
// CHECK:       %[[SEL:.*]] = stablehlo.select %arg0, %arg1, %arg2
// CHECK-NEXT:  sdy.sharding_constraint %[[SEL]] <@mesh, [{"x", "y"}, {}]> : tensor<16x3xf32>
module @scalar_predicate {
  func.func @main(%p: tensor<i1>, %a: tensor<16x3xf32>, %b: tensor<16x3xf32>) -> tensor<16x3xf32> {
    %0 = stablehlo.select %p, %a, %b : tensor<i1>, tensor<16x3xf32>
    return %0 : tensor<16x3xf32>
  }
}

// -----

// Scalar arithmetic gets no constraint (a rank-0 value has nothing to split).
// CHECK-LABEL: module @scalars
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<f32> {sdy.sharding = #sdy.sharding<@mesh, []>}
// CHECK-SAME:    -> (tensor<f32> {sdy.sharding = #sdy.sharding<@mesh, []>})
// CHECK-NEXT:    stablehlo.multiply %arg0, %arg0
// CHECK-NEXT:    return
module @scalars {
  func.func @main(%a: tensor<f32>) -> tensor<f32> {
    %0 = stablehlo.multiply %a, %a : tensor<f32>
    return %0 : tensor<f32>
  }
}
