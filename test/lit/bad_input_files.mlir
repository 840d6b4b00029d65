// Bad input and output files: a diagnostic and exit status 1, never a crash, and an
// existing output file is never damaged (outputs are written to a temporary file and
// renamed into place only when the run succeeds).

// A @main that is only a declaration: alpa-run used to crash in XLA (exit 139).
// RUN: not alpa-run %s 2>&1 | filecheck %s --check-prefix=RUN-DECL
// RUN-DECL: bad_input_files.mlir:[[# @LINE + 63]]:3: error: @main is a declaration without a body: nothing to run
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding)' 2>&1 | filecheck %s --check-prefix=OPT-DECL
// OPT-DECL: bad_input_files.mlir:[[# @LINE + 61]]:3: error: alpa-auto-sharding: @main is a declaration without a body: nothing to transform

// A failed alpa-opt leaves an existing -o file as it was.
// RUN: echo "previous contents" > %t.out.mlir
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding)' -o %t.out.mlir
// RUN: filecheck %s --check-prefix=KEPT --input-file %t.out.mlir
// KEPT: previous contents

// An output folder that does not exist is reported before any work.
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding)' -o %t.missing/out.mlir 2>&1 | filecheck %s --check-prefix=OPT-DIR
// OPT-DIR: out.mlir:0:0: error: cannot write the output: no such directory: '{{.*}}.missing'
// RUN: not alpa-run %s --outputs %t.missing/out.npz 2>&1 | filecheck %s --check-prefix=RUN-DIR
// RUN-DIR: alpa-run: error: cannot write --outputs file '{{.*}}.missing/out.npz': no such directory
// RUN: not alpa-run %s --trace %t.out.mlir/trace.json 2>&1 | filecheck %s --check-prefix=RUN-NOTDIR
// RUN-NOTDIR: alpa-run: error: cannot write --trace file '{{.*}}out.mlir/trace.json': not a directory
// RUN: not alpa-export mlp --preset tiny -o %t.missing/mlp.mlir 2>&1 | filecheck %s --check-prefix=EXPORT-DIR
// EXPORT-DIR: cannot write {{.*}}.missing/mlp.mlir: no such directory
// alpa-export checks --example-inputs before it writes the module.
// RUN: rm -f %t.mlp.mlir
// RUN: not alpa-export mlp --preset tiny -o %t.mlp.mlir --example-inputs %t.missing/in.npz 2>&1 | filecheck %s --check-prefix=EXPORT-INPUTS
// EXPORT-INPUTS: cannot write {{.*}}.missing/in.npz: no such directory
// RUN: not test -e %t.mlp.mlir

// A directory given as the input.
// RUN: mkdir -p %t.dir
// RUN: not alpa-run %t.dir 2>&1 | filecheck %s --check-prefix=RUN-ISDIR
// RUN-ISDIR: alpa-run: error: cannot open input file '{{.*}}.dir': it is a directory
// RUN: not alpa-opt %t.dir 2>&1 | filecheck %s --check-prefix=OPT-ISDIR
// OPT-ISDIR: .dir:0:0: error: cannot open input file: Is a directory

// Arguments: one value per option, numbers that mean something; exit status 1.
// RUN: not alpa-opt %s --pass-pipeline='builtin.module()' --pass-pipeline='builtin.module()' 2>&1 | filecheck %s --check-prefix=PIPE-TWICE
// PIPE-TWICE: alpa-opt: error: --pass-pipeline is given twice
// RUN: not alpa-run %s --rtol nan 2>&1 | filecheck %s --check-prefix=RTOL
// RTOL: alpa-run: error: --rtol must be a finite number >= 0, got nan
// RUN: not alpa-run %s --seed -1 2>&1 | filecheck %s --check-prefix=SEED
// SEED: alpa-run: error: --seed must be >= 0, got -1
// RUN: not alpa-run %s --no-such-flag 2>&1 | filecheck %s --check-prefix=FLAG
// FLAG: alpa-run: error: unrecognized arguments: --no-such-flag
// Whole-module errors point at the same place whether the file spells `module {` or not.
// RUN: sed -n '/^module {/,$p' %s | sed 's/@main/@other/' > %t.explicit.mlir
// RUN: sed -n '/^  func.func private @main/p' %s | sed 's/@main/@other/; s/^  //' > %t.implicit.mlir
// RUN: not alpa-opt %t.explicit.mlir --pass-pipeline='builtin.module(alpa-auto-sharding)' 2>&1 | filecheck %s --check-prefix=WHOLE
// RUN: not alpa-opt %t.implicit.mlir --pass-pipeline='builtin.module(alpa-auto-sharding)' 2>&1 | filecheck %s --check-prefix=WHOLE
// RUN: not alpa-run %t.explicit.mlir 2>&1 | filecheck %s --check-prefix=WHOLE-EXEC
// RUN: not alpa-run %t.implicit.mlir 2>&1 | filecheck %s --check-prefix=WHOLE-EXEC
// WHOLE: .mlir:1:1: error: alpa-auto-sharding needs a @main function (found: @other)
// WHOLE-EXEC: .mlir:1:1: error: the module has no @main function to run
// Cost-model numbers that mean nothing, and cluster files of the wrong shape.
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{alpha=nan})' 2>&1 | filecheck %s --check-prefix=ALPHA
// ALPHA: error: invalid options for alpa-auto-sharding: alpha=nan: expected finite numbers >= 0
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x4 beta=1,-1})' 2>&1 | filecheck %s --check-prefix=BETA
// BETA: error: invalid options for alpa-auto-sharding: beta=1.0,-1.0: expected finite numbers >= 0
// RUN: echo '[]' > %t.list.json
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=%t.list.json})' 2>&1 | filecheck %s --check-prefix=CLUSTER-LIST
// CLUSTER-LIST: error: invalid options for alpa-auto-sharding: cluster {{.*}}list.json: the file must be a JSON object, got list
// RUN: echo '{"hosts": 1, "devices_per_host": 8, "device": {"peak_flops": 1e12, "memory_bytes": 1e9}, "intra_host": {"bandwidth": 1e9, "latency": "nan"}, "inter_host": {"bandwidth": 1e9, "latency": 0}}' > %t.nan.json
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=%t.nan.json})' 2>&1 | filecheck %s --check-prefix=CLUSTER-NAN
// CLUSTER-NAN: error: invalid options for alpa-auto-sharding: cluster {{.*}}nan.json: intra_host.latency must be a finite number >= 0, got nan

module {
  func.func private @main(%arg0: tensor<4xf32>) -> tensor<4xf32>
}

// Per-dtype peaks that are not positive numbers, or not an object.
// RUN: echo '{"hosts": 1, "devices_per_host": 8, "device": {"peak_flops": 1e12, "memory_bytes": 1e9, "peak_flops_by_dtype": {"f16": -1}}, "intra_host": {"bandwidth": 1e9, "latency": 0}, "inter_host": {"bandwidth": 1e9, "latency": 0}}' > %t.dtype.json
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=%t.dtype.json})' 2>&1 | filecheck %s --check-prefix=CLUSTER-DTYPE
// CLUSTER-DTYPE: error: invalid options for alpa-auto-sharding: cluster {{.*}}dtype.json: peak_flops_by_dtype.f16 must be a finite number > 0, got -1.0
// RUN: echo '{"hosts": 1, "devices_per_host": 8, "device": {"peak_flops": 1e12, "memory_bytes": 1e9, "peak_flops_by_dtype": [1]}, "intra_host": {"bandwidth": 1e9, "latency": 0}, "inter_host": {"bandwidth": 1e9, "latency": 0}}' > %t.dtypes.json
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=%t.dtypes.json})' 2>&1 | filecheck %s --check-prefix=CLUSTER-DTYPES
// CLUSTER-DTYPES: error: invalid options for alpa-auto-sharding: cluster {{.*}}dtypes.json: device.peak_flops_by_dtype must be a JSON object of element type -> FLOP/s
