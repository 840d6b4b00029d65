// Every dtype JAX allows round-trips through alpa-run: 64-bit arguments stay 64-bit (JAX's
// x64 mode is switched on for such a module), on one device and auto-sharded on 2x4.
// RUN: alpa-run %s --reference --outputs %t.npz | filecheck %s
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{devices=2x4})' -o %t.spmd.mlir
// RUN: alpa-run %t.spmd.mlir --reference | filecheck %s
// CHECK: arg0: f64[4,4]
// CHECK: arg2: i64[8]
// CHECK: arg6: complex<f64>[8]
// CHECK: out0: [8,4] float64 max_abs_err=0
// CHECK: out1: [8] int64 max_abs_err=0
// CHECK: out2: [8] bool max_abs_err=0
// CHECK: out3: [8] float16 max_abs_err=0
// CHECK: out4: [8] uint8 max_abs_err=0
// CHECK: out5: [8] complex128 max_abs_err=0
// CHECK: out6: [8] bfloat16 max_abs_err=0
// CHECK: reference check: PASS (7 outputs match)
func.func public @main(%w: tensor<4x4xf64>, %x: tensor<8x4xf64>, %i: tensor<8xi64>, %b: tensor<8xi1>, %h: tensor<8xf16>, %u: tensor<8xui8>, %c: tensor<8xcomplex<f64>>, %bf: tensor<8xbf16>)
    -> (tensor<8x4xf64>, tensor<8xi64>, tensor<8xi1>, tensor<8xf16>, tensor<8xui8>, tensor<8xcomplex<f64>>, tensor<8xbf16>) {
  %y = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x4xf64>, tensor<4x4xf64>) -> tensor<8x4xf64>
  %i2 = stablehlo.add %i, %i : tensor<8xi64>
  %c2 = stablehlo.multiply %c, %c : tensor<8xcomplex<f64>>
  return %y, %i2, %b, %h, %u, %c2, %bf : tensor<8x4xf64>, tensor<8xi64>, tensor<8xi1>, tensor<8xf16>, tensor<8xui8>, tensor<8xcomplex<f64>>, tensor<8xbf16>
}
