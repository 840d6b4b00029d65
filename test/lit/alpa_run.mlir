// alpa-run on a hand-written SPMD module: a matmul whose contracting dimension is split
// over "x" (exactly one all-reduce after partitioning) and an elementwise op on a donated
// argument. The sharded run must match the unpartitioned reference run.

// RUN: alpa-run %s --devices 8 --reference --collectives | filecheck %s
// CHECK:      module: {{.*}}alpa_run.mlir (spmd)
// CHECK-NEXT: mesh: x=2 y=4 on cpu devices [0..7]
// CHECK-NEXT:   arg0: f32[8,16] [{"y"}, {"x"}]
// CHECK-NEXT:   arg1: f32[16,4] [{"x"}, {}] donated
// CHECK-NEXT: compile: {{[0-9.]+}} ms
// CHECK-NEXT: run: 1 x, mean {{[0-9.]+}} ms ({{[0-9.]+}} ms)
// CHECK-NEXT: collectives: all-reduce=1 all-gather=0 reduce-scatter=0 all-to-all=0 collective-permute=0 (scalar all-reduces ignored: 0)
// CHECK-NEXT: out0: [8,4] float32 max_abs_err={{[-+.e0-9]+}} max_rel_err={{[-+.e0-9]+}} ok
// CHECK-NEXT: out1: [16,4] float32 max_abs_err=0 max_rel_err=0 ok
// CHECK-NEXT: reference check: PASS (2 outputs match)

// The mesh needs 8 devices.
// RUN: not alpa-run %s --devices 4 2>&1 | filecheck %s --check-prefix=DEVICES
// DEVICES-NOT: Traceback
// DEVICES: alpa-run: error: the mesh @mesh <["x"=2, "y"=4]> needs 8 devices, but --devices is 4

// Inputs that are not an npz file (this file).
// RUN: not alpa-run %s --inputs %s 2>&1 | filecheck %s --check-prefix=NPZ
// NPZ-NOT: Traceback
// NPZ: alpa-run: error: {{.*}}alpa_run.mlir: not a readable npz file

module @matmul attributes {mhlo.num_partitions = 8 : i32, mhlo.num_replicas = 1 : i32} {
  sdy.mesh @mesh = <["x"=2, "y"=4]>
  func.func public @main(%arg0: tensor<8x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"y"}, {"x"}]>},
                         %arg1: tensor<16x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>, tf.aliasing_output = 1 : i32})
      -> (tensor<8x4xf32>, tensor<16x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}) {
    %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
    %1 = stablehlo.negate %arg1 : tensor<16x4xf32>
    return %0, %1 : tensor<8x4xf32>, tensor<16x4xf32>
  }
}
