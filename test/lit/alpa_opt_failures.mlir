// Every error path of alpa-opt prints `file:line:col: error: message`, exits 1 and never
// shows a Python traceback.

// A missing input file.
// RUN: not alpa-opt %s.missing 2>&1 | filecheck %s --check-prefix=MISSING
// MISSING-NOT: Traceback
// MISSING: {{.*}}alpa_opt_failures.mlir.missing:0:0: error: cannot open input file: No such file or directory
// MISSING-NOT: Traceback

// An unknown pass: the column points into the pipeline text.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(canonicalize,no-such-pass)' 2>&1 | filecheck %s --check-prefix=UNKNOWN
// UNKNOWN-NOT: Traceback
// UNKNOWN: <pass-pipeline>:1:29: error: unknown pass 'no-such-pass'
// UNKNOWN-NOT: Traceback

// A bad option value of one of our passes, and an unknown option.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-annotate-flops{report})' 2>&1 | filecheck %s --check-prefix=BADVALUE
// BADVALUE: <pass-pipeline>:1:16: error: option 'report' of alpa-annotate-flops needs a value
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-strip-sharding{mesh=2x4})' 2>&1 | filecheck %s --check-prefix=BADOPT
// BADOPT: <pass-pipeline>:1:16: error: alpa-strip-sharding has no option 'mesh' (options: none)
// A bad option of a native pass.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(canonicalize{max-iterations=many})' 2>&1 | filecheck %s --check-prefix=NATIVEOPT
// NATIVEOPT: <pass-pipeline>:1:16: error: invalid pipeline element 'canonicalize{max-iterations=many}'
// A malformed pipeline.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(cse' 2>&1 | filecheck %s --check-prefix=MALFORMED
// MALFORMED: <pass-pipeline>:1:19: error: expected ',' or ')', got end of pipeline
// One of our passes placed under an op anchor.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(func.func(alpa-strip-sharding))' 2>&1 | filecheck %s --check-prefix=NESTED
// NESTED: <pass-pipeline>:1:26: error: 'alpa-strip-sharding' runs on the whole module

// Malformed MLIR and a module that fails verification, each in its own chunk; the good
// chunk between them is still processed, and the exit status is 1.
// RUN: not alpa-opt %s --split-input-file 2>&1 >/dev/null | filecheck %s --check-prefix=PARSE
// PARSE-NOT: Traceback
// PARSE: {{.*}}alpa_opt_failures.mlir:[[# @LINE + 3]]:29: error: use of undeclared SSA value name
// PARSE-NOT: Traceback
func.func @malformed(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %0 = stablehlo.add %arg0, %undefined : tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----

func.func @fine(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  return %arg0 : tensor<2xf32>
}

// -----

// PARSE: {{.*}}alpa_opt_failures.mlir:[[# @LINE + 2]]:3: error: type of return operand 0 ('tensor<2xf32>') doesn't match function result type ('tensor<3xf32>') in function @unverifiable
func.func @unverifiable(%arg0: tensor<2xf32>) -> tensor<3xf32> {
  return %arg0 : tensor<2xf32>
}

// -----

// The same option twice is refused, not "last wins".
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=4 mesh=8})' 2>&1 | filecheck %s --check-prefix=TWICE
// TWICE: <pass-pipeline>:1:16: error: option 'mesh' of alpa-auto-sharding is given twice

// A pass failure: the report cannot be written.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-annotate-flops{report=%t.nodir/x.json})' 2>&1 | filecheck %s --check-prefix=PASSFAIL
// PASSFAIL: {{.*}}alpa_opt_failures.mlir:0:0: error: cannot write report '{{.*}}.nodir/x.json': no such directory: '{{.*}}.nodir'
func.func @last(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  return %arg0 : tensor<2xf32>
}
