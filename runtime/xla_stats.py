"""What XLA reports about a compiled executable: its cost analysis and memory use.

These are per-device numbers of the partitioned program (one partition's work), the
figures the cost model's estimates are compared against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CostStats:
    """XLA's `cost_analysis()` of one partition."""

    flops: float
    transcendentals: float
    bytes_accessed: float

    @classmethod
    def from_executable(cls, executable: Any) -> CostStats:
        raw = executable.cost_analysis()
        if isinstance(raw, list | tuple):  # older jaxlibs: one dict per program
            raw = raw[0] if raw else {}
        props = dict(raw or {})
        return cls(
            float(props.get("flops", 0.0)),
            float(props.get("transcendentals", 0.0)),
            float(props.get("bytes accessed", 0.0)),
        )


@dataclass(frozen=True)
class MemoryStats:
    """XLA's compiled memory statistics of one partition, in bytes."""

    argument_bytes: int
    output_bytes: int
    alias_bytes: int  # output bytes that reuse (donated) argument buffers
    temp_bytes: int
    generated_code_bytes: int

    @classmethod
    def from_executable(cls, executable: Any) -> MemoryStats:
        stats = executable.get_compiled_memory_stats()
        return cls(
            int(stats.argument_size_in_bytes),
            int(stats.output_size_in_bytes),
            int(stats.alias_size_in_bytes),
            int(stats.temp_size_in_bytes),
            int(stats.generated_code_size_in_bytes),
        )

    @property
    def peak_estimate_bytes(self) -> int:
        """Arguments + outputs - aliased + temporaries: XLA's own peak estimate."""
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
