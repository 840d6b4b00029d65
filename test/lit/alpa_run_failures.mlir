// alpa-run's error paths: `file:line:col: error: message` for problems in the module,
// `alpa-run: error: message` for the rest; exit status 1, never a Python traceback.

// A malformed module: the column points at the undefined value.
// RUN: not alpa-run %s --devices 8 2>&1 | filecheck %s --check-prefix=PARSE
// PARSE-NOT: Traceback
// PARSE: {{.*}}alpa_run_failures.mlir:[[# @LINE + 11]]:31: error: use of undeclared SSA value name
// PARSE-NOT: Traceback

// A missing input file.
// RUN: not alpa-run %s.missing 2>&1 | filecheck %s --check-prefix=MISSING
// MISSING-NOT: Traceback
// MISSING: alpa-run: error: cannot open input file '{{.*}}alpa_run_failures.mlir.missing': no such file

module {
  sdy.mesh @mesh = <["x"=2]>
  func.func @main(%arg0: tensor<4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}]>}) -> tensor<4xf32> {
    %0 = stablehlo.add %arg0, %undefined : tensor<4xf32>
    return %0 : tensor<4xf32>
  }
}
