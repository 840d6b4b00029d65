"""Write a microbatched training step as an MPMD program (docs/mpmd-format.md).

Reads: @main and the per-microbatch function made by `accumulation.split_step`, every op
carrying `alpa.layer` (from alpa-layer-construction; the rewrite copies it onto the ops
it creates) and `alpa.phase`; the stage of each layer and the mesh of each stage.
Writes: the same two functions rebuilt over `!mpmd.mesh_tensor` values: `sdy.mesh
@stage<k>` per stage, `topology` on both functions, the ops grouped into
`mpmd.fragment`s, `mpmd.transfer` wherever a value is read on another mesh than its
own, `mpmd.call` for the microbatch calls (`call_counter` = microbatch index).

Grouping (per function, in program order): an op goes to the last fragment of its
(stage, kind) when every value it reads is available there -- produced by that fragment
or by an item before it -- and opens a new fragment at the end otherwise. That keeps one
fragment per (stage, kind) whenever the dependencies allow it and never breaks program
semantics. In the microbatch function the forward ops come first (grouped that way), then
the other ops grouped the same way from the end, so that backward work JAX emits early
(residuals computed from forward values, cotangent seeds) joins the backward fragment
that reads it. Kinds: there "forward" (alpa.phase = forward) and "backward"; in @main "microbatches" (batch slices), "accumulators" (zeros),
"prologue" (once-per-step work the microbatch calls need: casts of the parameters) and
"apply" (the rest: what needs the accumulated sums, and once-per-step work nothing before
it needs, such as an optimizer's decay of its moments, placed after the calls so that
its results do not stay alive through every microbatch). A function argument lives on the mesh of the first item that reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import func, mpmd

from alpa_mlir.dialect_utils import shardy as S
from alpa_mlir.dialect_utils.attributes import (
    KIND_ATTR,
    LAYER_ATTR,
    MICROBATCH_ATTR,
    Phase,
    layer_of,
    phase_of,
)
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode
from alpa_mlir.dialect_utils.inlining import remap_operands

from .accumulation import SplitStep
from .step_analysis import op_inputs

TOPOLOGY_ATTR = "topology"
FORWARD, BACKWARD, APPLY, PROLOGUE = "forward", "backward", "apply", "prologue"
MICROBATCHES, ACCUMULATORS = "microbatches", "accumulators"


class FragmentError(ValueError):
    """The step cannot be written as fragments (missing layer attributes ...)."""

    def __init__(self, message: str, loc: ir.Location | None = None) -> None:
        super().__init__(message)
        self.location = loc


def mesh_name(stage: int) -> str:
    return f"stage{stage}"


@dataclass
class _Item:
    """A fragment being built, or a call."""

    position: int
    stage: int
    kind: str
    ops: list[OpNode] = field(default_factory=list)
    call: OpNode | None = None


@dataclass(frozen=True)
class FragmentSummary:
    """What was written, for reports and tests."""

    fragments: Mapping[str, int]  # kind -> count (both functions)
    transfers: int
    # per argument of the rewritten microbatch function: (the argument of the original
    # it stands for, its stage); a parameter read on two stages has one per stage
    callee_slots: tuple[tuple[int, int], ...] = ()


def write_mpmd(module: ir.Module, main: ir.Operation, step: SplitStep,
               stage_of_layer: Sequence[int], meshes: Sequence[S.Mesh]) -> FragmentSummary:
    """Rebuild `main` and `step.function` as MPMD (module docstring)."""
    for k in reversed(range(len(meshes))):  # each goes first: stage0 ends up on top
        S.set_mesh(module, mesh_name(k), meshes[k])
    with module.context:
        topology = ir.Attribute.parse(_topology_text(meshes))
    counts: dict[str, int] = {}
    writer = _Writer(stage_of_layer, topology, counts, step.num_inputs)
    micro = writer.rewrite(step.function, None)
    writer.rewrite(main, micro)
    return FragmentSummary(dict(sorted(counts.items())), writer.transfers, tuple(writer.callee_args))


def _topology_text(meshes: Sequence[S.Mesh]) -> str:
    entries = ", ".join(f'<"{mesh_name(k)}": {m.text()}>' for k, m in enumerate(meshes))
    return f"#mpmd.topology<{entries}>"


class _Writer:
    def __init__(self, stage_of_layer: Sequence[int], topology: ir.Attribute, counts: dict[str, int],
                 invariant: int) -> None:
        self.stage_of_layer = stage_of_layer
        self.invariant = invariant  # leading microbatch-function arguments equal in every call
        self.callee_args: list[tuple[int, int]] = []  # (call operand, stage) per callee argument
        self.topology = topology
        self.counts = counts
        self.transfers = 0
        self.callee_arg_stages: list[int] = []
        self.callee_result_stages: list[int] = []
        self.callee_name = ""

    # -- placement ---------------------------------------------------------------

    def _stage(self, node: OpNode) -> int:
        layer = layer_of(node)
        if layer is None:
            raise FragmentError(
                f"'{node.name}' has no {LAYER_ATTR}: run alpa-layer-construction first", node.location)
        if not 0 <= layer < len(self.stage_of_layer):
            raise FragmentError(f"{LAYER_ATTR} = {layer} is outside the plan's "
                                f"{len(self.stage_of_layer)} layers", node.location)
        return self.stage_of_layer[layer]

    def _items(self, graph: FunctionGraph, is_main: bool) -> list[_Item]:
        if is_main:
            return self._main_items(graph)
        forward = [n for n in graph.ops if phase_of(n) is Phase.FORWARD]
        backward = [n for n in graph.ops if phase_of(n) is not Phase.FORWARD]
        items = _group(graph, forward, lambda n: (self._stage(n), FORWARD), reverse=False)
        tail = _group(graph, backward, lambda n: (self._stage(n), BACKWARD), reverse=True)
        for item in tail:
            item.position += len(items)
        return items + tail

    def _main_items(self, graph: FunctionGraph) -> list[_Item]:
        items: list[_Item] = []
        where: dict[ir.Value, int] = {}  # value -> position of the item producing it
        last: dict[tuple[int, str], _Item] = {}
        after_calls: set[ir.Value] = set()
        first_use = _first_call_use(graph)
        early = self._early(graph)
        for node in [n for n in graph.ops if n.index in early] + [n for n in graph.ops if n.index not in early]:
            reads = op_inputs(graph, node)
            if node.name == "func.call":
                item = _Item(len(items), -1, "call", call=node)
                items.append(item)
            else:
                kind, stage = self._kind_and_stage(node, reads, after_calls, first_use)
                if kind == PROLOGUE and node.index not in early:
                    kind = APPLY
                need = max((where.get(v.value, -1) for v in reads), default=-1)
                found = last.get((stage, kind))
                if found is None or found.position < need:
                    item = _Item(len(items), stage, kind)
                    items.append(item)
                    last[(stage, kind)] = item
                else:
                    item = found
                item.ops.append(node)
            for r in node.results:
                where[r.value] = item.position
                if item.kind in ("call", APPLY):
                    after_calls.add(r.value)
        return items

    def _early(self, graph: FunctionGraph) -> set[int]:
        """The ops of @main that go first (the rest follow, each part in program order):
        the calls, what they read, and what another stage reads (computed once before the
        calls, handed over in time). Once-per-step work none of these needs (an
        optimizer's decay of its moments, written before the calls) then joins the apply
        fragments instead of a prologue whose results would stay alive through every
        microbatch. A topological order: an early op reads only early ops."""
        layers = {n.index: layer_of(n) for n in graph.ops if n.name != "func.call"}
        stage = {i: None if k is None or not 0 <= k < len(self.stage_of_layer) else self.stage_of_layer[k]
                 for i, k in layers.items()}
        stage.update({n.index: None for n in graph.ops if n.name == "func.call"})
        stack = [n.index for n in graph.ops if n.name == "func.call"]
        for node in graph.ops:
            stack.extend(v.producer for v in op_inputs(graph, node)
                         if v.producer is not None and stage[node.index] is not None
                         and stage[v.producer] is not None and stage[v.producer] != stage[node.index])
        needed: set[int] = set()
        while stack:
            i = stack.pop()
            if i in needed:
                continue
            needed.add(i)
            stack.extend(v.producer for v in op_inputs(graph, graph.ops[i]) if v.producer is not None)
        return needed

    def _kind_and_stage(self, node: OpNode, reads: Sequence[ValueNode],
                        after_calls: set[ir.Value], first_use: Mapping[ir.Value, int]) -> tuple[str, int]:
        attrs = node.op.attributes
        if KIND_ATTR in attrs:
            kind = str(ir.StringAttr(attrs[KIND_ATTR]).value)
            arg = first_use.get(node.results[0].value)
            if arg is None:
                raise FragmentError(f"'{node.name}' ({kind}) feeds no microbatch call", node.location)
            return kind, self.callee_arg_stages[arg]
        stage = self._stage(node)
        return (APPLY if any(v.value in after_calls for v in reads) else PROLOGUE), stage

    # -- rebuilding --------------------------------------------------------------

    def rewrite(self, old: ir.Operation, callee: ir.Operation | None) -> ir.Operation:
        graph = FunctionGraph(old)
        is_main = callee is not None
        items = self._items(graph, is_main)
        arg_stage = self._arg_stages(graph, items)
        home: dict[tuple[ir.Value, int], ir.Value] = {}
        producer_stage: dict[ir.Value, int] = {}
        # An argument that every call passes unchanged (a parameter) gets one copy per
        # stage that reads it: @main transfers it once per step, not once per microbatch.
        slots = [(a.index, arg_stage[a.index]) for a in graph.args]
        if not is_main:
            slots += [(i, s) for i, s in _more_stages(graph, items, arg_stage, self.invariant)]
        with old.location:
            arg_types = [self._mt(s, graph.args[i].value.type) for i, s in slots]
            result_stages = [self._result_stage(graph, v, items, arg_stage) for v in graph.returned]
            result_types = [self._mt(s, v.value.type) for s, v in zip(result_stages, graph.returned, strict=True)]
            new = func.FuncOp(graph.name + ".mpmd", (arg_types, result_types), ip=ir.InsertionPoint(old))
            for name in ("sym_visibility", "arg_attrs", "res_attrs"):
                if name in old.attributes:
                    new.attributes[name] = old.attributes[name]
            for attr_name in list(old.attributes):
                if str(attr_name).startswith("alpa."):
                    new.attributes[attr_name] = old.attributes[attr_name]
            new.attributes[TOPOLOGY_ATTR] = self.topology
            block = new.regions[0].blocks.append(*arg_types)
            for (i, s), b in zip(slots, block.arguments, strict=True):
                home[(graph.args[i].value, s)] = b
                producer_stage.setdefault(graph.args[i].value, s)
            ip = ir.InsertionPoint(block)
            for item in items:
                if item.call is not None:
                    self._emit_call(graph, item, ip, home, producer_stage)
                else:
                    self._emit_fragment(graph, item, ip, home, producer_stage)
            returned = [self._on(v.value, s, ip, home, producer_stage) for v, s in zip(graph.returned, result_stages, strict=True)]
            func.ReturnOp(returned, ip=ip)
        if not is_main:
            self.callee_arg_stages = [arg_stage[a.index] for a in graph.args]
            self.callee_args = slots
            self.callee_result_stages = result_stages
        name = graph.name
        old.erase()
        new.attributes["sym_name"] = ir.StringAttr.get(name, new.context)
        if not is_main:
            self.callee_name = name
        return new.operation

    def _arg_stages(self, graph: FunctionGraph, items: Sequence[_Item]) -> list[int]:
        stages = [-1] * len(graph.args)
        for item in items:
            if item.call is not None:
                for k, v in enumerate(item.call.operands):
                    if v.is_argument and stages[v.index] < 0:
                        stages[v.index] = self.callee_arg_stages[k]
                continue
            for node in item.ops:
                for v in op_inputs(graph, node):
                    if v.is_argument and stages[v.index] < 0:
                        stages[v.index] = item.stage
        return [0 if s < 0 else s for s in stages]

    def _result_stage(self, graph: FunctionGraph, v: ValueNode, items: Sequence[_Item],
                      arg_stage: Sequence[int]) -> int:
        if v.is_argument:
            return arg_stage[v.index]
        for item in items:
            if item.call is not None and item.call.index == v.producer:
                return self.callee_result_stages[v.index]
            if any(node.index == v.producer for node in item.ops):
                return item.stage
        raise AssertionError("returned value without a producer item")

    def _mt(self, stage: int, t: ir.Type) -> ir.Type:
        return ir.Type.parse(f'!mpmd.mesh_tensor<"{mesh_name(stage)}", {t}>')

    def _on(self, value: ir.Value, stage: int, ip: ir.InsertionPoint,
            home: dict[tuple[ir.Value, int], ir.Value], producer_stage: Mapping[ir.Value, int]) -> ir.Value:
        """`value` on the mesh of `stage`, transferring it there once if needed."""
        key = (value, stage)
        found = home.get(key)
        if found is not None:
            return found
        source = home[(value, producer_stage[value])]
        moved = mpmd.TransferOp(self._mt(stage, value.type), source, ip=ip).result
        self.transfers += 1
        home[key] = moved
        return moved

    def _emit_call(self, graph: FunctionGraph, item: _Item, ip: ir.InsertionPoint,
                   home: dict[tuple[ir.Value, int], ir.Value], producer_stage: dict[ir.Value, int]) -> None:
        node = item.call
        assert node is not None
        operands = [self._on(node.operands[k].value, stage, ip, home, producer_stage)
                    for k, stage in self.callee_args]
        types = [self._mt(s, r.value.type) for s, r in zip(self.callee_result_stages, node.results, strict=True)]
        call = mpmd.CallOp(types, operands, self.callee_name, ip=ip)
        attrs = node.op.attributes
        counter = int(ir.IntegerAttr(attrs[MICROBATCH_ATTR]).value) if MICROBATCH_ATTR in attrs else 0
        call.operation.attributes["call_counter"] = ir.IntegerAttr.get(ir.IntegerType.get_unsigned(32), counter)
        for r, new, s in zip(node.results, call.results, self.callee_result_stages, strict=True):
            home[(r.value, s)] = new
            producer_stage[r.value] = s

    def _emit_fragment(self, graph: FunctionGraph, item: _Item, ip: ir.InsertionPoint,
                       home: dict[tuple[ir.Value, int], ir.Value], producer_stage: dict[ir.Value, int]) -> None:
        inside = {r.value for node in item.ops for r in node.results}
        inputs: list[ir.Value] = []
        for node in item.ops:
            for v in op_inputs(graph, node):
                if v.value not in inside and v.value not in inputs:
                    inputs.append(v.value)
        outputs = [r for node in item.ops for r in node.results if _read_after(graph, r, item)]
        operands = [self._on(v, item.stage, ip, home, producer_stage) for v in inputs]
        layers = sorted({k for n in item.ops if (k := layer_of(n)) is not None})
        origin = _origin(item.kind, layers)
        staged = item.kind in (FORWARD, BACKWARD, APPLY)
        frag = mpmd.FragmentOp([self._mt(item.stage, r.value.type) for r in outputs], operands, origin,
                               mesh_name(item.stage), stage_id=item.stage if staged else None, ip=ip)
        frag.operation.attributes[KIND_ATTR] = ir.StringAttr.get(item.kind)
        body = frag.regions[0].blocks.append(*[v.type for v in inputs])
        mapping = dict(zip(inputs, body.arguments, strict=True))
        inner = ir.InsertionPoint(body)
        for node in item.ops:
            clone = node.op.clone(inner)
            remap_operands(clone, mapping)
            for name in (KIND_ATTR,):
                if name in clone.attributes:
                    del clone.attributes[name]
            for old, new in zip(node.results, clone.results, strict=True):
                mapping[old.value] = new
        mpmd.ReturnOp([mapping[r.value] for r in outputs], ip=inner)
        for r, new in zip(outputs, frag.results, strict=True):
            home[(r.value, item.stage)] = new
            producer_stage[r.value] = item.stage
        self.counts[item.kind] = self.counts.get(item.kind, 0) + 1


def _group(graph: FunctionGraph, nodes: Sequence[OpNode],
           key: Callable[[OpNode], tuple[int, str]], *, reverse: bool) -> list[_Item]:
    """Group `nodes` (program order) into fragments: forward greedy (join the last
    fragment of the key if all inputs are available there), or, with `reverse`, the
    mirror image from the end (join it if all users run there or later), which puts
    work that only feeds a later fragment (residuals, cotangent seeds) into it."""
    items: list[_Item] = []
    where: dict[int, int] = {}  # op index -> item position (in processing order)
    last: dict[tuple[int, str], _Item] = {}
    order = list(reversed(nodes)) if reverse else list(nodes)
    for node in order:
        stage, kind = key(node)
        if reverse:
            linked = [u.index for r in node.results for u, _ in graph.users(r)]
            linked += [u.index for r in node.results for u in graph.nested_users(r)]
        else:
            linked = [v.producer for v in op_inputs(graph, node) if v.producer is not None]
        need = max((where[i] for i in linked if i in where), default=-1)
        found = last.get((stage, kind))
        if found is None or found.position < need:
            found = _Item(len(items), stage, kind)
            items.append(found)
            last[(stage, kind)] = found
        found.ops.append(node)
        where[node.index] = found.position
    if reverse:
        items.reverse()
        for k, item in enumerate(items):
            item.position = k
            item.ops.reverse()
    return items


def _more_stages(graph: FunctionGraph, items: Sequence[_Item], arg_stage: Sequence[int],
                 invariant: int) -> list[tuple[int, int]]:
    """(argument, stage) for each further stage reading one of the first `invariant`
    arguments, in first-read order."""
    found: list[tuple[int, int]] = []
    for item in items:
        for node in item.ops:
            for v in op_inputs(graph, node):
                if v.is_argument and v.index < invariant and item.stage != arg_stage[v.index] \
                        and (v.index, item.stage) not in found:
                    found.append((v.index, item.stage))
    return found


def _read_after(graph: FunctionGraph, v: ValueNode, item: _Item) -> bool:
    """Is `v` read outside `item` (by a later item or the return)?"""
    members = {node.index for node in item.ops}
    if graph.result_positions(v):
        return True
    users = [node.index for node, _ in graph.users(v)] + [node.index for node in graph.nested_users(v)]
    return any(u not in members for u in users)


def _origin(kind: str, layers: Sequence[int]) -> ir.Attribute:
    if kind in (MICROBATCHES, ACCUMULATORS) or not layers:
        labels = [f'#mpmd.user_origin<"{kind}">']
    else:
        suffix = "(1)" if kind == BACKWARD else ""
        labels = [f'#mpmd.user_origin<"layer{k}"{suffix}>' for k in layers]
    return ir.Attribute.parse("[" + ", ".join(labels) + "]")


def _first_call_use(graph: FunctionGraph) -> dict[ir.Value, int]:
    """Value -> the callee argument position where a call first reads it."""
    found: dict[ir.Value, int] = {}
    for node in graph.ops:
        if node.name == "func.call":
            for k, v in enumerate(node.operands):
                found.setdefault(v.value, k)
    return found
