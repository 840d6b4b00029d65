// alpa-auto-sharding on ops without a sharding rule (here stablehlo.while and
// stablehlo.case): each is planned replicated, with a warning at its location, and the
// rest of the module is still planned; the output runs and matches the unpartitioned
// run. Values such an op reads -- its operands and the values its regions capture from
// above (the case branches return %a and the loop result) -- must then be replicated
// too, so the plan needs no communication at all.
//
// RUN: alpa-opt %s --verify-diagnostics --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x4 report=%t.json})' -o %t.mlir
// RUN: filecheck %s --input-file=%t.mlir
// RUN: filecheck %s --input-file=%t.json --check-prefix=REPORT
// RUN: alpa-run %t.mlir --reference --collectives | filecheck %s --check-prefix=EXEC

// CHECK-LABEL: module @fallback
// CHECK:       func.func @main(
// CHECK-SAME:    %arg0: tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// CHECK-SAME:    %arg1: tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// CHECK-SAME:    %arg2: tensor<i32> {sdy.sharding = #sdy.sharding<@mesh, []>}
// CHECK-SAME:    %arg3: tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// CHECK-SAME:    -> (tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>},
// CHECK-SAME:        tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>})
// CHECK:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// CHECK-NEXT:  sdy.sharding_constraint %[[H]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// CHECK:       %[[LOOP:.*]]:2 = stablehlo.while({{.*}}, %{{.*}} = %arg1)
// CHECK:       %[[LOOP_C:.*]] = sdy.sharding_constraint %[[LOOP]]#1 <@mesh, [{}, {}]> : tensor<16x16xf32>
// CHECK-NEXT:  %[[CASE:.*]] = "stablehlo.case"(%arg2)
// CHECK-NEXT:    stablehlo.return %arg3
// CHECK:         stablehlo.return %[[LOOP_C]]
// CHECK:       sdy.sharding_constraint %[[CASE]] <@mesh, [{}, {}]> : tensor<16x16xf32>

// REPORT:      "predicted_collectives": {},
// REPORT-NEXT: "replicated_fallback_ops": [
// REPORT-NEXT:   "stablehlo.case",
// REPORT-NEXT:   "stablehlo.while"
// REPORT-NEXT: ],

// EXEC: collectives: all-reduce=0 all-gather=0 reduce-scatter=0 all-to-all=0 collective-permute=0
// EXEC: reference check: PASS (2 outputs match)

module @fallback {
  func.func @main(%x: tensor<8192x16xf32>, %w: tensor<16x16xf32>, %idx: tensor<i32>, %a: tensor<16x16xf32>)
      -> (tensor<8192x16xf32>, tensor<16x16xf32>) {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8192x16xf32>, tensor<16x16xf32>) -> tensor<8192x16xf32>
    %c0 = stablehlo.constant dense<0> : tensor<i32>
    // expected-warning @+1 {{no sharding rule for 'stablehlo.while': it runs replicated}}
    %r:2 = stablehlo.while(%i = %c0, %v = %w) : tensor<i32>, tensor<16x16xf32>
     cond {
      %three = stablehlo.constant dense<3> : tensor<i32>
      %lt = stablehlo.compare LT, %i, %three, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    } do {
      %one = stablehlo.constant dense<1> : tensor<i32>
      %i1 = stablehlo.add %i, %one : tensor<i32>
      %v1 = stablehlo.tanh %v : tensor<16x16xf32>
      stablehlo.return %i1, %v1 : tensor<i32>, tensor<16x16xf32>
    }
    // expected-warning @+1 {{no sharding rule for 'stablehlo.case': it runs replicated}}
    %c = "stablehlo.case"(%idx) ({
      stablehlo.return %a : tensor<16x16xf32>
    }, {
      stablehlo.return %r#1 : tensor<16x16xf32>
    }) : (tensor<i32>) -> tensor<16x16xf32>
    return %h, %c : tensor<8192x16xf32>, tensor<16x16xf32>
  }
}
