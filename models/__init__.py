"""alpa_mlir.models."""
