"""The collective operations the planner predicts and the runtime counts in XLA's HLO,
named as HLO spells them (a `StrEnum`, so a kind equals its name: `CollectiveKind.ALL_REDUCE
== "all-reduce"`, and reports written as JSON carry the plain name)."""

from __future__ import annotations

import enum


class CollectiveKind(enum.StrEnum):
    ALL_REDUCE = "all-reduce"
    ALL_GATHER = "all-gather"
    REDUCE_SCATTER = "reduce-scatter"
    ALL_TO_ALL = "all-to-all"
    COLLECTIVE_PERMUTE = "collective-permute"
