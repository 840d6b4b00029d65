"""Where the backward and apply ops go, once the forward ops are in layers.

Layer construction clusters only the forward ops (`layer_clustering`); this module
places the rest. `parameter_layers` reads which forward ops read each parameter and
gives the parameter the earliest of their layers; `assign_remaining` reads the forward
ops' layers, the clustering's edges and the backward/apply ops (`RemainingOp`, in
topological order) and returns the layer of each and the rule that placed it
(`RemainingAssignment`, `AssignRule`; the rules are in its docstring). Pure, no MLIR;
writes nothing. Errors are `LayerClusteringError`s.

    forward ops:   | layer 0 | layer 1 | layer 2 |      (layer_clustering.cluster_layers)
    backward op:   a layer holding the forward values it reads          (rule 1)
    apply op:      the layer of the parameter it updates                (rule 1')
    the rest:      its producers' earliest layer, its consumers' latest, else layer 0
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from .layer_clustering import Edge, LayerClusteringError, as_int


class OpRole(enum.Enum):
    BACKWARD = "backward"  # computes gradients, runs once per microbatch
    APPLY = "apply"  # optimizer update, runs once per step


class AssignRule(enum.Enum):
    """Which rule of `assign_remaining` placed an op."""

    FORWARD_VALUES = "forward-values"  # backward op: a layer holding the forward values read
    PARAMETER = "parameter"  # apply op: the layer of the parameter read (earliest if several)
    PRODUCERS = "producers"  # the earliest layer among the placed producers of its operands
    CONSUMERS = "consumers"  # the latest layer among its placed consumers
    DEFAULT = "default"  # nothing to go by: layer 0 (Alpa's fallback mesh for such ops)


@dataclass(frozen=True)
class RemainingOp:
    """A backward or apply op: its id and the ids of the producers of its operands.

    Ids share one space with the forward ops (their indices) and the parameters of
    `param_layer_of`; an id that is none of these nor an earlier RemainingOp (a graph
    input, a constant) is ignored.
    """

    index: int
    role: OpRole
    consumes: tuple[int, ...] = ()


@dataclass(frozen=True)
class RemainingAssignment:
    layer_of: Mapping[int, int]  # op id -> layer, in the order of other_ops
    rule_of: Mapping[int, AssignRule]  # op id -> the rule that placed it


def parameter_layers(
    param_users: Mapping[int, Sequence[int]], forward_layer_of: Mapping[int, int]
) -> dict[int, int]:
    """The layer of each parameter: the earliest layer of a forward op that reads it (a
    tied embedding read by the first and the last layer lives in the first). Parameters
    no forward op reads are left out."""
    layers: dict[int, int] = {}
    for param, users in param_users.items():
        found = [forward_layer_of[u] for u in users if u in forward_layer_of]
        if found:
            layers[param] = min(found)
    return layers


def _presence(
    forward_layer_of: Mapping[int, int], forward_edges: Sequence[Edge]
) -> dict[int, frozenset[int]]:
    """Forward op -> the layers that hold its results: its own and every receiving one."""
    present = {op: {layer} for op, layer in forward_layer_of.items()}
    for k, edge in enumerate(forward_edges):
        src, dst = edge[0], edge[1]
        if src not in forward_layer_of or dst not in forward_layer_of:
            raise LayerClusteringError(
                f"forward_edges[{k}] = {edge!r}: both ends must be keys of forward_layer_of"
            )
        present[src].add(forward_layer_of[dst])
    return {op: frozenset(layers) for op, layers in present.items()}


def _backward_layer(homes: list[int], common: frozenset[int], grads: list[int]) -> int:
    """Rule 1 for a backward op reading forward values (see assign_remaining)."""
    if not common:
        return max(homes)
    if not grads:
        return max(common)
    early = [layer for layer in common if layer <= min(grads)]
    return max(early) if early else min(common)


def _first_rule(
    op: RemainingOp,
    forward_layer_of: Mapping[int, int],
    present: Mapping[int, frozenset[int]],
    param_layer_of: Mapping[int, int],
    placed: Mapping[int, int],
) -> tuple[int, AssignRule] | None:
    fwd = [i for i in op.consumes if i in forward_layer_of]
    done = [placed[i] for i in op.consumes if i in placed]
    if op.role is OpRole.BACKWARD and fwd:
        common = frozenset.intersection(*(present[i] for i in fwd))
        homes = [forward_layer_of[i] for i in fwd]
        return _backward_layer(homes, common, done), AssignRule.FORWARD_VALUES
    params = [param_layer_of[i] for i in op.consumes if i in param_layer_of]
    if op.role is OpRole.APPLY and params:
        return min(params), AssignRule.PARAMETER
    producers = done + [forward_layer_of[i] for i in fwd]
    if producers:
        return min(producers), AssignRule.PRODUCERS
    return None


def _check_remaining(
    forward_layer_of: Mapping[int, int],
    other_ops: Sequence[RemainingOp],
    param_layer_of: Mapping[int, int],
) -> None:
    ids = {op.index for op in other_ops}
    seen: set[int] = set()
    for op in other_ops:
        as_int(op.index, "RemainingOp.index")
        if op.index in forward_layer_of or op.index in param_layer_of or op.index in seen:
            raise LayerClusteringError(
                f"RemainingOp id {op.index} is not unique (it is a forward op, a parameter "
                f"or an earlier RemainingOp)"
            )
        late = [i for i in op.consumes if i in ids and i not in seen]
        if late:
            raise LayerClusteringError(
                f"RemainingOp {op.index} reads ops {late} that do not come before it in "
                f"other_ops: other_ops must be in topological order"
            )
        seen.add(op.index)


def assign_remaining(
    forward_layer_of: Mapping[int, int],
    other_ops: Sequence[RemainingOp],
    *,
    forward_edges: Sequence[Edge] = (),
    param_layer_of: Mapping[int, int] | None = None,
    input_layers: Mapping[int, frozenset[int]] | None = None,
) -> RemainingAssignment:
    """Place backward and apply ops in layers (backward ops go to the layer of
    the forward values they read, apply ops to the layer of the parameter they update).

    `other_ops` in topological order. A forward value is *present* in its producer's
    layer and in every layer that reads it (per `forward_edges`, the clustering's edges:
    exactly the layers whose crossing bytes count it). Rules, first match wins:

    1. Backward op reading forward values (FORWARD_VALUES): among the layers where all of
       them are present, the latest one not after the earliest layer of its placed
       backward producers; if all are later than that, the earliest of them; if no layer
       holds them all, the latest producer layer of those values. Why: the backward of a
       forward op in layer j reads that op's operands and results, which are all present
       in j, and the cotangents it reads come from layers >= j, so this gives j without
       moving a forward value, and a weight gradient X^T dY whose X came from layer j-1
       stays in j with its parameter. An op whose inputs are all present in a later layer
       as well may run there (no extra traffic: what it sends down has the size of what
       would otherwise be sent). Parameters do not count here: the backward of a tied
       embedding's use in the last layer reads the parameter too but belongs there.
    1'. Apply op reading a parameter of `param_layer_of`: that parameter's layer, the
       earliest if several (PARAMETER).
    2. Otherwise, reading results of placed ops (earlier backward/apply ops, forward ops
       for apply ops): the earliest of their layers (PRODUCERS). The backward pass runs
       the layers from last to first, so that is the one that runs last; values only move
       down the backward flow (L-1 -> 0), never up against it.
    3. Otherwise (it reads only graph inputs, constants, or ops placed by this rule), in a
       second pass in reverse order: the latest layer among its consumers (CONSUMERS),
       which runs first in the backward pass, so its result again only moves down.
    4. Otherwise (nothing placed reads it either): layer 0 (DEFAULT).

    `input_layers` (id -> the layers whose forward ops read it) makes graph inputs that
    are not parameters (the batch) forward values for rule 1, present where they are
    read: the weight gradient X^T dY of the first layer, whose X is the batch, then stays
    in the first layer.
    """
    params = {} if param_layer_of is None else param_layer_of
    _check_remaining(forward_layer_of, other_ops, params)
    present = _presence(forward_layer_of, forward_edges)
    if input_layers:
        forward_layer_of = {**forward_layer_of, **{i: min(ls) for i, ls in input_layers.items() if ls}}
        present = {**present, **{i: ls for i, ls in input_layers.items() if ls}}
    placed: dict[int, int] = {}
    rules: dict[int, AssignRule] = {}
    for op in other_ops:
        found = _first_rule(op, forward_layer_of, present, params, placed)
        if found is not None:
            placed[op.index], rules[op.index] = found
    consumers: dict[int, list[int]] = {}
    for op in other_ops:
        for i in op.consumes:
            consumers.setdefault(i, []).append(op.index)
    for op in reversed(other_ops):
        if op.index in placed:
            continue
        after = [placed[c] for c in consumers.get(op.index, ()) if c in placed]
        if after:
            placed[op.index], rules[op.index] = max(after), AssignRule.CONSUMERS
        else:
            placed[op.index], rules[op.index] = 0, AssignRule.DEFAULT
    order = [op.index for op in other_ops]
    return RemainingAssignment(
        layer_of=MappingProxyType({i: placed[i] for i in order}),
        rule_of=MappingProxyType({i: rules[i] for i in order}),
    )
