// alpa-auto-sharding on control flow: `stablehlo.while` (every lax.scan / fori_loop)
// and `stablehlo.case` are part of the one ILP. A loop-carried value has one layout,
// shared by the while operand, the body argument, the value the body yields and the
// while result; the body's ops are planned like any other, their costs counted
// trip-count times (the report lists each loop's trip count). Case branches are planned
// with the op, each branch's result meeting the case result's layout.
//
// A layer stack as lax.scan (test/lit/Inputs/while_scan.mlir: stacked weights
// [4, 512, 512], batch 8, SGD): the weights are split on a non-layer dim, as the
// unrolled stack's would be, and the body slices each layer's weight locally.
// RUN: alpa-opt %inputs/while_scan.mlir --verify-diagnostics --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x4 cluster=p3.16xlarge report=%t.scan.json})' -o %t.scan.mlir
// RUN: filecheck %s --check-prefix=SCAN --input-file=%t.scan.mlir
// RUN: filecheck %s --check-prefix=SCAN-REPORT --input-file=%t.scan.json
// RUN: alpa-run %t.scan.mlir --reference | filecheck %s --check-prefix=EXEC
//
// The hand-written cases below.
// RUN: alpa-opt %s --split-input-file --verify-diagnostics --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' -o %t.mlir
// RUN: filecheck %s --input-file=%t.mlir
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' 2>&1 >/dev/null | filecheck %s --check-prefix=DIAG

// SCAN:       func.func public @main(%arg0: tensor<4x512x512xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {{.*}}"x", "y"{{.*}}]>
// SCAN:       stablehlo.while(%[[W:.*]] = %arg0,
// SCAN:       } do {
// SCAN:         %[[WC:.*]] = sdy.sharding_constraint %[[W]] <@mesh, [{}, {{.*}}"x", "y"{{.*}}]> : tensor<4x512x512xf32>
// SCAN:         stablehlo.dynamic_slice %[[WC]],
// SCAN-NEXT:    sdy.sharding_constraint %{{.*}} <@mesh, [{}, {{.*}}"x", "y"{{.*}}]> : tensor<1x512x512xf32>

// SCAN-REPORT:      "loops": [
// SCAN-REPORT-NEXT:   {
// SCAN-REPORT-NEXT:     "carried": 6,
// SCAN-REPORT-NEXT:     "trip_count": 4
// SCAN-REPORT:          "trip_count": 4
// SCAN-REPORT:      "replicated_fallback_ops": [],

// EXEC: reference check: PASS (2 outputs match)

// A loop carrying a large activation: the carried value is split along the batch, and
// the operand, the body argument, the yielded value and the result all say so.
// CHECK-LABEL: module @carried_layout
// CHECK:       %[[LOOP:.*]]:2 = stablehlo.while(%{{.*}} = %{{.*}}, %[[H:.*]] = %arg0)
// CHECK:       } do {
// CHECK-NEXT:    %[[HC:.*]] = sdy.sharding_constraint %[[H]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// CHECK:         %[[T:.*]] = stablehlo.tanh %[[HC]]
// CHECK-NEXT:    %[[TC:.*]] = sdy.sharding_constraint %[[T]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// CHECK:         stablehlo.return %{{.*}}, %[[TC]]
// CHECK:       sdy.sharding_constraint %[[LOOP]]#1 <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
module @carried_layout {
  func.func @main(%x: tensor<8192x16xf32>) -> tensor<8192x16xf32> {
    %c0 = stablehlo.constant dense<0> : tensor<i32>
    %r:2 = stablehlo.while(%i = %c0, %h = %x) : tensor<i32>, tensor<8192x16xf32>
     cond {
      %n = stablehlo.constant dense<3> : tensor<i32>
      %lt = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    } do {
      %one = stablehlo.constant dense<1> : tensor<i32>
      %i1 = stablehlo.add %i, %one : tensor<i32>
      %t = stablehlo.tanh %h : tensor<8192x16xf32>
      stablehlo.return %i1, %t : tensor<i32>, tensor<8192x16xf32>
    }
    return %r#1 : tensor<8192x16xf32>
  }
}

// -----

// A loop whose bound is an argument has no static trip count: its body is planned as
// if it ran once, with a warning at the loop; the plan is still correct.
// CHECK-LABEL: module @unknown_trip_count
// CHECK:       stablehlo.while
// DIAG: warning: 'stablehlo.while' has no static trip count: its body is planned as if it ran once
module @unknown_trip_count {
  func.func @main(%x: tensor<8192x16xf32>, %n: tensor<i32>) -> tensor<8192x16xf32> {
    %c0 = stablehlo.constant dense<0> : tensor<i32>
    // expected-warning @+1 {{'stablehlo.while' has no static trip count: its body is planned as if it ran once}}
    %r:2 = stablehlo.while(%i = %c0, %h = %x) : tensor<i32>, tensor<8192x16xf32>
     cond {
      %lt = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    } do {
      %one = stablehlo.constant dense<1> : tensor<i32>
      %i1 = stablehlo.add %i, %one : tensor<i32>
      %t = stablehlo.tanh %h : tensor<8192x16xf32>
      stablehlo.return %i1, %t : tensor<i32>, tensor<8192x16xf32>
    }
    return %r#1 : tensor<8192x16xf32>
  }
}

// -----

// `stablehlo.case` (lax.cond, lax.switch): each branch's ops are planned; the values the
// branches yield meet the case result's layout (here the batch split of the activation
// the second branch computes).
// CHECK-LABEL: module @case_branches
// CHECK:       %[[CASE:.*]] = "stablehlo.case"(%arg1) ({
// CHECK:         stablehlo.return
// CHECK:       }, {
// CHECK:         %[[T:.*]] = stablehlo.tanh
// CHECK-NEXT:    sdy.sharding_constraint %[[T]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// CHECK:       sdy.sharding_constraint %[[CASE]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
module @case_branches {
  func.func @main(%x: tensor<8192x16xf32>, %idx: tensor<i32>) -> tensor<8192x16xf32> {
    %c = "stablehlo.case"(%idx) ({
      stablehlo.return %x : tensor<8192x16xf32>
    }, {
      %t = stablehlo.tanh %x : tensor<8192x16xf32>
      stablehlo.return %t : tensor<8192x16xf32>
    }) : (tensor<i32>) -> tensor<8192x16xf32>
    return %c : tensor<8192x16xf32>
  }
}
