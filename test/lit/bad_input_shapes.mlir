// Dynamic shapes and shapes too large to count: every pass that needs static shapes
// refuses the module before it runs, at the first dynamic value, with exit status 1.
// alpa-strip-sharding and alpa-inline-calls only copy shapes and accept them.

// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-annotate-flops)' 2>&1 | filecheck %s --check-prefix=DYN -DPASS=alpa-annotate-flops
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding)' 2>&1 | filecheck %s --check-prefix=DYN -DPASS=alpa-auto-sharding
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-gradient-accumulation)' 2>&1 | filecheck %s --check-prefix=DYN -DPASS=alpa-gradient-accumulation
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-layer-construction)' 2>&1 | filecheck %s --check-prefix=DYN -DPASS=alpa-layer-construction
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-stage-construction)' 2>&1 | filecheck %s --check-prefix=DYN -DPASS=alpa-stage-construction
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-pipeshard)' 2>&1 | filecheck %s --check-prefix=DYN -DPASS=alpa-pipeshard
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-strip-sharding,alpa-inline-calls)' | filecheck %s --check-prefix=KEEP

// DYN-NOT: Traceback
// DYN: bad_input_shapes.mlir:[[# @LINE + 4]]:45: error: [[PASS]]: dynamic shapes are not supported: argument 1 of @main is tensor<?x4xf32>; export the step with concrete shapes
// DYN: bad_input_shapes.mlir:[[# @LINE + 11]]:8: error: [[PASS]]: dynamic shapes are not supported: result 0 of 'stablehlo.dynamic_reshape' is tensor<?x4xf32>
// DYN: bad_input_shapes.mlir:[[# @LINE + 18]]:24: error: [[PASS]]: dynamic shapes are not supported: argument 0 of @main is tensor<*xf32>
// KEEP: func.func public @main(%arg0: tensor<4x4xf32>, %arg1: tensor<?x4xf32>)
func.func public @main(%w: tensor<4x4xf32>, %x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %y = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}

// -----

func.func public @main(%x: tensor<8x4xf32>, %shape: tensor<2xi32>) -> tensor<f32> {
  %r = stablehlo.dynamic_reshape %x, %shape : (tensor<8x4xf32>, tensor<2xi32>) -> tensor<?x4xf32>
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  %s = stablehlo.reduce(%r init: %z) applies stablehlo.add across dimensions = [0, 1] : (tensor<?x4xf32>, tensor<f32>) -> tensor<f32>
  return %s : tensor<f32>
}

// -----

func.func public @main(%x: tensor<*xf32>) -> tensor<*xf32> {
  return %x : tensor<*xf32>
}
