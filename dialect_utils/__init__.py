"""Thin, typed helpers over jaxlib's MLIR bindings (no algorithms).

- `context`: the one place that reaches into private jaxlib names: an MLIR context that
  parses everything JAX exports; parsing and printing text and bytecode.
- `diagnostics`: MLIR diagnostics as Python values, `file:line:col` formatting.
- `types`: tensor shapes, element types, byte sizes.
- `graph`: a typed, read-only view of a function (ops, values, users, decoded attributes).
- `inlining`: copying ops between functions: `func.call`s inlined, clones pointed at
  the values of their new home.
- `flops`: floating-point operation counts per op.
- `op_factors`: how an op's dims relate: Shardy's op sharding rules as values (factors,
  reductions, ...), with our rules for the ops Shardy has none for.
- `control_flow`: static trip counts of `while` loops and the names of data-flow ops.
- `sharding`: Shardy meshes and shardings as Python value types, read from and written to IR.
- `mpmd`: reading Shardy MPMD programs (topology, mesh tensors, fragments, calls) and
  flattening them into one plain function.
"""
