// alpa-auto-sharding{cluster=...}: a preset name (optionally `-xN` hosts) or a JSON file
// gives each mesh axis its alpha (latency) and beta (1/bandwidth): an axis laid within a
// host uses the intra-host link, one that spans hosts the inter-host link. The plan of
// this Megatron-friendly step (see auto_sharding_dot.mlir) stays column/row split.

// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=8 cluster=p3.16xlarge report=%t.p3.json})' | filecheck %s --check-prefix=PLAN8
// RUN: filecheck %s --input-file=%t.p3.json --check-prefix=P3
// PLAN8:      sdy.mesh @mesh = <["x"=8]>
// PLAN8:      func.func @main(
// PLAN8-SAME:   %arg1: tensor<256x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x"}]>}
// PLAN8-SAME:   %arg2: tensor<1024x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}
// 8 x V100 with NVLink: 5 us, 130 GB/s.
// P3:      "mesh": {
// P3-NEXT:   "alpha": [
// P3-NEXT:     5e-06
// P3-NEXT:   ],
// P3-NEXT:   "axes": [
// P3-NEXT:     "x"
// P3-NEXT:   ],
// P3-NEXT:   "beta": [
// P3-NEXT:     7.692307692307693e-12
// P3-NEXT:   ],
// P3:      "options": {
// P3-NEXT:   "mesh": "8"
// P3-NEXT: },
// P3:      "predicted_collectives": {
// P3-NEXT:   "all-reduce": {
// P3-NEXT:     "bytes": 8192.0,
// P3-NEXT:     "count": 1

// Two p3 hosts as a 2x8 mesh: "x" spans the hosts (20 us, 3.1 GB/s), "y" stays inside.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x8 cluster=p3.16xlarge-x2 report=%t.p3x2.json})' | filecheck %s --check-prefix=PLAN16
// RUN: filecheck %s --input-file=%t.p3x2.json --check-prefix=P3X2
// PLAN16:      module @mlp_step attributes {mhlo.num_partitions = 16 : i32} {
// PLAN16-NEXT:   sdy.mesh @mesh = <["x"=2, "y"=8]>
// P3X2:      "mesh": {
// P3X2-NEXT:   "alpha": [
// P3X2-NEXT:     2e-05,
// P3X2-NEXT:     5e-06
// P3X2-NEXT:   ],
// P3X2:        "beta": [
// P3X2-NEXT:     3.225806451612903e-10,
// P3X2-NEXT:     7.692307692307693e-12
// P3X2-NEXT:   ],
// P3X2-NEXT:   "shape": [
// P3X2-NEXT:     2,
// P3X2-NEXT:     8
// P3X2-NEXT:   ]

// Every other preset loads; a 2x4 mesh inside one H100 host uses NVLink on both axes.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x4 cluster=h100-8 report=%t.h100.json})' -o /dev/null
// RUN: filecheck %s --input-file=%t.h100.json --check-prefix=H100
// H100:      "alpha": [
// H100-NEXT:   2e-06,
// H100-NEXT:   2e-06
// H100-NEXT: ],
// H100:      "beta": [
// H100-NEXT:   2.2222222222222224e-12,
// H100-NEXT:   2.2222222222222224e-12
// H100-NEXT: ],
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=8 cluster=a100-8})' | filecheck %s --check-prefix=PLAN8

// A cluster file: 2 hosts x 2 devices; on a 2x2 mesh "x" crosses hosts.
// RUN: echo '{"name": "tiny", "hosts": 2, "devices_per_host": 2, "device": {"peak_flops": 1e12, "memory_bytes": 1e9}, "intra_host": {"bandwidth": 1e9, "latency": 1e-6}, "inter_host": {"bandwidth": 1e8, "latency": 1e-5}}' > %t.tiny.json
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x2 cluster=%t.tiny.json report=%t.tiny-report.json})' | filecheck %s --check-prefix=FILE
// RUN: filecheck %s --input-file=%t.tiny-report.json --check-prefix=FILE-REPORT
// FILE:      module @mlp_step attributes {mhlo.num_partitions = 4 : i32} {
// FILE-NEXT:   sdy.mesh @mesh = <["x"=2, "y"=2]>
// FILE-REPORT:      "alpha": [
// FILE-REPORT-NEXT:   1e-05,
// FILE-REPORT-NEXT:   1e-06
// FILE-REPORT-NEXT: ],
// FILE-REPORT:      "beta": [
// FILE-REPORT-NEXT:   1e-08,
// FILE-REPORT-NEXT:   1e-09
// FILE-REPORT-NEXT: ],

module @mlp_step {
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
