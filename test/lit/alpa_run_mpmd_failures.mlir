// alpa-run's error paths on MPMD modules: `file:line:col: error: message` at the op the
// sequential reference executor cannot run, exit status 1, never a Python traceback.

// An op other than mpmd.fragment / mpmd.transfer / mpmd.call / func.return in @main
// (mpmd.assign belongs to the unpartitioned form, before fragments are formed).
// RUN: not alpa-run %s 2>&1 | filecheck %s
// CHECK-NOT: Traceback
// CHECK: {{.*}}alpa_run_mpmd_failures.mlir:[[# @LINE + 20]]:8: error: 'mpmd.assign' is not supported at the top level of MPMD function @main: expected only mpmd.fragment, mpmd.transfer, mpmd.call, func.return
// CHECK-NOT: Traceback

// The same with --reference: the module is checked before anything is compiled.
// RUN: not alpa-run %s --reference 2>&1 | filecheck %s --check-prefix=REFERENCE
// REFERENCE-NOT: Traceback
// REFERENCE: {{.*}}alpa_run_mpmd_failures.mlir:[[# @LINE + 14]]:8: error: 'mpmd.assign' is not supported

// --stats is for SPMD modules.
// RUN: not alpa-run %s --stats 2>&1 | filecheck %s --check-prefix=STATS
// STATS-NOT: Traceback
// STATS: alpa-run: error: --stats applies to plain and SPMD modules; {{.*}}alpa_run_mpmd_failures.mlir is an MPMD module

!t = !mpmd.mesh_tensor<"m1", tensor<4x8xf32>>
func.func @main(%arg0: !t, %arg1: tensor<4x8xf32>) -> (!t, !t)
    attributes {topology = #mpmd.topology<<"m1": <["x"=2]>>, <"m2": <["x"=2]>>>} {
  %0 = mpmd.fragment<mesh="m1", origin=["f1"]> (%arg0) (%a: tensor<4x8xf32>) {
    %1 = stablehlo.add %a, %a : tensor<4x8xf32>
    mpmd.return %1 : tensor<4x8xf32>
  } : (!t) -> !t
  %2 = mpmd.assign %arg1 : (tensor<4x8xf32>) -> !t
  return %0, %2 : !t, !t
}
