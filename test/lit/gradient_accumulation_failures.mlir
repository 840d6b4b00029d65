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

// -----

// A cumulative sum over the batch (MoE capacity positions count the tokens of all
// examples): each microbatch would count only its own, so it needs the flag.
func.func @main(%w: tensor<4x2xf32> {tf.aliasing_output = 0 : i32}, %x: tensor<8x4xf32>) -> (tensor<4x2xf32>, tensor<f32>) {
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  // expected-error @+1 {{'stablehlo.reduce_window' is a cumulative reduction along the batch (a cumsum over the examples, or over the tokens of all examples as in MoE capacity positions): each microbatch would count only its own examples; pass allow-per-microbatch-statistics=true to accept that}}
  %c = "stablehlo.reduce_window"(%x, %z) <{padding = dense<[[7, 0], [0, 0]]> : tensor<2x2xi64>, window_dimensions = array<i64: 8, 1>}> ({
  ^bb0(%a: tensor<f32>, %e: tensor<f32>):
    %s = stablehlo.add %a, %e : tensor<f32>
    stablehlo.return %s : tensor<f32>
  }) : (tensor<8x4xf32>, tensor<f32>) -> tensor<8x4xf32>
  %g = stablehlo.dot_general %c, %x, contracting_dims = [0] x [0] : (tensor<8x4xf32>, tensor<8x4xf32>) -> tensor<4x4xf32>
  %g2 = stablehlo.slice %g [0:4, 0:2] : (tensor<4x4xf32>) -> tensor<4x2xf32>
  %w2 = stablehlo.subtract %w, %g2 : tensor<4x2xf32>
  %loss = stablehlo.reduce(%c init: %z) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x4xf32>, tensor<f32>) -> tensor<f32>
  return %w2, %loss : tensor<4x2xf32>, tensor<f32>
}

// -----

// A reshape that splits the batch dim over two dims ([3, 8] -> [6, 4]: the examples'
// index is now half in one dim, half in the other).
func.func @main(%w: tensor<4x2xf32> {tf.aliasing_output = 0 : i32}, %x: tensor<8x3xf32>) -> (tensor<4x2xf32>, tensor<f32>) {
  %t = stablehlo.transpose %x, dims = [1, 0] : (tensor<8x3xf32>) -> tensor<3x8xf32>
  // expected-error @+1 {{'stablehlo.reshape' splits the batch dim over several dims (or merges it with part of another), so no dim of its result holds whole examples}}
  %r = stablehlo.reshape %t : (tensor<3x8xf32>) -> tensor<6x4xf32>
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  %loss = stablehlo.reduce(%r init: %z) applies stablehlo.add across dimensions = [0, 1] : (tensor<6x4xf32>, tensor<f32>) -> tensor<f32>
  return %w, %loss : tensor<4x2xf32>, tensor<f32>
}
