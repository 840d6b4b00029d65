"""The intra-operator sharding planner behind `alpa-auto-sharding` (Alpa's ILP).

- `mesh`: the logical mesh with per-axis alpha/beta and the collective cost formulas.
- `cluster`: cluster descriptions (presets shipped as JSON, or user files).
- `spec`: a tensor's sharding over the mesh as a plain value (`TensorSpec`), enumeration
  and resharding costs between specs.
- `strategy`: what one op may do (`Strategy`) and the generators per op family.
- `problem`: the strategy graph of a function (nodes, follow-merges, edges, liveness).
- `ilp`: the integer program over that graph, solved with OR-tools.
- `annotate`: the chosen plan written back as Shardy (or GSPMD) annotations.
"""
