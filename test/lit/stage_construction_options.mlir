// alpa-stage-construction's search-space options on the zoo's tiny MLP (2 layers):
// logical-shapes (which logical meshes a submesh may take) and submeshes (which submesh
// shapes the DP may use). The schedule option has its own files
// (stage_construction_schedule_{1f1b,gpipe}.mlir).

// logical-shapes=data: every stage data parallel (model-parallel width 1).
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2 logical-shapes=data report=%t.data.json})' -o /dev/null
// RUN: filecheck %s --check-prefix=DATA --input-file=%t.data.json
// DATA:      "stages": [
// DATA:        "logical_shape": [
// DATA-NEXT:     4,
// DATA-NEXT:     1
// DATA:        "logical_shape": [
// DATA-NEXT:     4,
// DATA-NEXT:     1
// DATA:      "t_max_s"

// logical-shapes=model: every stage model parallel (data-parallel width 1).
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 layers=2 num-microbatches=2 logical-shapes=model report=%t.model.json})' -o /dev/null
// RUN: filecheck %s --check-prefix=MODEL --input-file=%t.model.json
// MODEL:      "stages": [
// MODEL:        "logical_shape": [
// MODEL-NEXT:     1,
// MODEL-NEXT:     4
// MODEL:        "logical_shape": [
// MODEL-NEXT:     1,
// MODEL-NEXT:     4
// MODEL:      "t_max_s"

// submeshes: six devices per host are no power of two. The default space refuses them;
// submeshes=all takes every divisor of the host (1, 2, 3, 6), here one stage on all six.
// RUN: not alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x6 layers=2 num-microbatches=2})' -o /dev/null 2>&1 | filecheck %s --check-prefix=POW2
// POW2: mlp_tiny.mlir:3:3: error: alpa-pipeshard: submesh space 'power-of-two' needs devices_per_host to be a power of two, got cluster 1x6; use 'all'
// RUN: alpa-opt %inputs/mlp_tiny.mlir --pass-pipeline='builtin.module(alpa-pipeshard{devices=1x6 layers=2 num-microbatches=2 submeshes=all report=%t.all.json})' -o /dev/null
// RUN: filecheck %s --check-prefix=ALL --input-file=%t.all.json
// ALL:        "name": "p3.16xlarge[1x6]"
// ALL:        "submesh": [
// ALL-NEXT:     1,
// ALL-NEXT:     6
// ALL:      "t_max_s"
