"""alpa_mlir.passes."""
