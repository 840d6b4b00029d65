// alpa-stage-construction / alpa-pipeshard on the zoo's tiny MLP training step, on a
// simulated 2x4 cluster: the MPMD program's meshes, fragments, transfers and calls.
// Manual plan: layer 0 on a 1x4 submesh as 2x2, layer 1 on a 1x4 submesh as 1x4.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-layer-construction{layers=2},alpa-stage-construction{devices=2x4 num-microbatches=2 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,1x4})' | filecheck %s
// Automatic plan (the DP), under one pass name: every device used, one forward and one
// backward fragment per stage.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=4 report=%t.json})' | filecheck %s --check-prefix=AUTO
// RUN: filecheck %s --check-prefix=REPORT < %t.json
// The output is byte-identical run after run.
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=4})' -o %t.a.mlir
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=4})' -o %t.b.mlir
// RUN: diff %t.a.mlir %t.b.mlir
// The sequential reference run and the pipelined run equal the flattened program.
// RUN: alpa-run %t.a.mlir --executor sequential --reference | filecheck %s --check-prefix=RUNS
// RUN: alpa-run %t.a.mlir --reference | filecheck %s --check-prefix=PIPELINE

// CHECK:       module @jit_train_step attributes {alpa.memory_plan = ["keep", "keep"], alpa.stage_plan = "{{.*}}\22mode\22: \22manual\22
// CHECK-NEXT:  sdy.mesh @stage0 = <["x"=2, "y"=2]>
// CHECK-NEXT:  sdy.mesh @stage1 = <["x"=1, "y"=4]>
// CHECK:       func.func private @microbatch({{.*}}) -> ({{.*}}) attributes {topology = #mpmd.topology<<"stage0" : <["x"=2, "y"=2]>>, <"stage1" : <["x"=1, "y"=4]>>>}
// The forward pass runs from stage 0 to stage 1, the backward pass back.
// CHECK:       %[[F0:.*]] = mpmd.fragment<mesh="stage0", origin=["layer0"], stage=0> ({{.*}}) {alpa.kind = "forward"}
// Each fragment is auto-sharded on its stage's mesh.
// CHECK:       sdy.sharding_constraint {{.*}} <@stage0, [
// CHECK:       %[[T:.*]] = mpmd.transfer %[[F0]] : (!mpmd.mesh_tensor<"stage0", tensor<4x32xf32>, sharding=<@stage0, {{.*}}>>) -> !mpmd.mesh_tensor<"stage1", tensor<4x32xf32>, sharding=<@stage1, {{.*}}>>
// CHECK:       mpmd.fragment<mesh="stage1", origin=["layer1"], stage=1> ({{.*}}%[[T]]{{.*}}) {alpa.kind = "forward"}
// CHECK:       mpmd.fragment<mesh="stage1", origin=["layer1"(1)], stage=1> ({{.*}}) {alpa.kind = "backward"}
// CHECK:       mpmd.transfer
// CHECK:       mpmd.fragment<mesh="stage0", origin=["layer0"(1)], stage=0> ({{.*}}) {alpa.kind = "backward"}
// CHECK:       func.func public @main({{.*}}{tf.aliasing_output = 0 : i32}{{.*}}attributes {alpa.num_layers = 2 : i64, alpa.num_microbatches = 2 : i64, topology = #mpmd.topology<
// The batch (8 examples) is sliced into two microbatches of 4 on the mesh that reads it.
// CHECK:       mpmd.fragment<mesh="stage0", origin=["microbatches"]> ({{.*}}) {alpa.kind = "microbatches"} ({{.*}}: tensor<8x16xf32>)
// CHECK:       mpmd.call @microbatch({{.*}}) {call_counter = 0 : ui32}
// CHECK-NEXT:  mpmd.call @microbatch({{.*}}) {call_counter = 1 : ui32}
// CHECK-DAG:   mpmd.fragment<mesh="stage1", origin=["layer1"], stage=1> ({{.*}}) {alpa.kind = "apply"}
// CHECK-DAG:   mpmd.fragment<mesh="stage0", origin=["layer0"], stage=0> ({{.*}}) {alpa.kind = "apply"}

// AUTO:        sdy.mesh @stage0
// AUTO-COUNT-4: mpmd.call @microbatch
// REPORT:      "mode": "auto"
// REPORT:      "predicted_step_s":
// REPORT:      "stages": [

// RUNS:        module: {{.*}} (mpmd)
// RUNS:        executor: sequential (1 device)
// RUNS:        reference check: PASS
// PIPELINE:    executor: pipeline (1f1b, {{[0-9]}} stages, 4 microbatches
// PIPELINE:    reference check: PASS
