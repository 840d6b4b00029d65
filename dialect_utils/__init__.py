"""Thin, typed helpers over jaxlib's MLIR bindings (no algorithms).

- `context`: the one place that reaches into private jaxlib names: an MLIR context that
  parses everything JAX exports; parsing and printing text and bytecode.
- `diagnostics`: MLIR diagnostics as Python values, `file:line:col` formatting.
- `types`: tensor shapes, element types, byte sizes.
- `graph`: a typed, read-only view of a function (ops, values, users, decoded attributes).
- `flops`: floating-point operation counts per op.
- `sharding`: Shardy meshes and shardings as Python value types, read from and written to IR.
- `mpmd`: reading Shardy MPMD programs (topology, mesh tensors, fragments, calls) and
  flattening them into one plain function.
"""
