// alpa-pipeshard on the zoo's tiny GPT (2 decoder blocks) on a simulated 2x4 cluster:
// the topology, the stage boundaries (forward activations 0 -> 1, cotangents 1 -> 0)
// and the microbatch calls, for a manual and an automatic plan.
// RUN: alpa-opt %inputs/gpt_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2 stages=manual layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,1x4})' | filecheck %s
// RUN: alpa-opt %inputs/gpt_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=4 report=%t.json})' | filecheck %s --check-prefix=AUTO
// RUN: filecheck %s --check-prefix=REPORT < %t.json

// CHECK:       sdy.mesh @stage0 = <["x"=2, "y"=2]>
// CHECK-NEXT:  sdy.mesh @stage1 = <["x"=1, "y"=4]>
// CHECK-NEXT:  func.func private @microbatch({{.*}}attributes {topology = #mpmd.topology<<"stage0" : <["x"=2, "y"=2]>>, <"stage1" : <["x"=1, "y"=4]>>>}
// The embedding and block 0 run on stage 0; its output hidden state crosses to stage 1.
// CHECK:       mpmd.fragment<mesh="stage0", origin=["layer0"], stage=0> {{.*}} {alpa.kind = "forward"}
// CHECK:       stablehlo.dot_general {{.*}} {alpa.layer = 0 : i64, alpa.phase = "forward"} : (tensor<4x16x32xf32>, tensor<32x32xf32>)
// CHECK:       mpmd.transfer {{.*}} : (!mpmd.mesh_tensor<"stage0", tensor<4x16x32xf32>, {{.*}}>) -> !mpmd.mesh_tensor<"stage1", tensor<4x16x32xf32>, {{.*}}>
// CHECK-NEXT:  mpmd.fragment<mesh="stage1", origin=["layer1"], stage=1> {{.*}} {alpa.kind = "forward"}
// The backward pass returns from stage 1 to stage 0.
// CHECK:       mpmd.fragment<mesh="stage1", origin=["layer1"(1)], stage=1> {{.*}} {alpa.kind = "backward"}
// CHECK:       mpmd.transfer {{.*}} : (!mpmd.mesh_tensor<"stage1", tensor<4x16x32xf32>, {{.*}}>) -> !mpmd.mesh_tensor<"stage0", tensor<4x16x32xf32>, {{.*}}>
// CHECK:       mpmd.fragment<mesh="stage0", origin=["layer0"(1)], stage=0> {{.*}} {alpa.kind = "backward"}
// @main: batch slices, one call per microbatch, then each stage's update.
// CHECK:       func.func public @main(
// CHECK:       mpmd.fragment<mesh="stage0", origin=["microbatches"]> {{.*}} {alpa.kind = "microbatches"} ({{.*}}: tensor<8x16xi32>)
// CHECK:       mpmd.call @microbatch({{.*}}) {call_counter = 0 : ui32}
// CHECK-NEXT:  mpmd.call @microbatch({{.*}}) {call_counter = 1 : ui32}
// CHECK-DAG:   mpmd.fragment<mesh="stage1", origin=["layer1"], stage=1> {{.*}} {alpa.kind = "apply"}
// CHECK-DAG:   mpmd.fragment<mesh="stage0", origin=["layer0"], stage=0> {{.*}} {alpa.kind = "apply"}

// AUTO:        sdy.mesh @stage0
// AUTO:        #mpmd.topology<
// AUTO-COUNT-4: mpmd.call @microbatch
// REPORT:      "mode": "auto"
// REPORT:      "num_layers": 2
// REPORT:      "predicted_step_s":
