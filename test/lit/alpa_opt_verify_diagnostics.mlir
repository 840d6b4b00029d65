// --verify-diagnostics checks produced diagnostics against expected-* comments.
// RUN: alpa-opt %s --split-input-file --verify-diagnostics

// expected-error @+2 {{use of undeclared SSA value name}}
func.func @undefined(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = stablehlo.add %arg0, %nope : tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----

func.func @bad_return(%arg0: tensor<2xf32>) -> tensor<3xf32> {
  // expected-error @+1 {{doesn't match function result type}}
  return %arg0 : tensor<2xf32>
}

// -----

func.func @fine(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  return %arg0 : tensor<2xf32>
}

// An expectation that is not met, and a diagnostic that was not expected, both fail.
// RUN: not alpa-opt %S/Inputs/verify_diagnostics_mismatch.mlir --verify-diagnostics 2>&1 | filecheck %s --check-prefix=MISMATCH
// MISMATCH-DAG: verify_diagnostics_mismatch.mlir:4:{{[0-9]+}}: error: unexpected error: operation being parsed with an unregistered dialect
// MISMATCH-DAG: verify_diagnostics_mismatch.mlir:2:4: error: expected error "this is never emitted" was not produced
