// alpa-auto-sharding's errors and warnings: `file:line:col: error: message` (options that
// are wrong whatever the input at the pass in the pipeline text, `<pass-pipeline>:1:col`),
// exit status 1, no Python traceback.

// Bad option values are reported at the option in the pipeline text.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2y4})' 2>&1 | filecheck %s --check-prefix=MESH-SYNTAX
// MESH-SYNTAX-NOT: Traceback
// MESH-SYNTAX:     <pass-pipeline>:1:16: error: bad value for option 'mesh' of alpa-auto-sharding: expected a mesh shape like 8 or 2x4, got '2y4'
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=0})' 2>&1 | filecheck %s --check-prefix=MESH-ZERO
// MESH-ZERO: <pass-pipeline>:1:16: error: bad value for option 'mesh' of alpa-auto-sharding: mesh dimensions must be positive, got '0'
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract solver=glpk})' 2>&1 | filecheck %s --check-prefix=SOLVER
// SOLVER: <pass-pipeline>:1:16: error: bad value for option 'solver' of alpa-auto-sharding: expected one of auto, scip, highs, cbc, cp-sat, got 'glpk'

// Options that disagree with each other: also errors in the pipeline text.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 mesh-axes=x})' 2>&1 | filecheck %s --check-prefix=AXES-COUNT
// AXES-COUNT-NOT: Traceback
// AXES-COUNT:     <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: mesh=2x4 has 2 axes but mesh-axes names 1: x
// Duplicate axis names are a user error like the others, not an internal one.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 mesh-axes=x,x})' 2>&1 | filecheck %s --check-prefix=AXES-DUP
// AXES-DUP-NOT: Traceback
// AXES-DUP-NOT: internal error
// AXES-DUP:     <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: mesh axis names must be distinct, got x,x
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 alpha=1})' 2>&1 | filecheck %s --check-prefix=ALPHA
// ALPHA: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: alpha needs one value per mesh axis (2 for mesh=2x4), got 1: 1.0
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=8 beta=1,0.1})' 2>&1 | filecheck %s --check-prefix=BETA
// BETA: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: beta needs one value per mesh axis (1 for mesh=8), got 2: 1.0,0.1

// Data-parallel options that do not fit the mesh or the module.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 batch-axis=z})' 2>&1 | filecheck %s --check-prefix=BATCH-AXIS
// BATCH-AXIS: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: batch-axis=z is not a mesh axis (x,y)
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=8 batch-args=99 force-data-parallel=true})' 2>&1 | filecheck %s --check-prefix=BATCH-ARGS
// BATCH-ARGS: {{.*}}auto_sharding_failures.mlir:{{[0-9]+}}:3: error: batch-args names argument 99, but @main has {{[0-9]+}} arguments
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=8 zero-stage=2})' 2>&1 | filecheck %s --check-prefix=ZERO
// ZERO: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: zero-stage=1 and 2 are prefer-reduce-scatter's territory: use prefer-reduce-scatter=true

// Clusters: an unknown preset, a missing file, a file that is not JSON, one that lacks
// a key (errors in the pipeline text, before any pass runs), and a mesh with more devices
// than the cluster has.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=dgx-9000})' 2>&1 | filecheck %s --check-prefix=PRESET
// PRESET: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: unknown cluster 'dgx-9000' (presets: a100-8, alpa-abstract, h100-8, p3.16xlarge; or a path to a .json file)
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=%t.missing.json})' 2>&1 | filecheck %s --check-prefix=NOFILE
// NOFILE: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: cannot read cluster file '{{.*}}.missing.json': No such file or directory
// RUN: echo '{"hosts": 1,' > %t.bad.json
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=%t.bad.json})' 2>&1 | filecheck %s --check-prefix=BADJSON
// BADJSON: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: cluster file '{{.*}}.bad.json' is not valid JSON: {{.*}} (line {{[0-9]+}})
// RUN: echo '{"name": "half", "hosts": 1, "devices_per_host": 8}' > %t.partial.json
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=%t.partial.json})' 2>&1 | filecheck %s --check-prefix=NOKEY
// NOKEY: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: cluster {{.*}}.partial.json: missing key 'device'
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=4x4})' 2>&1 | filecheck %s --check-prefix=TOO-BIG
// TOO-BIG: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: mesh 4x4 needs 16 devices; cluster alpa-abstract has 8
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=16 cluster=a100-8})' 2>&1 | filecheck %s --check-prefix=TOO-BIG-PRESET
// TOO-BIG-PRESET: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: mesh 16 needs 16 devices; cluster a100-8 has 8

// Diagnostics at the IR: the chunks below, each planned on its own. No @main is an
// error at the module; an op without a rule warns at the op and the chunk is still
// written, planned around the replicated op.
// RUN: alpa-opt %s --split-input-file --verify-diagnostics --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})'
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' 2>%t.err | filecheck %s --check-prefix=OUT
// RUN: filecheck %s --input-file=%t.err --check-prefix=DIAG
// DIAG-NOT: Traceback

// DIAG: {{.*}}auto_sharding_failures.mlir:[[# @LINE + 2]]:1: error: alpa-auto-sharding needs a @main function
// expected-error @+1 {{alpa-auto-sharding needs a @main function}}
module @no_main {
  func.func @forward(%x: tensor<8x8xf32>) -> tensor<8x8xf32> {
    return %x : tensor<8x8xf32>
  }
}

// -----

// The custom call runs replicated: its input is replicated too (rather than split over
// the 8 devices and gathered), and the elementwise op after it stays replicated.
// OUT-LABEL: module @custom_call
// OUT:       func.func @main(
// OUT-SAME:    %arg0: tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// OUT-SAME:    -> (tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>})
// OUT:       %[[CC:.*]] = stablehlo.custom_call @foo(%arg0)
// OUT-NEXT:  %[[CC_C:.*]] = sdy.sharding_constraint %[[CC]] <@mesh, [{}, {}]> : tensor<64x3xf32>
// OUT-NEXT:  %[[T:.*]] = stablehlo.tanh %[[CC_C]]
// OUT-NEXT:  sdy.sharding_constraint %[[T]] <@mesh, [{}, {}]> : tensor<64x3xf32>
module @custom_call {
  func.func @main(%x: tensor<64x3xf32>) -> tensor<64x3xf32> {
    // DIAG: {{.*}}auto_sharding_failures.mlir:[[# @LINE + 2]]:10: warning: no sharding rule for 'stablehlo.custom_call' @foo: it runs replicated
    // expected-warning @+1 {{no sharding rule for 'stablehlo.custom_call' @foo: it runs replicated}}
    %0 = stablehlo.custom_call @foo(%x) : (tensor<64x3xf32>) -> tensor<64x3xf32>
    %1 = stablehlo.tanh %0 : tensor<64x3xf32>
    return %1 : tensor<64x3xf32>
  }
}

// -----

// OUT-LABEL: module @rng
// OUT:       %[[U:.*]] = stablehlo.rng
// OUT-NEXT:  sdy.sharding_constraint %[[U]] <@mesh, [{}, {}]> : tensor<8x8xf32>
module @rng {
  func.func @main() -> tensor<8x8xf32> {
    %lo = stablehlo.constant dense<0.0> : tensor<f32>
    %hi = stablehlo.constant dense<1.0> : tensor<f32>
    %shape = stablehlo.constant dense<[8, 8]> : tensor<2xi64>
    // DIAG: {{.*}}auto_sharding_failures.mlir:[[# @LINE + 2]]:10: warning: no sharding rule for 'stablehlo.rng': it runs replicated
    // expected-warning @+1 {{no sharding rule for 'stablehlo.rng': it runs replicated}}
    %u = stablehlo.rng %lo, %hi, %shape, distribution = UNIFORM : (tensor<f32>, tensor<f32>, tensor<2xi64>) -> tensor<8x8xf32>
    return %u : tensor<8x8xf32>
  }
}

// -----

// An impossible per-device memory budget, at the function: the message names the budget
// and the smallest peak any plan reaches (the 64x3 f32 input and its tanh, 768 bytes
// each, split over 8 devices: 2 x 96 bytes).
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 memory-limit=1})' 2>&1 | filecheck %s --check-prefix=BUDGET
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 memory-limit=191})' 2>&1 | filecheck %s --check-prefix=BUDGET-EDGE
// The smallest reachable peak itself is a feasible budget.
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 memory-limit=192})' 2>&1 | filecheck %s --check-prefix=BUDGET-OK
// BUDGET-NOT: Traceback
// BUDGET:     {{.*}}auto_sharding_failures.mlir:[[# @LINE + 5]]:3: error: memory-limit=1 bytes per device cannot be met; the smallest peak this model can reach on this mesh is 192 bytes
// BUDGET-EDGE: {{.*}}auto_sharding_failures.mlir:[[# @LINE + 4]]:3: error: memory-limit=191 bytes per device cannot be met; the smallest peak this model can reach on this mesh is 192 bytes
// BUDGET-OK:     module @memory
// BUDGET-OK:     %arg0: tensor<64x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
module @memory {
  func.func @main(%x: tensor<64x3xf32>) -> tensor<64x3xf32> {
    %0 = stablehlo.tanh %x : tensor<64x3xf32>
    return %0 : tensor<64x3xf32>
  }
}
