// The alpa-opt driver: round trip, stdin/-o, chunking, instrumentation, listing.

// With no pipeline the module comes back unchanged; a second round trip is identical.
// RUN: alpa-opt %s --split-input-file -o %t.1.mlir
// RUN: alpa-opt %t.1.mlir --split-input-file -o %t.2.mlir
// RUN: diff %t.1.mlir %t.2.mlir
// RUN: filecheck %s --input-file=%t.1.mlir

// stdin in, stdout out.
// RUN: cat %s | alpa-opt - --split-input-file | filecheck %s

// CHECK-LABEL: func.func @add
// CHECK-NEXT:    %[[SUM:.*]] = stablehlo.add %arg0, %arg1 : tensor<4xf32>
// CHECK-NEXT:    return %[[SUM]] : tensor<4xf32>
func.func @add(%arg0: tensor<4xf32>, %arg1: tensor<4xf32>) -> tensor<4xf32> {
  %0 = stablehlo.add %arg0, %arg1 : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// CHECK: // -----
// CHECK-LABEL: func.func @twice
// CHECK: stablehlo.multiply
func.func @twice(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %0 = stablehlo.multiply %arg0, %arg0 : tensor<4xf32>
  %1 = stablehlo.multiply %arg0, %arg0 : tensor<4xf32>
  %2 = stablehlo.add %0, %1 : tensor<4xf32>
  return %2 : tensor<4xf32>
}

// Mixed pipelines of our passes and native ones, with IR printed after each step.
// RUN: alpa-opt %s --split-input-file --mlir-print-ir-after-all \
// RUN:   --pass-pipeline='builtin.module(func.func(cse),alpa-annotate-flops,canonicalize)' 2>&1 >/dev/null \
// RUN:   | filecheck %s --check-prefix=AFTER
// AFTER: // -----// IR Dump After func.func(cse) //----- //
// AFTER: // -----// IR Dump After alpa-annotate-flops //----- //
// AFTER: stablehlo.add %arg0, %arg1 {alpa.flops = 4 : i64}
// AFTER: // -----// IR Dump After canonicalize //----- //

// Per-pass timing.
// RUN: alpa-opt %s --split-input-file --mlir-timing --pass-pipeline='builtin.module(cse,alpa-annotate-flops)' 2>&1 >/dev/null \
// RUN:   | filecheck %s --check-prefix=TIMING
// TIMING: Execution time report
// TIMING: Total Execution Time:
// TIMING-DAG: parse
// TIMING-DAG: cse
// TIMING-DAG: alpa-annotate-flops
// TIMING: Total

// Bytecode in, text out.
// RUN: %python -c "import sys; from alpa_mlir.dialect_utils import context as c; ctx = c.make_context(); sys.stdout.buffer.write(c.module_bytecode(c.parse_module(open(sys.argv[1]).read().split('// -----')[0], ctx)))" %s > %t.bc
// RUN: alpa-opt %t.bc | filecheck %s --check-prefix=BYTECODE
// BYTECODE: func.func @add

// The listing names our passes (with options) and native ones.
// RUN: alpa-opt --list-passes | filecheck %s --check-prefix=LIST
// LIST: alpa-mlir passes (Python):
// LIST: alpa-annotate-flops: write each op's FLOP count as alpa.flops
// LIST-NEXT: report=""  (str)
// LIST: alpa-strip-sharding:
// LIST: native MLIR passes (jaxlib), usable in the same pipelines:
// LIST: canonicalize:
// LIST: sdy-propagation-pipeline:
// LIST: sdy-insert-explicit-reshards: {{.*}}[nest in func.func(...)]

// RUN: alpa-opt --version | filecheck %s --check-prefix=VERSION
// VERSION: alpa-opt (alpa-mlir {{[0-9.]+}}; jax {{[0-9.]+}}, jaxlib {{[0-9.]+}})
