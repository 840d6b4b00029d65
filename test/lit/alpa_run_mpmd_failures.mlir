// MPMD (pipeline) modules are recognized and refused until the pipeline runtime exists.

// RUN: not alpa-run %s 2>&1 | filecheck %s
// CHECK-NOT: Traceback
// CHECK: {{.*}}alpa_run_mpmd_failures.mlir:[[# @LINE + 4]]:1: error: MPMD modules are not supported yet
// CHECK-NOT: Traceback

!t = !mpmd.mesh_tensor<"m1", tensor<4x8xf32>>
func.func @main(%arg0: !t) -> !t attributes {topology = #mpmd.topology<<"m1": <["x"=2]>>, <"m2": <["x"=2]>>>} {
  %0 = mpmd.fragment<mesh="m1", origin=["f1"]> (%arg0) (%a: tensor<4x8xf32>) {
    %1 = stablehlo.add %a, %a : tensor<4x8xf32>
    mpmd.return %1 : tensor<4x8xf32>
  } : (!t) -> !t
  return %0 : !t
}
