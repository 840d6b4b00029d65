"""The inter-operator (pipeshard) planner: microbatching, layer construction (operator
clustering), stage construction (Alpa's DP over layer ranges and submeshes), MPMD output.

Pure algorithms live in modules of their own and are tested without MLIR:
- `layer_clustering`: the operator clustering DP of Alpa's layer construction.
- `remaining_assignment`: the layers of the backward and apply ops, after clustering.
- `stage_dp`: the stage construction DP over (layer range, submesh, logical mesh), with
  `submesh_space` (cluster and submesh shapes), `cost_source` (stage costs and their
  cache), `ceiling_dp` (the tables and one DP run), `ceiling_search` (the order of the
  latency ceilings) and `manual_plan` (a user-given plan).
"""
