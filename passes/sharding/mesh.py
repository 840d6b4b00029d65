"""The logical device mesh and the collective cost model.

Costs (seconds) of a collective over mesh axes `axes` (n devices in the group) that
moves a tensor of B bytes (B = the full, unsharded size along the collective's dims):

    all-gather      alpha + beta * (n-1)/n * B
    all-reduce      alpha + 2 * beta * (n-1)/n * B
    reduce-scatter  alpha + beta * (n-1)/n * B
    all-to-all      alpha + beta * (n-1)/n^2 * B * (n/2)     (Alpa's penalty factor n/2)

A group spanning several axes uses the largest alpha and beta among them (the slowest
link bounds a ring over the group).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Axes = tuple[int, ...]  # mesh axis indices


@dataclass(frozen=True)
class MeshShape:
    """A mesh shape option: `8` (1-D) or `2x4` (2-D, major axis first)."""

    dims: tuple[int, ...]

    option_type_name = "shape (e.g. 8 or 2x4)"

    @classmethod
    def parse_option(cls, text: str) -> MeshShape:
        try:
            dims = tuple(int(d) for d in text.lower().split("x"))
        except ValueError:
            raise ValueError(f"expected a mesh shape like 8 or 2x4, got {text!r}") from None
        if not dims or any(d < 1 for d in dims):
            raise ValueError(f"mesh dimensions must be positive, got {text!r}")
        return cls(dims)

    def __str__(self) -> str:
        return "x".join(map(str, self.dims))


@dataclass(frozen=True)
class LogicalMesh:
    """A logical mesh: axis sizes and names, with alpha (s) and beta (s/byte) per axis."""

    shape: tuple[int, ...]
    axis_names: tuple[str, ...]
    alpha: tuple[float, ...]
    beta: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.shape)
        if n == 0 or any(s < 1 for s in self.shape):
            raise ValueError(f"mesh shape must be positive sizes, got {self.shape}")
        if len(self.axis_names) != n:
            raise ValueError(f"mesh {self.shape} needs {n} axis names, got {self.axis_names}")
        if len(set(self.axis_names)) != n:
            raise ValueError(f"mesh axis names must be distinct, got {','.join(self.axis_names)}")
        if len(self.alpha) != n or len(self.beta) != n:
            raise ValueError(
                f"mesh {self.shape} needs {n} alpha and beta values, got alpha={self.alpha} beta={self.beta}"
            )
        for what, values in (("alpha", self.alpha), ("beta", self.beta)):
            if not all(math.isfinite(v) and v >= 0 for v in values):
                raise ValueError(f"{what}={','.join(map(str, values))}: expected finite numbers >= 0")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def group_size(self, axes: Axes) -> int:
        return math.prod(self.shape[a] for a in axes)

    def _link(self, axes: Axes) -> tuple[int, float, float]:
        n = self.group_size(axes)
        if not axes or n == 1:
            return 1, 0.0, 0.0
        return n, max(self.alpha[a] for a in axes), max(self.beta[a] for a in axes)

    def all_gather_cost(self, nbytes: float, axes: Axes) -> float:
        n, a, b = self._link(axes)
        return 0.0 if n == 1 else a + b * (n - 1) / n * nbytes

    def all_reduce_cost(self, nbytes: float, axes: Axes) -> float:
        n, a, b = self._link(axes)
        return 0.0 if n == 1 else a + 2 * b * (n - 1) / n * nbytes

    def reduce_scatter_cost(self, nbytes: float, axes: Axes) -> float:
        n, a, b = self._link(axes)
        return 0.0 if n == 1 else a + b * (n - 1) / n * nbytes

    def all_to_all_cost(self, nbytes: float, axes: Axes) -> float:
        n, a, b = self._link(axes)
        return 0.0 if n == 1 else a + b * (n - 1) / (n * n) * nbytes * (n / 2)
