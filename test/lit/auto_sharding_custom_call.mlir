// alpa-auto-sharding on `stablehlo.custom_call`: a target Shardy has a rule for is
// planned by that rule (`annotate_device_placement`, what memory-kind placement lowers
// to, is elementwise; a LAPACK call's rule relates none of its operand and result dims,
// so it runs replicated, without a warning: that is what it is). A target no one knows
// runs replicated, with a warning that names the target, and the report lists it.
//
// test/lit/Inputs/custom_call.mlir: jax.scipy.linalg.cholesky (lapack_spotrf_ffi on CPU)
// next to a matmul.
// RUN: alpa-opt %inputs/custom_call.mlir --verify-diagnostics --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 report=%t.lapack.json})' -o %t.lapack.mlir
// RUN: filecheck %s --check-prefix=LAPACK --input-file=%t.lapack.mlir
// RUN: filecheck %s --check-prefix=LAPACK-REPORT --input-file=%t.lapack.json
// RUN: alpa-run %t.lapack.mlir --reference | filecheck %s --check-prefix=EXEC
//
// RUN: alpa-opt %s --verify-diagnostics --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 report=%t.json})' | filecheck %s
// RUN: filecheck %s --check-prefix=REPORT --input-file=%t.json

// LAPACK:       %[[C:.*]]:2 = stablehlo.custom_call @lapack_spotrf_ffi(
// LAPACK-NEXT:  sdy.sharding_constraint %[[C]]#0 <@mesh, [{}, {}]> : tensor<16x16xf32>
// The matmul next to it is planned as usual.
// LAPACK:       stablehlo.dot_general
// LAPACK-NEXT:  sdy.sharding_constraint %{{.*}} <@mesh, [{"x", "y"}, {}]> : tensor<512x128xf32>
// LAPACK-REPORT: "replicated_fallback_ops": [],
// EXEC: reference check: PASS (2 outputs match)

// CHECK-LABEL: module @custom_calls
// CHECK:       %[[P:.*]] = stablehlo.custom_call @annotate_device_placement(%{{.*}})
// CHECK-NEXT:  sdy.sharding_constraint %[[P]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// CHECK:       %[[F:.*]] = stablehlo.custom_call @my_kernel(%{{.*}})
// CHECK-NEXT:  sdy.sharding_constraint %[[F]] <@mesh, [{}, {}]> : tensor<8192x16xf32>
// REPORT:      "replicated_fallback_ops": [
// REPORT-NEXT:   "stablehlo.custom_call @my_kernel"
// REPORT-NEXT: ],
module @custom_calls {
  func.func @main(%x: tensor<8192x16xf32>, %y: tensor<8192x16xf32>) -> (tensor<8192x16xf32>, tensor<8192x16xf32>) {
    %t = stablehlo.tanh %x : tensor<8192x16xf32>
    %p = stablehlo.custom_call @annotate_device_placement(%t) {has_side_effect = true, mhlo.frontend_attributes = {_xla_buffer_placement = "device"}} : (tensor<8192x16xf32>) -> tensor<8192x16xf32>
    %e = stablehlo.exponential %p : tensor<8192x16xf32>
    // expected-warning @+1 {{no sharding rule for 'stablehlo.custom_call' @my_kernel: it runs replicated}}
    %f = stablehlo.custom_call @my_kernel(%y) : (tensor<8192x16xf32>) -> tensor<8192x16xf32>
    return %e, %f : tensor<8192x16xf32>, tensor<8192x16xf32>
  }
}
