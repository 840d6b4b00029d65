// Shapes whose FLOP count does not fit in alpa.flops (i64): a diagnostic at the op, not
// a crash; the memory planner says the model cannot fit.
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-annotate-flops)' 2>&1 | filecheck %s --check-prefix=FLOPS
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{devices=2x4})' 2>&1 | filecheck %s --check-prefix=SHARD
// FLOPS-NOT: Traceback
// FLOPS: bad_input_sizes.mlir:[[# @LINE + 6]]:8: error: alpa-annotate-flops: 'stablehlo.dot_general' has 1.585e+29 FLOPs, more than alpa.flops (i64) can hold
// SHARD-NOT: Traceback
// SHARD: error: memory-limit=1.6e+10 bytes per device cannot be met; the smallest peak this model can reach on this mesh is
// SHARD-NOT: Traceback

func.func public @main(%a: tensor<4294967296x4294967296xf32>, %b: tensor<4294967296x4294967296xf32>) -> tensor<4294967296x4294967296xf32> {
  %y = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : (tensor<4294967296x4294967296xf32>, tensor<4294967296x4294967296xf32>) -> tensor<4294967296x4294967296xf32>
  return %y : tensor<4294967296x4294967296xf32>
}

// Each op's count fits, their sum over the function does not (2 x 2^62 FLOPs).
// RUN: sed -n '/^func.func public @total/,$p' %s | sed 's/@total/@main/' > %t.total.mlir
// RUN: not alpa-opt %t.total.mlir --pass-pipeline='builtin.module(alpa-annotate-flops)' 2>&1 | filecheck %s --check-prefix=TOTAL
// TOTAL: total.mlir:1:1: error: alpa-annotate-flops: 'func.func' has 9.223e+18 FLOPs, more than alpa.flops (i64) can hold
func.func public @total(%a: tensor<2097152x1048576xf32>, %b: tensor<1048576x1048576xf32>) -> (tensor<2097152x1048576xf32>, tensor<2097152x1048576xf32>) {
  %y = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : (tensor<2097152x1048576xf32>, tensor<1048576x1048576xf32>) -> tensor<2097152x1048576xf32>
  %z = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : (tensor<2097152x1048576xf32>, tensor<1048576x1048576xf32>) -> tensor<2097152x1048576xf32>
  return %y, %z : tensor<2097152x1048576xf32>, tensor<2097152x1048576xf32>
}
