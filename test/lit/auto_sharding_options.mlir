// alpa-auto-sharding's options on one input: a Megatron-friendly training step of a
// 2-layer MLP (tiny batch, big weights; see auto_sharding_dot.mlir for why), whose plan
// is the same on any 1-D mesh: W1 split by columns, W2 by rows, one all-reduce.

// The solver time limit: 300 s by default, none for no limit; anything that is not a
// number of seconds the solvers can take is refused when the pipeline is parsed.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=4 time-limit=none})' | filecheck %s --check-prefix=MESH4
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{time-limit=0})' 2>&1 | filecheck %s --check-prefix=LIMIT0
// LIMIT0: <pass-pipeline>:1:16: error: invalid options for alpa-auto-sharding: time-limit=0.0: expected seconds in (0, 10000000], or none for no limit
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{time-limit=1e26})' 2>&1 | filecheck %s --check-prefix=LIMITBIG
// LIMITBIG: error: invalid options for alpa-auto-sharding: time-limit=1e+26: expected seconds
// RUN: not alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{time-limit=nan})' 2>&1 | filecheck %s --check-prefix=LIMITNAN
// LIMITNAN: error: invalid options for alpa-auto-sharding: time-limit=nan: expected seconds

// A 1-D mesh of 4: the mesh op, the partition count and the plan.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=4})' | filecheck %s --check-prefix=MESH4
// MESH4:      module @mlp_step attributes {mhlo.num_partitions = 4 : i32} {
// MESH4-NEXT:   sdy.mesh @mesh = <["x"=4]>
// MESH4-NEXT:   func.func @main(
// MESH4-SAME:     %arg0: tensor<8x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>}
// MESH4-SAME:     %arg1: tensor<256x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"x"}]>}
// MESH4-SAME:     %arg2: tensor<1024x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}
// MESH4:        stablehlo.dot_general %arg0, %arg1
// MESH4-NEXT:   sdy.sharding_constraint {{.*}} <@mesh, [{}, {"x"}]> : tensor<8x1024xf32>

// Axis names, explicit alpha and beta (uniform: both axes take the hidden dim); explicit
// alpha/beta override the cluster's. The report shows the mesh the plan used.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x4 mesh-axes=a,b alpha=1,1 beta=1,1 cluster=a100-8 report=%t.axes.json})' | filecheck %s --check-prefix=AXES
// RUN: filecheck %s --input-file=%t.axes.json --check-prefix=AXES-REPORT
// AXES:      module @mlp_step attributes {mhlo.num_partitions = 8 : i32} {
// AXES-NEXT:   sdy.mesh @mesh = <["a"=2, "b"=4]>
// AXES-NEXT:   func.func @main(
// AXES-SAME:     %arg1: tensor<256x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"a", "b"}]>}
// AXES-SAME:     %arg2: tensor<1024x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"a", "b"}, {}]>}
// AXES-NOT:    "x"
// AXES-NOT:    "y"
// AXES-REPORT:      "mesh": {
// AXES-REPORT-NEXT:   "alpha": [
// AXES-REPORT-NEXT:     1.0,
// AXES-REPORT-NEXT:     1.0
// AXES-REPORT-NEXT:   ],
// AXES-REPORT-NEXT:   "axes": [
// AXES-REPORT-NEXT:     "a",
// AXES-REPORT-NEXT:     "b"
// AXES-REPORT-NEXT:   ],
// AXES-REPORT-NEXT:   "beta": [
// AXES-REPORT-NEXT:     1.0,
// AXES-REPORT-NEXT:     1.0
// AXES-REPORT-NEXT:   ],
// AXES-REPORT-NEXT:   "shape": [
// AXES-REPORT-NEXT:     2,
// AXES-REPORT-NEXT:     4
// AXES-REPORT-NEXT:   ]
// AXES-REPORT-NEXT: },

// The default cost model (Alpa's alpha=1,1 beta=1,0.1, the alpa-abstract cluster) makes
// "x" ten times slower than "y": the plan then all-reduces three times on the cheap
// axes instead of once over both. Spelling the defaults out changes nothing.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=2x4})' -o %t.default2d.mlir
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x4 alpha=1,1 beta=1,0.1 cluster=alpa-abstract})' -o %t.explicit2d.mlir
// RUN: diff %t.default2d.mlir %t.explicit2d.mlir
// RUN: filecheck %s --input-file=%t.default2d.mlir --check-prefix=ABSTRACT
// ABSTRACT:      sdy.mesh @mesh = <["x"=2, "y"=4]>
// ABSTRACT:      func.func @main(
// ABSTRACT-SAME:   %arg0: tensor<8x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"y"}]>}
// ABSTRACT-SAME:   %arg1: tensor<256x1024xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"y"}, {"x"}]>}
// ABSTRACT-SAME:   %arg2: tensor<1024x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {"y"}]>}
// The three partial sums: h (over "y"), y (over "x") and the backward ga (over "y").
// RUN: alpa-run %t.default2d.mlir --reference --collectives | filecheck %s --check-prefix=ABSTRACT-EXEC
// ABSTRACT-EXEC: collectives: all-reduce=3 all-gather=0 reduce-scatter=0 all-to-all=0 collective-permute=0
// ABSTRACT-EXEC: reference check: PASS (3 outputs match)

// The report (mesh=8): plan, solver, ILP sizes, predicted collectives, arguments, and the
// roles inferred for the arguments (no donation here: w1 and w2 come back updated at their
// positions, x does not: the output y has its type but comes from a dot).
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=8 report=%t.json})' -o %t.mlir
// RUN: filecheck %s --input-file=%t.json --check-prefix=REPORT
// REPORT:      {
// REPORT-NEXT:   "argument_bytes_per_device": 270336,
// REPORT-NEXT:   "arguments": [
// REPORT-NEXT:     {
// REPORT-NEXT:       "bytes_per_device": 8192,
// REPORT-NEXT:       "index": 0,
// REPORT-NEXT:       "shape": [
// REPORT-NEXT:         8,
// REPORT-NEXT:         256
// REPORT-NEXT:       ],
// REPORT-NEXT:       "sharding": "<@mesh, [{}, {}]>"
// REPORT-NEXT:     },
// REPORT-NEXT:     {
// REPORT-NEXT:       "bytes_per_device": 131072,
// REPORT-NEXT:       "index": 1,
// REPORT:            "sharding": "<@mesh, [{}, {\"x\"}]>"
// REPORT:            "bytes_per_device": 131072,
// REPORT-NEXT:       "index": 2,
// REPORT:            "sharding": "<@mesh, [{\"x\"}, {}]>"
// REPORT:        "ilp": {
// REPORT-NEXT:     "constraints": {{[0-9]+}},
// REPORT-NEXT:     "edges": {{[0-9]+}},
// REPORT-NEXT:     "eliminated": {{[0-9]+}},
// REPORT-NEXT:     "ilp_edges": {{[0-9]+}},
// REPORT-NEXT:     "ilp_nodes": {{[0-9]+}},
// REPORT-NEXT:     "merged_edges": {{[0-9]+}},
// REPORT-NEXT:     "merged_nodes": {{[0-9]+}},
// REPORT-NEXT:     "nodes": 12,
// REPORT-NEXT:     "variables": {{[0-9]+}}
// REPORT-NEXT:   },
// REPORT:        "objective": {{[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?}},
// REPORT-NEXT:   "ops": 9,
// REPORT-NEXT:   "options": {
// REPORT-NEXT:     "cluster": "alpa-abstract",
// REPORT-NEXT:     "mesh": "8"
// REPORT-NEXT:   },
// REPORT-NEXT:   "pass_seconds": {{[0-9.e-]+}},
// REPORT-NEXT:   "predicted_collectives": {
// REPORT-NEXT:     "all-reduce": {
// REPORT-NEXT:       "bytes": 8192.0,
// REPORT-NEXT:       "count": 1
// REPORT-NEXT:     }
// REPORT-NEXT:   },
// REPORT-NEXT:   "replicated_fallback_ops": [],
// REPORT-NEXT:   "sharding_constraints": 9,
// REPORT-NEXT:   "solver": {
// REPORT-NEXT:     "bound": {{[0-9.e-]+}},
// REPORT-NEXT:     "gap": 0.0,
// REPORT-NEXT:     "name": "{{scip|highs|cbc}}",
// REPORT-NEXT:     "seconds": {{[0-9.e-]+}},
// REPORT-NEXT:     "status": "optimal"
// REPORT-NEXT:   },
// REPORT-NEXT:   "step_args": {
// REPORT-NEXT:     "batch": [
// REPORT-NEXT:       0
// REPORT-NEXT:     ],
// REPORT-NEXT:     "batch_size": 8,
// REPORT-NEXT:     "other": [],
// REPORT-NEXT:     "state": [
// REPORT-NEXT:       1,
// REPORT-NEXT:       2
// REPORT-NEXT:     ],
// REPORT-NEXT:     "state_from": "results matched by position and type"
// REPORT-NEXT:   }
// REPORT-NEXT: }

// Determinism: the same input and options give the same text.
// RUN: alpa-opt %s --pass-pipeline='builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=8 report=%t.again.json})' -o %t.again.mlir
// RUN: diff %t.mlir %t.again.mlir

// The output runs on 8 devices with exactly the one predicted all-reduce, and matches
// the unpartitioned run.
// RUN: alpa-run %t.mlir --reference --collectives | filecheck %s --check-prefix=EXEC
// EXEC: mesh: x=8 on cpu devices [0..7]
// EXEC: arg0: f32[8,256] [{}, {}]
// EXEC: arg1: f32[256,1024] [{}, {"x"}]
// EXEC: arg2: f32[1024,256] [{"x"}, {}]
// EXEC: collectives: all-reduce=1 all-gather=0 reduce-scatter=0 all-to-all=0 collective-permute=0
// EXEC: reference check: PASS (3 outputs match)

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
