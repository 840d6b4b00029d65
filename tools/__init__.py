"""alpa_mlir.tools."""
