// alpa-gradient-accumulation error paths, each at the op's location.
// RUN: alpa-opt %s --split-input-file --verify-diagnostics --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=4})'
// RUN: not alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-gradient-accumulation{num-microbatches=3})' 2>&1 | filecheck %s --check-prefix=DIVIDE

// DIVIDE-NOT: Traceback
// DIVIDE: error: alpa-gradient-accumulation: batch argument 1 (tensor<8x4xf32>) has batch size 8, which num-microbatches=3 does not divide

// A max over the batch is not a sum: it cannot be accumulated.
func.func @main(%w: tensor<4x2xf32> {tf.aliasing_output = 0 : i32}, %x: tensor<8x4xf32>) -> (tensor<4x2xf32>, tensor<f32>) {
  %p = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4x2xf32>) -> tensor<8x2xf32>
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  // expected-error @+1 {{'stablehlo.reduce' over the batch is not a sum with a zero init}}
  %m = stablehlo.reduce(%p init: %z) applies stablehlo.maximum across dimensions = [0, 1] : (tensor<8x2xf32>, tensor<f32>) -> tensor<f32>
  return %w, %m : tensor<4x2xf32>, tensor<f32>
}

// -----

// Sorting over the batch mixes examples.
func.func @main(%w: tensor<4xf32> {tf.aliasing_output = 0 : i32}, %x: tensor<8x4xf32>) -> (tensor<4xf32>, tensor<f32>) {
  // expected-error @+1 {{'stablehlo.sort' sorts over the batch (a sort, argsort or top-k across examples): a microbatch holds only some of the examples, so it cannot compute this; keep such work within each example (or do it before the step), or run with num-microbatches=1}}
  %s = "stablehlo.sort"(%x) ({
  ^bb0(%a: tensor<f32>, %b: tensor<f32>):
    %lt = stablehlo.compare LT, %a, %b : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) {dimension = 0 : i64, is_stable = false} : (tensor<8x4xf32>) -> tensor<8x4xf32>
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  %r = stablehlo.reduce(%s init: %z) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x4xf32>, tensor<f32>) -> tensor<f32>
  return %w, %r : tensor<4xf32>, tensor<f32>
}

// -----

// A slice that keeps some of the examples (x[::2]) is per-example work that depends on
// which examples a microbatch holds.
func.func @main(%w: tensor<4xf32> {tf.aliasing_output = 0 : i32}, %x: tensor<8x4xf32>) -> (tensor<4xf32>, tensor<f32>) {
  // expected-error @+1 {{'stablehlo.slice' selects examples (x[:k] or x[::s] on the batch dim): a microbatch holds only some of the examples}}
  %s = stablehlo.slice %x [0:8:2, 0:4] : (tensor<8x4xf32>) -> tensor<4x4xf32>
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  %r = stablehlo.reduce(%s init: %z) applies stablehlo.add across dimensions = [0, 1] : (tensor<4x4xf32>, tensor<f32>) -> tensor<f32>
  return %w, %r : tensor<4xf32>, tensor<f32>
}
