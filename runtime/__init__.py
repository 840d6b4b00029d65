"""alpa_mlir.runtime."""
