// alpa-run on an MPMD module whose stashed activations go through host memory
// (`passes/pipeshard/offload.py`, docs/mpmd-format.md "Memory kinds"): three results of
// the forward fragment are moved to pinned_host memory of their mesh right after it and
// back to device memory right before the backward fragment. Both executors run it and
// match the flattened program; the pipeline runtime reports the copies and the most
// bytes it held in host memory (three f32[4,8] split over 2 devices: 3 x 128 bytes).

// RUN: alpa-run %s --reference --steps 2 | filecheck %s --check-prefix=PIPE
// PIPE:      executor: pipeline (1f1b, 1 stages, 1 microbatches, 8 instructions)
// PIPE:      per step: 2 fragment runs, 0 transfers
// PIPE-NEXT: offloaded: 6 copies between device and host memory, at most 384 bytes in host memory
// PIPE:      reference check: PASS (1 output match)

// RUN: alpa-run %s --executor sequential --reference | filecheck %s --check-prefix=SEQ
// SEQ: fragment runs per step: forward=1 backward=1
// SEQ: reference check: PASS (1 output match)

!d = !mpmd.mesh_tensor<"m", tensor<4x8xf32>, sharding=<@m, [{"x"}, {}]>>
!h = !mpmd.mesh_tensor<"m", tensor<4x8xf32>, sharding=<@m, [{"x"}, {}]>, memory_kind="pinned_host">
module {
  sdy.mesh @m = <["x"=2]>
  func.func @main(%x: !d, %y: !d) -> !d attributes {topology = #mpmd.topology<<"m": <["x"=2]>>>} {
    %f:4 = mpmd.fragment<mesh="m", origin=["layer0"], stage=0> (%x, %y) {alpa.kind = "forward"}
        (%a: tensor<4x8xf32>, %b: tensor<4x8xf32>) {
      %t = stablehlo.tanh %a {alpa.layer = 0 : i64} : tensor<4x8xf32>
      %s = stablehlo.sine %t {alpa.layer = 0 : i64} : tensor<4x8xf32>
      mpmd.return %a, %b, %s, %t : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
    } : (!d, !d) -> (!d, !d, !d, !d)
    %h0 = mpmd.transfer %f#0 : (!d) -> !h
    %h2 = mpmd.transfer %f#2 : (!d) -> !h
    %h3 = mpmd.transfer %f#3 : (!d) -> !h
    %d0 = mpmd.transfer %h0 : (!h) -> !d
    %d2 = mpmd.transfer %h2 : (!h) -> !d
    %d3 = mpmd.transfer %h3 : (!h) -> !d
    %g = mpmd.fragment<mesh="m", origin=["layer0"(1)], stage=0> (%d0, %f#1, %d2, %d3) {alpa.kind = "backward"}
        (%a: tensor<4x8xf32>, %b: tensor<4x8xf32>, %c: tensor<4x8xf32>, %e: tensor<4x8xf32>) {
      %0 = stablehlo.multiply %a, %b : tensor<4x8xf32>
      %1 = stablehlo.add %0, %c : tensor<4x8xf32>
      %2 = stablehlo.subtract %1, %e : tensor<4x8xf32>
      mpmd.return %2 : tensor<4x8xf32>
    } : (!d, !d, !d, !d) -> !d
    return %g : !d
  }
}
