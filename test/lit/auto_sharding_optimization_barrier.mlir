// alpa-auto-sharding on `stablehlo.optimization_barrier` (what jax.checkpoint / nn.remat
// put around the values a recomputed block reads): each result is its operand, in the
// operand's layout, so recomputation behind a barrier keeps the plan's layouts and the
// barrier itself moves no data. A constraint after each barrier result repeats the
// layout, for XLA.
//
// A remat'ed MLP step (test/lit/Inputs/optimization_barrier.mlir, two jax.checkpoint
// blocks): no warning, the batch stays split across both barriers, no collective but the
// weight gradients' all-reduces.
// RUN: alpa-opt %inputs/optimization_barrier.mlir --verify-diagnostics --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x4 cluster=p3.16xlarge report=%t.json})' -o %t.remat.mlir
// RUN: filecheck %s --check-prefix=REMAT --input-file=%t.remat.mlir
// RUN: filecheck %s --check-prefix=REPORT --input-file=%t.json
// RUN: alpa-run %t.remat.mlir --reference --collectives | filecheck %s --check-prefix=EXEC
//
// RUN: alpa-opt %s --verify-diagnostics --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' | filecheck %s

// REMAT:       stablehlo.optimization_barrier
// REMAT:       %[[B:.*]]:3 = stablehlo.optimization_barrier %arg1,
// REMAT-NEXT:  sdy.sharding_constraint %[[B]]#2 <@mesh, [{"x", "y"}, {}]> : tensor<512x256xf32>
// REMAT-NEXT:  sdy.sharding_constraint %[[B]]#1 <@mesh, [{}, {}]> : tensor<256x256xf32>
// REMAT-NEXT:  sdy.sharding_constraint %[[B]]#0 <@mesh, [{"x", "y"}, {}]> : tensor<512x256xf32>

// REPORT:      "predicted_collectives": {
// REPORT-NEXT:   "all-reduce": {
// REPORT-NOT:    all-gather
// REPORT:      "replicated_fallback_ops": [],

// EXEC: collectives: all-reduce={{[0-9]+}} all-gather=0 reduce-scatter=0 all-to-all=0 collective-permute=0
// EXEC: reference check: PASS (2 outputs match)

// The barrier's results take their operands' layouts (the split activation and the
// replicated weight), and the ops after it read them as they are.
// CHECK-LABEL: module @barrier
// CHECK:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NEXT:  %[[HC:.*]] = sdy.sharding_constraint %[[H]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// CHECK:       %[[B:.*]]:2 = stablehlo.optimization_barrier %[[HC]], %arg1
// CHECK-NEXT:  sdy.sharding_constraint %[[B]]#1 <@mesh, [{}, {}]> : tensor<16x16xf32>
// CHECK-NEXT:  %[[B0:.*]] = sdy.sharding_constraint %[[B]]#0 <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// CHECK-NEXT:  stablehlo.tanh %[[B0]]
module @barrier {
  func.func @main(%x: tensor<8192x16xf32>, %w: tensor<16x16xf32>) -> (tensor<8192x16xf32>, tensor<16x16xf32>) {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8192x16xf32>, tensor<16x16xf32>) -> tensor<8192x16xf32>
    %b:2 = stablehlo.optimization_barrier %h, %w : tensor<8192x16xf32>, tensor<16x16xf32>
    %t = stablehlo.tanh %b#0 : tensor<8192x16xf32>
    return %t, %b#1 : tensor<8192x16xf32>, tensor<16x16xf32>
  }
}
