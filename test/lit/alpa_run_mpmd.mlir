// alpa-run on a hand-written MPMD (pipeline) module in the format of docs/mpmd-format.md:
// a 2-stage, 2-microbatch training step of a 2-layer linear model (squared-error loss,
// SGD). The sequential reference executor runs every fragment in program order on one
// device; --reference compares it with the whole program flattened into one XLA program.
// The pipeline runtime (the default executor) runs each stage on its own devices.

// RUN: alpa-run %s --executor sequential --reference --repeat 2 | filecheck %s
// CHECK:      module: {{.*}}alpa_run_mpmd.mlir (mpmd)
// CHECK-NEXT: topology: stage0 x=2
// CHECK-NEXT: topology: stage1 x=2
// CHECK-NEXT: executor: sequential (1 device)
// CHECK-NEXT:   arg0: f32[4,8] on stage0 [{}, {"x"}] donated
// CHECK-NEXT:   arg1: f32[8,4] on stage1 replicated donated
// CHECK-NEXT:   arg2: f32[16,4] on stage0 replicated
// CHECK-NEXT:   arg3: f32[16,4] on stage1 replicated
// The two "microbatches" fragments have the same body: one compiled program.
// CHECK-NEXT: fragments: 9 (8 compiled), microbatch calls: 2
// CHECK-NEXT: compile: {{[0-9.]+}} ms
// CHECK-NEXT: run: 2 x, mean {{[0-9.]+}} ms ({{[0-9.]+}} ms, {{[0-9.]+}} ms)
// CHECK-NEXT: fragment runs per step: microbatches=2 accumulators=2 forward=2 backward=4 apply=2
// CHECK-NEXT: reference: flattened module, compile {{[0-9.]+}} ms
// CHECK-NEXT: out0: [4,8] float32 max_abs_err={{[-+.e0-9]+}} max_rel_err={{[-+.e0-9]+}} ok
// CHECK-NEXT: out1: [8,4] float32 max_abs_err={{[-+.e0-9]+}} max_rel_err={{[-+.e0-9]+}} ok
// CHECK-NEXT: out2: [] float32 max_abs_err={{[-+.e0-9]+}} max_rel_err={{[-+.e0-9]+}} ok
// CHECK-NEXT: reference check: PASS (3 outputs match)

// RUN: alpa-run %s --reference --steps 2 --schedule gpipe | filecheck %s --check-prefix=PIPE
// --schedule is the pipeline executor's: with the sequential executor it is a usage error.
// RUN: not alpa-run %s --executor sequential --schedule gpipe 2>&1 | filecheck %s --check-prefix=SEQ-SCHEDULE
// SEQ-SCHEDULE: alpa-run: error: --schedule applies to MPMD modules run by the pipeline executor
// PIPE:      module: {{.*}}alpa_run_mpmd.mlir (mpmd)
// PIPE-NEXT: topology: stage0 x=2 on devices [0,1]
// PIPE-NEXT: topology: stage1 x=2 on devices [2,3]
// PIPE-NEXT: executor: pipeline (gpipe, 2 stages, 2 microbatches, {{[0-9]+}} instructions)
// PIPE:      step 2:
// PIPE:      per step: 12 fragment runs, {{[0-9]+}} transfers
// PIPE:      reference: flattened module on one device, 2 step(s)
// PIPE:      reference check: PASS (3 outputs match)

// --cache-dir keeps the compiled fragments: the second run reads them back from disk.
// RUN: rm -rf %t.cache
// RUN: alpa-run %s --cache-dir %t.cache --reference | filecheck %s --check-prefix=CACHE1
// CACHE1: fragments: 9 (9 compiled), compile: {{[0-9.]+}} ms, {{[0-9]+}} fragment inputs donated
// CACHE1: reference check: PASS (3 outputs match)
// RUN: alpa-run %s --cache-dir %t.cache --reference | filecheck %s --check-prefix=CACHE2
// CACHE2: fragments: 9 (9 compiled, 9 from {{.*}}.cache), compile: {{[0-9.]+}} ms
// CACHE2: reference check: PASS (3 outputs match)
// --no-donate: no fragment consumes an input, and the run still matches.
// RUN: alpa-run %s --no-donate --reference | filecheck %s --check-prefix=NODONATE
// NODONATE: fragments: 9 (9 compiled), compile: {{[0-9.]+}} ms, 0 fragment inputs donated
// NODONATE: reference check: PASS (3 outputs match)
// RUN: not alpa-run %s --executor sequential --cache-dir %t.cache 2>&1 | filecheck %s --check-prefix=SEQCACHE
// SEQCACHE: alpa-run: error: --cache-dir applies to MPMD modules run by the pipeline executor

// Outputs go to an npz as out0..out2.
// RUN: alpa-run %s --seed 3 --outputs %t.out.npz | filecheck %s --check-prefix=OUTPUTS
// OUTPUTS: outputs: 3 written to {{.*}}.out.npz
// RUN: %python -c "import numpy as np; d = np.load('%t.out.npz'); print(sorted(d.files), d['out0'].shape, d['out2'].shape)" | filecheck %s --check-prefix=KEYS
// KEYS: ['out0', 'out1', 'out2'] (4, 8) ()

// Inputs of the wrong shape.
// RUN: %python -c "import numpy as np; z = np.zeros; np.savez('%t.in.npz', arg0=z((4, 8), 'f4'), arg1=z((8, 4), 'f4'), arg2=z((16, 4), 'f4'), arg3=z((8, 4), 'f4'))"
// RUN: not alpa-run %s --inputs %t.in.npz 2>&1 | filecheck %s --check-prefix=SHAPE
// SHAPE-NOT: Traceback
// SHAPE: alpa-run: error: {{.*}}.in.npz: key arg3: expected f32[16,4] (float32 (16, 4)), got float32 (8, 4)

// --collectives and --stats describe one SPMD program: refused for MPMD modules.
// RUN: not alpa-run %s --collectives 2>&1 | filecheck %s --check-prefix=FLAGS
// FLAGS-NOT: Traceback
// FLAGS: alpa-run: error: --collectives applies to plain and SPMD modules; {{.*}}alpa_run_mpmd.mlir is an MPMD module

!w0 = !mpmd.mesh_tensor<"stage0", tensor<4x8xf32>, sharding=<@stage0, [{}, {"x"}]>>
!x0 = !mpmd.mesh_tensor<"stage0", tensor<16x4xf32>>
!xm = !mpmd.mesh_tensor<"stage0", tensor<8x4xf32>>
!h0 = !mpmd.mesh_tensor<"stage0", tensor<8x8xf32>>
!g0 = !mpmd.mesh_tensor<"stage0", tensor<4x8xf32>>
!w1 = !mpmd.mesh_tensor<"stage1", tensor<8x4xf32>>
!y1 = !mpmd.mesh_tensor<"stage1", tensor<16x4xf32>>
!ym = !mpmd.mesh_tensor<"stage1", tensor<8x4xf32>>
!h1 = !mpmd.mesh_tensor<"stage1", tensor<8x8xf32>>
!l1 = !mpmd.mesh_tensor<"stage1", tensor<f32>>
!l0 = !mpmd.mesh_tensor<"stage0", tensor<f32>>
// @main: microbatch slices, zero accumulators, one mpmd.call per microbatch, the loss
// moved to stage0, one apply (SGD) fragment per stage. @microbatch: forward on stage0
// (with a sharding constraint on @stage0), forward+backward on stage1, backward on stage0.
module @step {
  sdy.mesh @stage0 = <["x"=2]>
  sdy.mesh @stage1 = <["x"=2]>
  func.func @main(%w0: !w0 {tf.aliasing_output = 0 : i32}, %w1: !w1 {tf.aliasing_output = 1 : i32}, %x: !x0, %y: !y1)
      -> (!w0, !w1, !l0) attributes {topology = #mpmd.topology<<"stage0": <["x"=2]>>, <"stage1": <["x"=2]>>>, alpa.num_microbatches = 2 : i64} {
    %xm:2 = mpmd.fragment<mesh="stage0", origin=["microbatches"]> (%x) {alpa.kind = "microbatches"} (%a: tensor<16x4xf32>) {
      %0 = stablehlo.slice %a [0:8, 0:4] : (tensor<16x4xf32>) -> tensor<8x4xf32>
      %1 = stablehlo.slice %a [8:16, 0:4] : (tensor<16x4xf32>) -> tensor<8x4xf32>
      mpmd.return %0, %1 : tensor<8x4xf32>, tensor<8x4xf32>
    } : (!x0) -> (!xm, !xm)
    %ym:2 = mpmd.fragment<mesh="stage1", origin=["microbatches"]> (%y) {alpa.kind = "microbatches"} (%a: tensor<16x4xf32>) {
      %0 = stablehlo.slice %a [0:8, 0:4] : (tensor<16x4xf32>) -> tensor<8x4xf32>
      %1 = stablehlo.slice %a [8:16, 0:4] : (tensor<16x4xf32>) -> tensor<8x4xf32>
      mpmd.return %0, %1 : tensor<8x4xf32>, tensor<8x4xf32>
    } : (!y1) -> (!ym, !ym)
    %z0 = mpmd.fragment<mesh="stage0", origin=["accumulators"]> () {alpa.kind = "accumulators"} () {
      %0 = stablehlo.constant dense<0.0> : tensor<4x8xf32>
      mpmd.return %0 : tensor<4x8xf32>
    } : () -> !g0
    %z1:2 = mpmd.fragment<mesh="stage1", origin=["accumulators"]> () {alpa.kind = "accumulators"} () {
      %0 = stablehlo.constant dense<0.0> : tensor<8x4xf32>
      %1 = stablehlo.constant dense<0.0> : tensor<f32>
      mpmd.return %0, %1 : tensor<8x4xf32>, tensor<f32>
    } : () -> (!w1, !l1)
    %r0:3 = mpmd.call @microbatch(%w0, %w1, %xm#0, %ym#0, %z0, %z1#0, %z1#1) {call_counter = 0 : ui32}
        : (!w0, !w1, !xm, !ym, !g0, !w1, !l1) -> (!g0, !w1, !l1)
    %r1:3 = mpmd.call @microbatch(%w0, %w1, %xm#1, %ym#1, %r0#0, %r0#1, %r0#2) {call_counter = 1 : ui32}
        : (!w0, !w1, !xm, !ym, !g0, !w1, !l1) -> (!g0, !w1, !l1)
    %loss = mpmd.transfer %r1#2 : (!l1) -> !l0
    %nw0 = mpmd.fragment<mesh="stage0", origin=["apply"], stage=0> (%w0, %r1#0) {alpa.kind = "apply"} (%w: tensor<4x8xf32>, %g: tensor<4x8xf32>) {
      %c = stablehlo.constant dense<0.1> : tensor<4x8xf32>
      %0 = stablehlo.multiply %c, %g : tensor<4x8xf32>
      %1 = stablehlo.subtract %w, %0 : tensor<4x8xf32>
      mpmd.return %1 : tensor<4x8xf32>
    } : (!w0, !g0) -> !w0
    %nw1 = mpmd.fragment<mesh="stage1", origin=["apply"], stage=1> (%w1, %r1#1) {alpa.kind = "apply"} (%w: tensor<8x4xf32>, %g: tensor<8x4xf32>) {
      %c = stablehlo.constant dense<0.1> : tensor<8x4xf32>
      %0 = stablehlo.multiply %c, %g : tensor<8x4xf32>
      %1 = stablehlo.subtract %w, %0 : tensor<8x4xf32>
      mpmd.return %1 : tensor<8x4xf32>
    } : (!w1, !w1) -> !w1
    return %nw0, %nw1, %loss : !w0, !w1, !l0
  }
  func.func private @microbatch(%w0: !w0, %w1: !w1, %x: !xm, %y: !ym, %g0: !g0, %g1: !w1, %l: !l1)
      -> (!g0, !w1, !l1) attributes {topology = #mpmd.topology<<"stage0": <["x"=2]>>, <"stage1": <["x"=2]>>>} {
    %h = mpmd.fragment<mesh="stage0", origin=["layer0"], stage=0> (%x, %w0) {alpa.kind = "forward"} (%a: tensor<8x4xf32>, %w: tensor<4x8xf32>) {
      %0 = stablehlo.dot_general %a, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>
      %1 = sdy.sharding_constraint %0 <@stage0, [{"x"}, {}]> : tensor<8x8xf32>
      mpmd.return %1 : tensor<8x8xf32>
    } : (!xm, !w0) -> !h0
    %ht = mpmd.transfer %h : (!h0) -> !h1
    %bw1:3 = mpmd.fragment<mesh="stage1", origin=["layer1"], stage=1> (%ht, %w1, %y, %g1, %l) {alpa.kind = "backward"} (%a: tensor<8x8xf32>, %w: tensor<8x4xf32>, %t: tensor<8x4xf32>, %g: tensor<8x4xf32>, %acc: tensor<f32>) {
      %0 = stablehlo.dot_general %a, %w, contracting_dims = [1] x [0] : (tensor<8x8xf32>, tensor<8x4xf32>) -> tensor<8x4xf32>
      %d = stablehlo.subtract %0, %t : tensor<8x4xf32>
      %sq = stablehlo.multiply %d, %d : tensor<8x4xf32>
      %zero = stablehlo.constant dense<0.0> : tensor<f32>
      %s = stablehlo.reduce(%sq init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<8x4xf32>, tensor<f32>) -> tensor<f32>
      %l2 = stablehlo.add %acc, %s : tensor<f32>
      %two = stablehlo.constant dense<2.0> : tensor<8x4xf32>
      %dd = stablehlo.multiply %two, %d : tensor<8x4xf32>
      %gw = stablehlo.dot_general %a, %dd, contracting_dims = [0] x [0] : (tensor<8x8xf32>, tensor<8x4xf32>) -> tensor<8x4xf32>
      %g2 = stablehlo.add %g, %gw : tensor<8x4xf32>
      %dh = stablehlo.dot_general %dd, %w, contracting_dims = [1] x [1] : (tensor<8x4xf32>, tensor<8x4xf32>) -> tensor<8x8xf32>
      mpmd.return %g2, %l2, %dh : tensor<8x4xf32>, tensor<f32>, tensor<8x8xf32>
    } : (!h1, !w1, !ym, !w1, !l1) -> (!w1, !l1, !h1)
    %dht = mpmd.transfer %bw1#2 : (!h1) -> !h0
    %g0n = mpmd.fragment<mesh="stage0", origin=["layer0"], stage=0> (%x, %dht, %g0) {alpa.kind = "backward"} (%a: tensor<8x4xf32>, %dh: tensor<8x8xf32>, %g: tensor<4x8xf32>) {
      %0 = stablehlo.dot_general %a, %dh, contracting_dims = [0] x [0] : (tensor<8x4xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
      %1 = stablehlo.add %g, %0 : tensor<4x8xf32>
      mpmd.return %1 : tensor<4x8xf32>
    } : (!xm, !h0, !g0) -> !g0
    return %g0n, %bw1#0, %bw1#1 : !g0, !w1, !l1
  }
}
