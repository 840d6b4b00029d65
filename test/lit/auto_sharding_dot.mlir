// alpa-auto-sharding on dot_general: the plans the ILP must find when one layout is
// clearly cheapest. Each module's @main is planned on its own (--split-input-file).
//
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=8})' | filecheck %s --check-prefix=MESH8
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' | filecheck %s --check-prefix=MESH2D
// Uniform links (beta=1,1): a 2-D mesh behaves like 8 devices on one axis.
// RUN: alpa-opt %s --split-input-file --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4 beta=1,1})' | filecheck %s --check-prefix=UNIFORM

// Data parallelism: a training step of a 2-layer MLP with a large batch (8192) and tiny
// weights (16x16). Splitting the batch over every device leaves only the two weight
// gradients (x^T dy contracts the batch) to all-reduce; any weight split would move
// (gather or all-to-all) the 512 KiB activations instead. Weights and their gradients
// stay replicated.

// MESH8-LABEL: module @data_parallel
// MESH8:       sdy.mesh @mesh = <["x"=8]>
// MESH8:       func.func @main(
// MESH8-SAME:    %arg0: tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}
// MESH8-SAME:    %arg1: tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// MESH8-SAME:    %arg2: tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// MESH8-SAME:    -> (tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}
// MESH8-SAME:        tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// MESH8-SAME:        tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>})
// MESH8:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// MESH8-NEXT:  sdy.sharding_constraint %[[H]] <@mesh, [{"x"}, {}]> : tensor<8192x16xf32>
// MESH8:       stablehlo.tanh
// MESH8-NEXT:  sdy.sharding_constraint {{.*}} <@mesh, [{"x"}, {}]> : tensor<8192x16xf32>
// MESH8:       %[[GW2:.*]] = stablehlo.dot_general {{.*}}, contracting_dims = [0] x [0]
// MESH8-NEXT:  sdy.sharding_constraint %[[GW2]] <@mesh, [{}, {}]> : tensor<16x16xf32>
// MESH8:       %[[GW1:.*]] = stablehlo.dot_general %arg0, {{.*}}, contracting_dims = [0] x [0]
// MESH8-NEXT:  sdy.sharding_constraint %[[GW1]] <@mesh, [{}, {}]> : tensor<16x16xf32>

// On a 2-D mesh the batch takes both axes, major axis first.
// MESH2D-LABEL: module @data_parallel
// MESH2D:       sdy.mesh @mesh = <["x"=2, "y"=4]>
// MESH2D:       func.func @main(
// MESH2D-SAME:    %arg0: tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// MESH2D-SAME:    %arg1: tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// MESH2D-SAME:    %arg2: tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// MESH2D-SAME:    -> (tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// MESH2D:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// MESH2D-NEXT:  sdy.sharding_constraint %[[H]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// MESH2D:       %[[GW2:.*]] = stablehlo.dot_general {{.*}}, contracting_dims = [0] x [0]
// MESH2D-NEXT:  sdy.sharding_constraint %[[GW2]] <@mesh, [{}, {}]> : tensor<16x16xf32>
// MESH2D:       %[[GW1:.*]] = stablehlo.dot_general %arg0, {{.*}}, contracting_dims = [0] x [0]
// MESH2D-NEXT:  sdy.sharding_constraint %[[GW1]] <@mesh, [{}, {}]> : tensor<16x16xf32>
module @data_parallel {
  func.func @main(%x: tensor<8192x16xf32>, %w1: tensor<16x16xf32>, %w2: tensor<16x16xf32>)
      -> (tensor<8192x16xf32>, tensor<16x16xf32>, tensor<16x16xf32>) {
    %h = stablehlo.dot_general %x, %w1, contracting_dims = [1] x [0] : (tensor<8192x16xf32>, tensor<16x16xf32>) -> tensor<8192x16xf32>
    %a = stablehlo.tanh %h : tensor<8192x16xf32>
    %y = stablehlo.dot_general %a, %w2, contracting_dims = [1] x [0] : (tensor<8192x16xf32>, tensor<16x16xf32>) -> tensor<8192x16xf32>
    // backward with dy = y
    %gw2 = stablehlo.dot_general %a, %y, contracting_dims = [0] x [0] : (tensor<8192x16xf32>, tensor<8192x16xf32>) -> tensor<16x16xf32>
    %ga = stablehlo.dot_general %y, %w2, contracting_dims = [1] x [1] : (tensor<8192x16xf32>, tensor<16x16xf32>) -> tensor<8192x16xf32>
    %gh = stablehlo.multiply %ga, %a : tensor<8192x16xf32>
    %gw1 = stablehlo.dot_general %x, %gh, contracting_dims = [0] x [0] : (tensor<8192x16xf32>, tensor<8192x16xf32>) -> tensor<16x16xf32>
    %w1n = stablehlo.subtract %w1, %gw1 : tensor<16x16xf32>
    %w2n = stablehlo.subtract %w2, %gw2 : tensor<16x16xf32>
    return %y, %w1n, %w2n : tensor<8192x16xf32>, tensor<16x16xf32>, tensor<16x16xf32>
  }
}

// -----

// Megatron: a training step with a tiny batch (8x256) and big weights (256x1024,
// 1024x256). W1 is split by columns and W2 by rows: the hidden activations are split
// along the hidden dim, the second matmul contracts over it (the one all-reduce, of the
// 8x256 output), and both weight gradients come out in their weight's layout with no
// communication. Data parallelism would all-reduce 2 MiB of gradients instead.

// MESH8-LABEL: module @megatron
// MESH8:       func.func @main(
// MESH8-SAME:    %arg0: tensor<8x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// MESH8-SAME:    %arg1: tensor<256x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x"}]>}
// MESH8-SAME:    %arg2: tensor<1024x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}
// MESH8-SAME:    -> (tensor<8x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// MESH8-SAME:        tensor<256x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x"}]>}
// MESH8-SAME:        tensor<1024x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>})
// Column-parallel: the hidden activation is split along the hidden dim.
// MESH8:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// MESH8-NEXT:  sdy.sharding_constraint %[[H]] <@mesh, [{}, {"x"}]> : tensor<8x1024xf32>
// MESH8:       stablehlo.tanh
// MESH8-NEXT:  sdy.sharding_constraint {{.*}} <@mesh, [{}, {"x"}]> : tensor<8x1024xf32>
// Row-parallel: contracting the split hidden dim gives a replicated (all-reduced) output.
// MESH8:       %[[Y:.*]] = stablehlo.dot_general {{.*}}, %arg2, contracting_dims = [1] x [0]
// MESH8-NEXT:  sdy.sharding_constraint %[[Y]] <@mesh, [{}, {}]> : tensor<8x256xf32>
// MESH8:       %[[GW2:.*]] = stablehlo.dot_general {{.*}}, contracting_dims = [0] x [0]
// MESH8-NEXT:  sdy.sharding_constraint %[[GW2]] <@mesh, [{"x"}, {}]> : tensor<1024x256xf32>
// MESH8:       %[[GA:.*]] = stablehlo.dot_general {{.*}}, %arg2, contracting_dims = [1] x [1]
// MESH8-NEXT:  sdy.sharding_constraint %[[GA]] <@mesh, [{}, {"x"}]> : tensor<8x1024xf32>
// MESH8:       %[[GW1:.*]] = stablehlo.dot_general %arg0, {{.*}}, contracting_dims = [0] x [0]
// MESH8-NEXT:  sdy.sharding_constraint %[[GW1]] <@mesh, [{}, {"x"}]> : tensor<256x1024xf32>
// MESH8:       stablehlo.subtract %arg1
// MESH8-NEXT:  sdy.sharding_constraint {{.*}} <@mesh, [{}, {"x"}]> : tensor<256x1024xf32>
// MESH8:       stablehlo.subtract %arg2
// MESH8-NEXT:  sdy.sharding_constraint {{.*}} <@mesh, [{"x"}, {}]> : tensor<1024x256xf32>

// With uniform links the same plan uses both axes of the 2-D mesh on the hidden dim.
// UNIFORM-LABEL: module @megatron
// UNIFORM:       sdy.mesh @mesh = <["x"=2, "y"=4]>
// UNIFORM:       func.func @main(
// UNIFORM-SAME:    %arg0: tensor<8x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// UNIFORM-SAME:    %arg1: tensor<256x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}]>}
// UNIFORM-SAME:    %arg2: tensor<1024x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// UNIFORM:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// UNIFORM-NEXT:  sdy.sharding_constraint %[[H]] <@mesh, [{}, {"x", "y"}]> : tensor<8x1024xf32>
// UNIFORM:       %[[Y:.*]] = stablehlo.dot_general {{.*}}, %arg2, contracting_dims = [1] x [0]
// UNIFORM-NEXT:  sdy.sharding_constraint %[[Y]] <@mesh, [{}, {}]> : tensor<8x256xf32>
// UNIFORM:       %[[GW2:.*]] = stablehlo.dot_general {{.*}}, contracting_dims = [0] x [0]
// UNIFORM-NEXT:  sdy.sharding_constraint %[[GW2]] <@mesh, [{"x", "y"}, {}]> : tensor<1024x256xf32>
// UNIFORM:       %[[GW1:.*]] = stablehlo.dot_general %arg0, {{.*}}, contracting_dims = [0] x [0]
// UNIFORM-NEXT:  sdy.sharding_constraint %[[GW1]] <@mesh, [{}, {"x", "y"}]> : tensor<256x1024xf32>
module @megatron {
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

// -----

// A batched dot_general (attention-score-like): the batch dim (dim 0 of lhs, dim 1 of
// rhs) is split over every device, so neither operand is replicated and nothing moves.
// The output puts the batch dim first.

// MESH8-LABEL: module @batched
// MESH8:       func.func @main(
// MESH8-SAME:    %arg0: tensor<8x64x32xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}, {}]>}
// MESH8-SAME:    %arg1: tensor<32x8x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x"}, {}]>}
// MESH8-SAME:    -> (tensor<8x64x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}, {}]>})
// MESH8:       %[[D:.*]] = stablehlo.dot_general %arg0, %arg1, batching_dims = [0] x [1]
// MESH8-NEXT:  sdy.sharding_constraint %[[D]] <@mesh, [{"x"}, {}, {}]> : tensor<8x64x64xf32>

// MESH2D-LABEL: module @batched
// MESH2D:       func.func @main(
// MESH2D-SAME:    %arg0: tensor<8x64x32xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}, {}]>}
// MESH2D-SAME:    %arg1: tensor<32x8x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x", "y"}, {}]>}
// MESH2D-SAME:    -> (tensor<8x64x64xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}, {}]>})
// MESH2D:       %[[D:.*]] = stablehlo.dot_general %arg0, %arg1, batching_dims = [0] x [1]
// MESH2D-NEXT:  sdy.sharding_constraint %[[D]] <@mesh, [{"x", "y"}, {}, {}]> : tensor<8x64x64xf32>
module @batched {
  func.func @main(%q: tensor<8x64x32xf32>, %k: tensor<32x8x64xf32>) -> tensor<8x64x64xf32> {
    %s = stablehlo.dot_general %q, %k, batching_dims = [0] x [1], contracting_dims = [2] x [0] : (tensor<8x64x32xf32>, tensor<32x8x64xf32>) -> tensor<8x64x64xf32>
    return %s : tensor<8x64x64xf32>
  }
}

// -----

// A 2-D mesh with different axes: the batch (2) only divides by "x", the hidden dims
// only by "y" (12 is not a multiple of 8): data parallel on "x", Megatron on "y". (The
// 96-byte input itself may stay replicated: slicing it is free.)

// MESH2D-LABEL: module @dp_x_mp_y
// MESH2D:       func.func @main(
// MESH2D-SAME:    %arg1: tensor<12x4096xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"y"}]>}
// MESH2D-SAME:    %arg2: tensor<4096x12xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"y"}, {}]>}
// MESH2D-SAME:    -> (tensor<2x12xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>})
// MESH2D:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// MESH2D-NEXT:  sdy.sharding_constraint %[[H]] <@mesh, [{"x"}, {"y"}]> : tensor<2x4096xf32>
// MESH2D:       %[[Y:.*]] = stablehlo.dot_general {{.*}}, %arg2
// MESH2D-NEXT:  sdy.sharding_constraint %[[Y]] <@mesh, [{"x"}, {}]> : tensor<2x12xf32>
module @dp_x_mp_y {
  func.func @main(%x: tensor<2x12xf32>, %w1: tensor<12x4096xf32>, %w2: tensor<4096x12xf32>) -> tensor<2x12xf32> {
    %h = stablehlo.dot_general %x, %w1, contracting_dims = [1] x [0] : (tensor<2x12xf32>, tensor<12x4096xf32>) -> tensor<2x4096xf32>
    %a = stablehlo.tanh %h : tensor<2x4096xf32>
    %y = stablehlo.dot_general %a, %w2, contracting_dims = [1] x [0] : (tensor<2x4096xf32>, tensor<4096x12xf32>) -> tensor<2x12xf32>
    return %y : tensor<2x12xf32>
  }
}

// -----

// func.call helpers are inlined first (and the dead callee dropped): the plan is the
// one of the inlined data-parallel chain.
// MESH2D-LABEL: module @calls_inlined
// MESH2D-NOT:   func.func private @dense
// MESH2D:       func.func @main(
// MESH2D-SAME:    %arg0: tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// MESH2D-SAME:    %arg1: tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// MESH2D-SAME:    %arg2: tensor<16x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// MESH2D-NOT:   func.call
// MESH2D:       %[[H1:.*]] = stablehlo.dot_general %arg0, %arg1
// MESH2D-NEXT:  sdy.sharding_constraint %[[H1]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// MESH2D:       %[[H2:.*]] = stablehlo.dot_general {{.*}}, %arg2
// MESH2D-NEXT:  sdy.sharding_constraint %[[H2]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// MESH2D-NOT:   func.call
// MESH2D:       return
module @calls_inlined {
  func.func private @dense(%x: tensor<8192x16xf32>, %w: tensor<16x16xf32>) -> tensor<8192x16xf32> {
    %h = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8192x16xf32>, tensor<16x16xf32>) -> tensor<8192x16xf32>
    %a = stablehlo.tanh %h : tensor<8192x16xf32>
    return %a : tensor<8192x16xf32>
  }
  func.func @main(%x: tensor<8192x16xf32>, %w1: tensor<16x16xf32>, %w2: tensor<16x16xf32>) -> tensor<8192x16xf32> {
    %0 = func.call @dense(%x, %w1) : (tensor<8192x16xf32>, tensor<16x16xf32>) -> tensor<8192x16xf32>
    %1 = func.call @dense(%0, %w2) : (tensor<8192x16xf32>, tensor<16x16xf32>) -> tensor<8192x16xf32>
    return %1 : tensor<8192x16xf32>
  }
}

// -----

// Existing shardings (another mesh, a constraint that splits the features) are
// replaced by the plan, which splits the batch.
// MESH2D-LABEL: module @annotated_input
// MESH2D-NOT:   @old
// MESH2D:       sdy.mesh @mesh = <["x"=2, "y"=4]>
// MESH2D-NOT:   @old
// MESH2D:       %arg0: tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x", "y"}, {}]>}
// MESH2D-NOT:   sdy.sharding_constraint %arg0
// MESH2D:       %[[H:.*]] = stablehlo.dot_general %arg0, %arg1
// MESH2D-NEXT:  sdy.sharding_constraint %[[H]] <@mesh, [{"x", "y"}, {}]> : tensor<8192x16xf32>
// MESH2D-NOT:   @old
module @annotated_input {
  sdy.mesh @old = <["a"=8]>
  func.func @main(%x: tensor<8192x16xf32> {sdy.sharding = #sdy.sharding<@old, [{}, {"a"}]>}, %w: tensor<16x16xf32>) -> tensor<8192x16xf32> {
    %c = sdy.sharding_constraint %x <@old, [{}, {"a"}]> : tensor<8192x16xf32>
    %h = stablehlo.dot_general %c, %w, contracting_dims = [1] x [0] : (tensor<8192x16xf32>, tensor<16x16xf32>) -> tensor<8192x16xf32>
    return %h : tensor<8192x16xf32>
  }
}
