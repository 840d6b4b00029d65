"""The attributes our passes write and read: every `alpa.*` name, the values they take,
and one reader for each.

Passes and the runtime import names from here; nothing else spells `"alpa.layer"` or
decodes it. JAX's own argument attributes (donation) are read here too, so that "which
arguments does the step update" has one answer.
"""

from __future__ import annotations

import enum

from jax.extend.mlir import ir

from .graph import OpNode

LAYER_ATTR = "alpa.layer"
"""i64 on an op: the pipeline layer it belongs to (alpa-layer-construction)."""
PHASE_ATTR = "alpa.phase"
"""string on an op: its `Phase` (alpa-layer-construction)."""
NUM_LAYERS_ATTR = "alpa.num_layers"
"""i64 on @main: how many layers alpa-layer-construction made."""
NUM_MICROBATCHES_ATTR = "alpa.num_microbatches"
"""i64 on @main: microbatches per step (alpa-gradient-accumulation)."""
MICROBATCH_ATTR = "alpa.microbatch"
"""i64 on a microbatch call: which microbatch it runs."""
KIND_ATTR = "alpa.kind"
"""string on an MPMD fragment: forward, backward, prologue or apply."""
STAGE_PLAN_ATTR = "alpa.stage_plan"
"""JSON string on the module: the stage plan (`dialect_utils.stage_plan`)."""
MEMORY_PLAN_ATTR = "alpa.memory_plan"
"""array of strings on the module: the `Residency` of each layer's stashed activations
(alpa-stage-construction), layer 0 first."""
FLOPS_ATTR = "alpa.flops"
"""i64 on an op: its FLOP count (alpa-annotate-flops)."""
GRAD_MARKER = "alpa.grad_marker"
"""custom-call target marking the gradients of a training step."""
GRAD_MARKED_ATTR = "alpa.grad_marked"
"""unit attribute on @main: its gradients are marked."""

ALIASING_OUTPUT = "tf.aliasing_output"
"""JAX's argument attribute: the donated argument's buffer becomes this result."""
BUFFER_DONOR = "jax.buffer_donor"
"""JAX's argument attribute: the argument's buffer may be reused (donated, no result)."""


class Phase(enum.StrEnum):
    """The part of a training step an op belongs to (`alpa.phase`)."""

    FORWARD = "forward"
    BACKWARD = "backward"
    APPLY = "apply"


class Residency(enum.StrEnum):
    """Where a layer's stashed activations live between its forward and its backward
    (`alpa.memory_plan`)."""

    KEEP = "keep"
    RECOMPUTE = "recompute"  # the whole forward runs again; only the layer's inputs stay
    SELECTIVE = "selective"  # its cheap ops run again; what dots, reductions, ... made stays
    OFFLOAD = "offload"


def write_memory_plan(module: ir.Module, residency: list[Residency]) -> None:
    """Store each layer's residency as the module's `alpa.memory_plan`."""
    with module.context:
        module.operation.attributes[MEMORY_PLAN_ATTR] = ir.ArrayAttr.get(
            [ir.StringAttr.get(r.value) for r in residency])


def memory_plan_of(module: ir.Module) -> list[Residency] | None:
    """The module's `alpa.memory_plan`, layer 0 first; None when it has none."""
    attrs = module.operation.attributes
    if MEMORY_PLAN_ATTR not in attrs:
        return None
    return [Residency(str(ir.StringAttr(a).value)) for a in ir.ArrayAttr(attrs[MEMORY_PLAN_ATTR])]


def _op(op: ir.Operation | ir.OpView | OpNode) -> ir.Operation:
    return op.op if isinstance(op, OpNode) else op.operation


def layer_of(op: ir.Operation | ir.OpView | OpNode) -> int | None:
    """An op's `alpa.layer`, if it has one."""
    attrs = _op(op).attributes
    return int(ir.IntegerAttr(attrs[LAYER_ATTR]).value) if LAYER_ATTR in attrs else None


def phase_of(op: ir.Operation | ir.OpView | OpNode) -> Phase:
    """An op's `alpa.phase`; an op without one (made by a rewrite after layer
    construction, such as an accumulation) counts as backward."""
    attrs = _op(op).attributes
    return Phase(str(ir.StringAttr(attrs[PHASE_ATTR]).value)) if PHASE_ATTR in attrs else Phase.BACKWARD


def alpa_attributes(op: ir.Operation | ir.OpView) -> dict[str, ir.Attribute]:
    """The op's `alpa.*` attributes (layer, phase, ...): what a clone or a replacement of
    the op carries over."""
    attrs = op.operation.attributes
    return {name: attrs[name] for name in map(str, attrs) if name.startswith("alpa.")}


def donation(arg_attrs: dict[str, ir.Attribute]) -> tuple[bool, int | None]:
    """Whether one argument (given its attribute dictionary) is donated, and the result
    its buffer becomes (`tf.aliasing_output`; None for a `jax.buffer_donor`)."""
    if ALIASING_OUTPUT in arg_attrs:
        return True, int(ir.IntegerAttr(arg_attrs[ALIASING_OUTPUT]).value)
    donor = arg_attrs.get(BUFFER_DONOR)
    return (donor is not None and ir.BoolAttr(donor).value), None


def donated_args(func_op: ir.Operation | ir.OpView) -> dict[int, int]:
    """Argument index -> result index (`tf.aliasing_output`), for the arguments a
    function updates in place."""
    attrs = _op(func_op).attributes
    if "arg_attrs" not in attrs:
        return {}
    found: dict[int, int] = {}
    for i, d in enumerate(ir.ArrayAttr(attrs["arg_attrs"])):
        dictionary = ir.DictAttr(d)
        if ALIASING_OUTPUT in dictionary:
            found[i] = int(ir.IntegerAttr(dictionary[ALIASING_OUTPUT]).value)
    return found
