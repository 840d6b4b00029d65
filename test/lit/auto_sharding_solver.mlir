// alpa-auto-sharding{cluster=alpa-abstract solver=...}: every OR-tools backend proves the same plan optimal,
// so the output text is identical (the tie-break makes the optimum unique). The input's
// ILP keeps 5 nodes after merging and elimination, so each solver really runs. A time
// limit that is not reached changes nothing.

// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' -o %t.auto.mlir
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 solver=scip report=%t.scip.json})' -o %t.scip.mlir
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 solver=highs report=%t.highs.json})' -o %t.highs.mlir
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 solver=cbc report=%t.cbc.json})' -o %t.cbc.mlir
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 solver=cp-sat time-limit=60 report=%t.cp-sat.json})' -o %t.cp-sat.mlir
// RUN: diff %t.auto.mlir %t.scip.mlir
// RUN: diff %t.auto.mlir %t.highs.mlir
// RUN: diff %t.auto.mlir %t.cbc.mlir
// RUN: diff %t.auto.mlir %t.cp-sat.mlir
// RUN: filecheck %s --input-file=%t.scip.json --check-prefixes=CHECK,SCIP
// RUN: filecheck %s --input-file=%t.highs.json --check-prefixes=CHECK,HIGHS
// RUN: filecheck %s --input-file=%t.cbc.json --check-prefixes=CHECK,CBC
// RUN: filecheck %s --input-file=%t.cp-sat.json --check-prefixes=CHECK,CPSAT
// RUN: filecheck %s --input-file=%t.auto.mlir --check-prefix=PLAN

// CHECK:      "ilp": {
// CHECK:        "ilp_nodes": 5,
// CHECK:      "predicted_collectives": {
// CHECK-NEXT:   "all-reduce": {
// CHECK-NEXT:     "bytes": 34816.0,
// CHECK-NEXT:     "count": 3
// CHECK:      "solver": {
// CHECK-NEXT:   "bound": {{[0-9.e-]+}},
// CHECK-NEXT:   "gap": 0.0,
// SCIP-NEXT:    "name": "scip",
// HIGHS-NEXT:   "name": "highs",
// CBC-NEXT:     "name": "cbc",
// CPSAT-NEXT:   "name": "cp-sat",
// CHECK-NEXT:   "seconds": {{[0-9.e-]+}},
// CHECK-NEXT:   "status": "optimal"

// PLAN:      func.func @main(
// PLAN-SAME:   %arg1: tensor<256x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"y"}, {"x"}]>}
// PLAN-SAME:   %arg2: tensor<1024x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {"y"}]>}

module @mlp_step {
  func.func @main(%x: tensor<8x256xf32>, %w1: tensor<256x1024xf32>, %w2: tensor<1024x256xf32>)
      -> (tensor<8x256xf32>, tensor<256x1024xf32>, tensor<1024x256xf32>) {
    %h = stablehlo.dot_general %x, %w1, contracting_dims = [1] x [0] : (tensor<8x256xf32>, tensor<256x1024xf32>) -> tensor<8x1024xf32>
    %a = stablehlo.tanh %h : tensor<8x1024xf32>
    %y = stablehlo.dot_general %a, %w2, contracting_dims = [1] x [0] : (tensor<8x1024xf32>, tensor<1024x256xf32>) -> tensor<8x256xf32>
    // backward with dy = y
    %gw2 = stablehlo.dot_general %a, %y, contracting_dims = [0] x [0] : (tensor<8x1024xf32>, tensor<8x256xf32>) -> tensor<1024x256xf32>
    %ga = stablehlo.dot_general %y, %w2, contracting_dims = [1] x [1] : (tensor<8x256xf32>, tensor<1024x256xf32>) -> tensor<8x1024xf32>
    %gh = stablehlo.multiply %ga, %a : tensor<8x1024xf32>
    %gw1 = stablehlo.dot_general %x, %gh, contracting_dims = [0] x [0] : (tensor<8x256xf32>, tensor<8x1024xf32>) -> tensor<256x1024xf32>
    %w1n = stablehlo.subtract %w1, %gw1 : tensor<256x1024xf32>
    %w2n = stablehlo.subtract %w2, %gw2 : tensor<1024x256xf32>
    return %y, %w1n, %w2n : tensor<8x256xf32>, tensor<256x1024xf32>, tensor<1024x256xf32>
  }
}
