// Input of alpa_opt_verify_diagnostics.mlir: one unmet expectation, one unexpected error.
// expected-error @+5 {{this is never emitted}}
func.func @f(%arg0: tensor<2xf32>) -> tensor<2xf32> {
"bogus.op"() : () -> ()
  return %arg0 : tensor<2xf32>
}
