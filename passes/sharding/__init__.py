"""The intra-operator sharding planner behind `alpa-auto-sharding` (Alpa's ILP).

- `mesh`: the logical mesh with per-axis alpha/beta and the collective cost formulas.
- `cluster`: cluster descriptions (presets shipped as JSON, or user files).
- `spec`: a tensor's sharding over the mesh as a plain value (`TensorSpec`), enumeration
  and resharding costs between specs.
- `strategy`: what one op may do (`Strategy`, `Follow`, `Free`) and the `RuleContext`
  the generator reads.
- `factor_strategies`: the generator: strategies of every op from its factors (Shardy's
  op sharding rules, `dialect_utils.op_factors`); no per-op table.
- `problem`: the strategy graph of a function, control flow included (nodes,
  follow-merges, loop-carried values, edges, liveness).
- `ilp`: the integer program over that graph, solved with OR-tools.
- `annotate`: the chosen plan written back as Shardy (or GSPMD) annotations.
- `batch_dims`: which dim of each value carries the batch, from the same factors (shared
  with the pipeshard passes).
"""
