"""The inter-operator (pipeshard) planner: microbatching, layer construction (operator
clustering), stage construction (Alpa's DP over layer ranges and submeshes), MPMD output.

Pure algorithms live in modules of their own and are tested without MLIR:
- `layer_clustering`: the operator clustering DP of Alpa's layer construction.
- `stage_dp`: the stage construction DP over (layer range, submesh, logical mesh).
"""
