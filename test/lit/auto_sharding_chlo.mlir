// alpa-auto-sharding on `chlo` ops, which JAX exports as they are and Shardy has no rule
// for: the elementwise ones (`jnp.square` is `chlo.square`, in every optax Adam,
// LayerNorm, RMSNorm and global-norm clip; `chlo.erf_inv`, `chlo.lgamma`,
// `chlo.digamma`, ...) follow their operand's layout like any elementwise op;
// `chlo.top_k` keeps its leading dims' layout and takes its last dim whole.
//
// test/lit/Inputs/chlo.mlir: a step using square, erf_inv, lgamma (its gradient is
// digamma) and top_k on a [512, 128] activation.
// RUN: alpa-opt %inputs/chlo.mlir --verify-diagnostics --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 report=%t.json})' -o %t.mlir
// RUN: filecheck %s --input-file=%t.mlir
// RUN: filecheck %s --check-prefix=REPORT --input-file=%t.json
// RUN: alpa-run %t.mlir --reference | filecheck %s --check-prefix=EXEC

// CHECK:       %[[SQ:.*]] = chlo.square %{{.*}} : tensor<512x128xf32>
// CHECK-NEXT:  sdy.sharding_constraint %[[SQ]] <@mesh, [{"x"}, {"y"}]> : tensor<512x128xf32>
// CHECK:       %[[E:.*]] = chlo.erf_inv %{{.*}} : tensor<512x128xf32>
// CHECK-NEXT:  sdy.sharding_constraint %[[E]] <@mesh, [{"x"}, {"y"}]> : tensor<512x128xf32>
// CHECK:       %[[L:.*]] = chlo.lgamma %{{.*}} : tensor<512x128xf32>
// CHECK-NEXT:  sdy.sharding_constraint %[[L]] <@mesh, [{"x"}, {"y"}]> : tensor<512x128xf32>
// CHECK:       %[[D:.*]] = chlo.digamma %{{.*}} : tensor<512x128xf32>
// CHECK-NEXT:  sdy.sharding_constraint %[[D]] <@mesh, [{"x"}, {"y"}]> : tensor<512x128xf32>
// top_k's operand is gathered along its last dim; the rows stay split.
// CHECK:       %[[IN:.*]] = sdy.sharding_constraint %{{.*}} <@mesh, [{"x"}, {}]> : tensor<512x128xf32>
// CHECK-NEXT:  %values, %indices = chlo.top_k(%[[IN]], k = 4)
// CHECK-NEXT:  sdy.sharding_constraint %indices <@mesh, [{"x"}, {}]> : tensor<512x4xi32>
// CHECK-NEXT:  sdy.sharding_constraint %values <@mesh, [{"x"}, {}]> : tensor<512x4xf32>

// REPORT: "replicated_fallback_ops": [],

// EXEC: reference check: PASS (2 outputs match)
