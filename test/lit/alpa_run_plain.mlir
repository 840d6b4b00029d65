// alpa-run on a module without sharding annotations: it runs on one device whatever
// --devices says, and integers/booleans must match the reference exactly.

// RUN: alpa-run %s --devices 8 --reference --seed 7 | filecheck %s
// CHECK:      module: {{.*}}alpa_run_plain.mlir (plain)
// CHECK-NEXT: mesh: single cpu device 0
// CHECK-NEXT:   arg0: f32[2,3] single device
// CHECK-NEXT:   arg1: i32[3] single device
// CHECK-NEXT:   arg2: i1[] single device
// CHECK:      out0: [2,3] float32 max_abs_err=0 max_rel_err=0 ok
// CHECK-NEXT: out1: [3] int32 max_abs_err=0 max_rel_err=0 ok
// CHECK-NEXT: out2: [] bool max_abs_err=0 max_rel_err=0 ok
// CHECK-NEXT: reference check: PASS (3 outputs match)

func.func @main(%a: tensor<2x3xf32>, %b: tensor<3xi32>, %c: tensor<i1>) -> (tensor<2x3xf32>, tensor<3xi32>, tensor<i1>) {
  %0 = stablehlo.add %a, %a : tensor<2x3xf32>
  %1 = stablehlo.multiply %b, %b : tensor<3xi32>
  %2 = stablehlo.not %c : tensor<i1>
  return %0, %1, %2 : tensor<2x3xf32>, tensor<3xi32>, tensor<i1>
}
