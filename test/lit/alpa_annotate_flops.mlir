// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-annotate-flops)' | filecheck %s
// The report covers every function of the module (here: the whole file as one module).
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-annotate-flops{report=%t.json})' -o /dev/null
// RUN: filecheck %s --check-prefix=REPORT --input-file=%t.json

// dot_general: 2 x batch(3) x M(2) x K(4) x N(8) = 384; tanh: one per element (48);
// reduce: one per input element (48); the function carries the total.
// CHECK-LABEL: func.func @matmul
// CHECK-SAME: attributes {alpa.flops = 480 : i64}
// CHECK: stablehlo.dot_general {{.*}} {alpa.flops = 384 : i64}
// CHECK: stablehlo.tanh {{.*}} {alpa.flops = 48 : i64}
// CHECK: stablehlo.constant {alpa.flops = 0 : i64}
// CHECK: stablehlo.reduce{{.*}}{alpa.flops = 48 : i64}
// CHECK-NEXT: return
func.func @matmul(%x: tensor<3x2x4xf32>, %w: tensor<3x4x8xf32>) -> tensor<3x8xf32> {
  %0 = stablehlo.dot_general %x, %w, batching_dims = [0] x [0], contracting_dims = [2] x [1] : (tensor<3x2x4xf32>, tensor<3x4x8xf32>) -> tensor<3x2x8xf32>
  %1 = stablehlo.tanh %0 : tensor<3x2x8xf32>
  %cst = stablehlo.constant dense<0.0> : tensor<f32>
  %2 = stablehlo.reduce(%1 init: %cst) across dimensions = [1] : (tensor<3x2x8xf32>, tensor<f32>) -> tensor<3x8xf32>
    reducer(%a: tensor<f32>, %b: tensor<f32>) {
      %s = stablehlo.add %a, %b : tensor<f32>
      stablehlo.return %s : tensor<f32>
    }
  return %2 : tensor<3x8xf32>
}
// REPORT: "conv": {
// REPORT: "total": 3600
// REPORT: "matmul": {
// REPORT: "stablehlo.dot_general": 384
// REPORT: "total": 480

// -----

// convolution (NCHW, OIHW, SAME): 2 x output elements (1x4x5x5) x kernel elements per
// output feature (2x3x3) = 3600.
// CHECK-LABEL: func.func @conv
// CHECK: stablehlo.convolution{{.*}}alpa.flops = 3600 : i64
func.func @conv(%x: tensor<1x2x5x5xf32>, %k: tensor<4x2x3x3xf32>) -> tensor<1x4x5x5xf32> {
  %0 = stablehlo.convolution(%x, %k) dim_numbers = [b, f, 0, 1]x[o, i, 0, 1]->[b, f, 0, 1], window = {stride = [1, 1], pad = [[1, 1], [1, 1]]} {batch_group_count = 1 : i64, feature_group_count = 1 : i64} : (tensor<1x2x5x5xf32>, tensor<4x2x3x3xf32>) -> tensor<1x4x5x5xf32>
  return %0 : tensor<1x4x5x5xf32>
}
