// alpa-run on modules it cannot run as written: a diagnostic at the module's own
// file:line:col and exit status 1; options that do nothing get a warning.

// mhlo.num_partitions that disagrees with the mesh (XLA would compile for the wrong count).
// RUN: sed 's/num_partitions = 8/num_partitions = 4/' %s > %t.parts.mlir
// RUN: not alpa-run %t.parts.mlir 2>&1 | filecheck %s --check-prefix=PARTS
// PARTS: parts.mlir:[[# @LINE + 27]]:1: error: mhlo.num_partitions = 4 disagrees with mesh @mesh <["x"=2, "y"=4]> (8 devices): set it to 8 or remove it

// 1 is what a single-device export carries before shardings are added by hand: it runs.
// RUN: sed 's/num_partitions = 8/num_partitions = 1/' %s > %t.one.mlir
// RUN: alpa-run %t.one.mlir --reference | filecheck %s --check-prefix=ONE
// ONE: reference check: PASS

// A dynamic dim in @main's signature, at the argument.
// RUN: sed 's/tensor<8x4xf32>/tensor<?x4xf32>/g' %s > %t.dyn.mlir
// RUN: not alpa-run %t.dyn.mlir 2>&1 | filecheck %s --check-prefix=DYN
// DYN: dyn.mlir:[[# @LINE + 19]]:{{[0-9]+}}: error: argument 1 of @main: dynamic shape tensor<?x4xf32> is not supported; export the step with concrete shapes

// A token argument.
// RUN: sed 's/@main(/@main(%key: !stablehlo.token, /' %s > %t.token.mlir
// RUN: not alpa-run %t.token.mlir 2>&1 | filecheck %s --check-prefix=TOKEN
// TOKEN: token.mlir:[[# @LINE + 14]]:{{[0-9]+}}: error: argument 0 of @main: token values are not supported

// Random inputs that would not fit in memory (found by tools/fuzz.py: was a MemoryError).
// RUN: sed 's/tensor<8x4xf32>/tensor<8x4294967296xf32>/g; s/tensor<4x2xf32>/tensor<4294967296x2xf32>/g' %s > %t.huge.mlir
// RUN: not alpa-run %t.huge.mlir 2>&1 | filecheck %s --check-prefix=HUGE
// HUGE: alpa-run: error: random inputs for @main's 2 argument(s) would take {{.*}} GiB, more than this machine's {{.*}} GiB allow: the module is too large to run here

// More devices than the module uses: a warning, and the run on the mesh's 8.
// RUN: alpa-run %s --devices 12 2>&1 | filecheck %s --check-prefix=MORE
// MORE: alpa-run: warning: --devices 12 is more than {{.*}}alpa_run_bad_modules.mlir uses: its mesh @mesh <["x"=2, "y"=4]> runs on 8 devices
// MORE: mesh: x=2 y=4 on cpu devices [0..7]

module @bad attributes {mhlo.num_partitions = 8 : i32} {
  sdy.mesh @mesh = <["x"=2, "y"=4]>
  func.func public @main(%w: tensor<4x2xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}, %x: tensor<8x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}) -> tensor<4x2xf32> {
    %p = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<8x4xf32>, tensor<4x2xf32>) -> tensor<8x2xf32>
    %g = stablehlo.dot_general %x, %p, contracting_dims = [0] x [0] : (tensor<8x4xf32>, tensor<8x2xf32>) -> tensor<4x2xf32>
    return %g : tensor<4x2xf32>
  }
}
