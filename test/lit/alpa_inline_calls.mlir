// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-inline-calls)' | filecheck %s
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-inline-calls{keep-dead=true})' | filecheck %s --check-prefix=KEEP

// Each call gets its own copy of the callee's body (nested calls too), callers read the
// copies' results, and callees left without callers are dropped.
// CHECK-LABEL: func.func @main(%arg0: tensor<4xf32>) -> tensor<4xf32>
// CHECK-NOT:   call
// CHECK:       %[[C0:.*]] = stablehlo.constant dense<0.000000e+00>
// CHECK:       %[[B0:.*]] = stablehlo.broadcast_in_dim %[[C0]]
// CHECK:       %[[R0:.*]] = stablehlo.maximum %arg0, %[[B0]]
// CHECK:       %[[T:.*]] = stablehlo.tanh %[[R0]]
// CHECK:       %[[B1:.*]] = stablehlo.broadcast_in_dim
// CHECK:       %[[R1:.*]] = stablehlo.maximum %[[T]], %[[B1]]
// CHECK:       return %[[R1]]
// CHECK-NOT:   func.func private
// KEEP: func.func private @tanh_relu
// KEEP: func.func private @relu
func.func @main(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %0 = call @relu(%arg0) : (tensor<4xf32>) -> tensor<4xf32>
  %1 = call @tanh_relu(%0) : (tensor<4xf32>) -> tensor<4xf32>
  return %1 : tensor<4xf32>
}
func.func private @tanh_relu(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %0 = stablehlo.tanh %arg0 : tensor<4xf32>
  %1 = call @relu(%0) : (tensor<4xf32>) -> tensor<4xf32>
  return %1 : tensor<4xf32>
}
func.func private @relu(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %cst = stablehlo.constant dense<0.000000e+00> : tensor<f32>
  %0 = stablehlo.broadcast_in_dim %cst, dims = [] : (tensor<f32>) -> tensor<4xf32>
  %1 = stablehlo.maximum %arg0, %0 : tensor<4xf32>
  return %1 : tensor<4xf32>
}
