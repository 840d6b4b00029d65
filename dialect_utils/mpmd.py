"""Shardy MPMD (`mpmd` dialect) programs: reading them, and turning them into plain StableHLO.

Reads the module format of `docs/mpmd-format.md`:

```
@main / microbatch function  (attributes {topology = #mpmd.topology<...>})
  mpmd.fragment<mesh="stage0", ...> (...) {alpa.kind = "forward"} (%a: tensor<..>) {
     stablehlo ops, sdy.sharding_constraint ...           ──fragment_module()──► func @main
     mpmd.return ...                                                         (one fragment)
  } : (!mpmd.mesh_tensor<"stage0", tensor<..>, sharding=<@stage0, [...]>>) -> ...
  mpmd.transfer %v : (!mpmd.mesh_tensor<"stage0", ..>) -> !mpmd.mesh_tensor<"stage1", ..>
  mpmd.call @microbatch(...) {call_counter = k : ui32}
  func.return ...                                         ──flatten()──► plain @main
```

- `topology`, `is_mesh_tensor`, `parse_mesh_tensor` (`MeshTensor`: mesh, global type,
  sharding, `MemoryKind`), `mesh_tensor_parts`, `mesh_tensor_type`, `with_memory_kind`,
  `global_type` and the `fragment_*` accessors read and write types and attributes (text
  parsing of their printed form: jaxlib has no Python classes for mpmd types and
  attributes). This module is the one owner of the `!mpmd.mesh_tensor<...>` text.
- `program_functions` checks the structure (only fragments, transfers, calls and returns
  at the top level of @main and of its callees; no call cycles; no sdy op other than
  sharding constraints inside fragments; fragments read and write device memory only; a
  transfer with an end in host memory changes only the memory kind) and raises located
  `DiagnosticError`s.
- `fragment_module` and `flatten` write NEW modules (the input is never modified):
  one fragment's body as a single-device `@main`, or the whole program with fragments and
  calls inlined and transfers removed. Both are plain StableHLO (no mpmd, no sdy) that
  XLA compiles for one device.

No jax runtime here: this is MLIR only.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import func

from . import context, graph, shardy
from .attributes import KIND_ATTR
from .diagnostics import DiagnosticError, from_mlir_error, module_location, source_loc

FRAGMENT = "mpmd.fragment"
TRANSFER = "mpmd.transfer"
CALL = "mpmd.call"
FUNC_RETURN = "func.return"
TOP_LEVEL_OPS = (FRAGMENT, TRANSFER, CALL, FUNC_RETURN)

TOPOLOGY_ATTR = "topology"
DEFAULT_KIND = "fragment"  # the kind of a fragment without `alpa.kind`

# sdy ops inside a fragment that only constrain a sharding (their result is their operand).
SHARDING_ONLY_SDY_OPS = ("sdy.sharding_constraint", "sdy.reshard")

_MESH_TENSOR_PREFIX = "!mpmd.mesh_tensor<"
_MEMORY_KIND_KEY = "memory_kind"
_TOPOLOGY_PREFIX = "#mpmd.topology<"
_OPENERS = {"<": ">", "[": "]", "{": "}", "(": ")"}


class MemoryKind(enum.StrEnum):
    """Where a mesh tensor's shards live (`memory_kind="..."` in its type; jaxlib's mpmd
    verifier admits exactly these). The values are JAX's memory kind names
    (`jax.sharding.Sharding.with_memory_kind`); no `memory_kind=` means DEVICE."""

    DEVICE = "device"
    PINNED_HOST = "pinned_host"


# ----------------------------------------------------------------------------- text parsing


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split at `sep` outside brackets and string literals."""
    parts: list[str] = []
    stack: list[str] = []
    start = 0
    in_string = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in _OPENERS:
            stack.append(_OPENERS[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
        elif ch == sep and not stack:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"expected a quoted name, got {text!r}")
    return text[1:-1]


def _strip_wrapper(text: str, prefix: str, what: str) -> str:
    text = text.strip()
    if not text.startswith(prefix) or not text.endswith(">"):
        raise ValueError(f"not {what}: {text!r}")
    return text[len(prefix):-1]


def parse_topology(text: str) -> dict[str, shardy.Mesh]:
    """`#mpmd.topology<<"stage0" : <["x"=2]>>, ...>` -> {"stage0": Mesh(x=2), ...}."""
    body = _strip_wrapper(text, _TOPOLOGY_PREFIX, "an #mpmd.topology attribute")
    meshes: dict[str, shardy.Mesh] = {}
    for entry in _split_top_level(body, ","):
        if not entry.startswith("<") or not entry.endswith(">"):
            raise ValueError(f"malformed topology entry {entry!r} in {text!r}")
        parts = _split_top_level(entry[1:-1], ":")
        if len(parts) != 2:
            raise ValueError(f"malformed topology entry {entry!r} in {text!r}")
        meshes[_unquote(parts[0])] = shardy.parse_mesh(parts[1])
    return meshes


def has_topology(func_op: ir.Operation) -> bool:
    attrs = func_op.operation.attributes
    return TOPOLOGY_ATTR in attrs and str(attrs[TOPOLOGY_ATTR]).startswith(_TOPOLOGY_PREFIX)


def topology(func_op: ir.Operation) -> dict[str, shardy.Mesh]:
    """The meshes of a function's `#mpmd.topology`, by name, in declaration order."""
    op = func_op.operation
    if not has_topology(op):
        raise DiagnosticError.single(
            f"function {_symbol(op)} has no #mpmd.topology attribute", source_loc(op.location)
        )
    try:
        return parse_topology(str(op.attributes[TOPOLOGY_ATTR]))
    except ValueError as err:
        raise DiagnosticError.single(str(err), source_loc(op.location)) from None


def is_mesh_tensor(t: ir.Type) -> bool:
    return str(t).startswith(_MESH_TENSOR_PREFIX)


@dataclass(frozen=True)
class MeshTensor:
    """The parts of `!mpmd.mesh_tensor<"stage0", tensor<4x8xf32>, sharding=<@stage0, [{"x"}, {}]>,
    memory_kind="pinned_host">`."""

    mesh: str
    tensor: ir.RankedTensorType  # the global tensor type
    sharding: str | None  # the sharding body `<@mesh, [...]>`, None = replicated
    memory_kind: MemoryKind = MemoryKind.DEVICE


def parse_mesh_tensor(t: ir.Type) -> MeshTensor:
    """The parts of a mesh tensor type (ValueError for any other type)."""
    parts = _split_top_level(_strip_wrapper(str(t), _MESH_TENSOR_PREFIX, "an !mpmd.mesh_tensor type"), ",")
    if len(parts) < 2:
        raise ValueError(f"malformed mesh tensor type {t}")
    mesh_name = _unquote(parts[0])
    with t.context:
        tensor = ir.RankedTensorType(ir.Type.parse(parts[1]))
    sharding_text = None
    memory_kind = MemoryKind.DEVICE
    for part in parts[2:]:
        key, _, value = part.partition("=")
        if key.strip() == "sharding":
            sharding_text = value.strip()
        elif key.strip() == _MEMORY_KIND_KEY:
            name = _unquote(value.strip())
            try:
                memory_kind = MemoryKind(name)
            except ValueError:
                kinds = ", ".join(repr(k.value) for k in MemoryKind)
                raise ValueError(f"unknown memory kind {name!r} in {t} (expected {kinds})") from None
    return MeshTensor(mesh_name, tensor, sharding_text, memory_kind)


def mesh_tensor_parts(t: ir.Type) -> tuple[str, ir.RankedTensorType, str | None]:
    """(mesh name, global tensor type, sharding body `<@mesh, [...]>` or None) of
    `!mpmd.mesh_tensor<"stage0", tensor<4x8xf32>, sharding=<@stage0, [{"x"}, {}]>>`
    (its memory kind: `parse_mesh_tensor`)."""
    parsed = parse_mesh_tensor(t)
    return parsed.mesh, parsed.tensor, parsed.sharding


def mesh_tensor_type(
    mesh_name: str, tensor_type: ir.Type, sharding_text: str | None = None,
    memory_kind: MemoryKind = MemoryKind.DEVICE,
) -> ir.Type:
    """`!mpmd.mesh_tensor<"mesh_name", tensor<...>[, sharding=<...>][, memory_kind="..."]>`.
    `sharding_text` is the `<@mesh, [...]>` body (a full `#sdy.sharding<...>` is accepted
    too); device memory is written as no `memory_kind=`."""
    extra = ""
    if sharding_text is not None:
        body = sharding_text.strip()
        if body.startswith("#sdy.sharding"):
            body = body[len("#sdy.sharding"):]
        extra = f", sharding={body}"
    if memory_kind is not MemoryKind.DEVICE:
        extra += f', {_MEMORY_KIND_KEY}="{MemoryKind(memory_kind).value}"'
    with tensor_type.context:
        return ir.Type.parse(f'{_MESH_TENSOR_PREFIX}"{mesh_name}", {tensor_type}{extra}>')


def with_memory_kind(t: ir.Type, memory_kind: MemoryKind) -> ir.Type:
    """The mesh tensor type `t` (same mesh, shape, sharding) in `memory_kind`."""
    parsed = parse_mesh_tensor(t)
    return mesh_tensor_type(parsed.mesh, parsed.tensor, parsed.sharding, memory_kind)


def memory_kind_of(t: ir.Type) -> MemoryKind:
    """Where values of type `t` live: a mesh tensor's memory kind; DEVICE for any other type."""
    text = str(t)
    if not text.startswith(_MESH_TENSOR_PREFIX) or _MEMORY_KIND_KEY not in text:
        return MemoryKind.DEVICE  # without parsing: every fragment operand is checked
    return parse_mesh_tensor(t).memory_kind


def global_type(t: ir.Type) -> ir.Type:
    """The global tensor type of a mesh tensor; any other type unchanged."""
    return mesh_tensor_parts(t)[1] if is_mesh_tensor(t) else t


# ----------------------------------------------------------------------------- fragments


def _str_attr(op: ir.Operation, name: str) -> str | None:
    attrs = op.operation.attributes
    return str(ir.StringAttr(attrs[name]).value) if name in attrs else None


def fragment_mesh(op: ir.Operation) -> str:
    """The mesh a fragment runs on (`mesh="stage0"`)."""
    return _str_attr(op, "mesh_name") or ""


def fragment_kind(op: ir.Operation) -> str:
    """Its `alpa.kind` ("forward", "backward", "apply", ...), or "fragment"."""
    return _str_attr(op, KIND_ATTR) or DEFAULT_KIND


def fragment_origin(op: ir.Operation) -> tuple[str, ...]:
    """The names of its `origin=[...]` list."""
    attrs = op.operation.attributes
    if "origin" not in attrs:
        return ()
    return tuple(re.findall(r'#mpmd\.user_origin<"((?:[^"\\]|\\.)*)"', str(attrs["origin"])))


def fragment_stage(op: ir.Operation) -> int | None:
    """Its `stage=k`, if set."""
    attrs = op.operation.attributes
    return int(ir.IntegerAttr(attrs["stage_id"]).value) if "stage_id" in attrs else None


def describe_fragment(op: ir.Operation) -> str:
    """`fragment "forward" on stage0 (origin layer0, layer1)` for messages."""
    origin = fragment_origin(op)
    where = f" (origin {', '.join(origin)})" if origin else ""
    return f'fragment "{fragment_kind(op)}" on {fragment_mesh(op) or "?"}{where}'


def callee_name(op: ir.Operation) -> str:
    """The symbol an `mpmd.call` calls."""
    return str(ir.FlatSymbolRefAttr(op.operation.attributes["callee"]).value)


def call_counter(op: ir.Operation) -> int | None:
    attrs = op.operation.attributes
    return int(ir.IntegerAttr(attrs["call_counter"]).value) if "call_counter" in attrs else None


# ----------------------------------------------------------------------------- structure


def _symbol(op: ir.Operation) -> str:
    name = _str_attr(op, "sym_name")
    return f"@{name}" if name is not None else op.name


def top_level_ops(func_op: ir.Operation) -> Iterator[ir.Operation]:
    """The ops of a function's body, in program order (terminator included)."""
    for op in func_op.operation.regions[0].blocks[0].operations:
        yield op.operation


def _error(op: ir.Operation, message: str) -> DiagnosticError:
    return DiagnosticError.single(message, source_loc(op.location))


def _check_fragment_body(fragment: ir.Operation) -> None:
    """Only StableHLO-level ops and sharding constraints inside a fragment."""
    bad: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        name = op.name
        if op != fragment and (
            (name.startswith("sdy.") and name not in SHARDING_ONLY_SDY_OPS)
            or (name.startswith("mpmd.") and name != "mpmd.return")
        ):
            bad.append(op)
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    fragment.walk(visit)
    if bad:
        raise _error(bad[0], f"'{bad[0].name}' inside an mpmd.fragment is not supported: "
                             f"fragments hold StableHLO ops and {' / '.join(SHARDING_ONLY_SDY_OPS)} only")


def _check_fragment_memory(fragment: ir.Operation) -> None:
    """A fragment computes on device memory: no operand or result in host memory."""
    for what, values in (("operand", fragment.operands), ("result", fragment.results)):
        for i, v in enumerate(values):
            kind = memory_kind_of(v.type)
            if kind is not MemoryKind.DEVICE:
                raise _error(fragment, f"{describe_fragment(fragment)}: {what} {i} is in {kind.value} memory "
                                       f"({v.type}); fragments read and write {MemoryKind.DEVICE.value} memory "
                                       "only (an mpmd.transfer on the same mesh moves a value between them)")


def _check_transfer(transfer: ir.Operation) -> None:
    """A transfer with an end outside device memory changes the memory kind and nothing
    else: same mesh, same sharding, the other end in device memory."""
    source, target = transfer.operands[0].type, transfer.results[0].type
    if not (is_mesh_tensor(source) and is_mesh_tensor(target)):
        return  # jaxlib's verifier rejects it
    src, dst = parse_mesh_tensor(source), parse_mesh_tensor(target)
    if src.memory_kind is MemoryKind.DEVICE and dst.memory_kind is MemoryKind.DEVICE:
        return
    if src.memory_kind is dst.memory_kind or src.mesh != dst.mesh or src.sharding != dst.sharding:
        host = src.memory_kind if src.memory_kind is not MemoryKind.DEVICE else dst.memory_kind
        raise _error(transfer, f"mpmd.transfer from {source} to {target}: a transfer to or from {host.value} "
                               "memory only moves a value between device and host memory of its own mesh; "
                               "expected the same mesh and sharding on both ends, one of them in device memory")


def _check_function(func_op: ir.Operation) -> list[ir.Operation]:
    """Check the top level of an MPMD function; returns its mpmd.call ops."""
    calls = []
    for op in top_level_ops(func_op):
        if op.name not in TOP_LEVEL_OPS:
            raise _error(op, f"'{op.name}' is not supported at the top level of MPMD function "
                             f"{_symbol(func_op)}: expected only {', '.join(TOP_LEVEL_OPS)}")
        if op.name == FRAGMENT:
            _check_fragment_body(op)
            _check_fragment_memory(op)
        elif op.name == TRANSFER:
            _check_transfer(op)
        elif op.name == CALL:
            calls.append(op)
    return calls


def program_functions(module: ir.Module) -> dict[str, ir.Operation]:
    """@main and every function it reaches through `mpmd.call`, by name (main first),
    after checking their structure. Raises DiagnosticError at the offending op."""
    funcs = graph.functions(module)
    main = funcs.get("main")
    if main is None:
        raise DiagnosticError.single(
            f"module has no function @main (found: {', '.join(funcs) or 'none'})",
            source_loc(module_location(module)),
        )
    topology(main)  # present and well-formed
    found: dict[str, ir.Operation] = {}

    def visit(name: str, func_op: ir.Operation, stack: tuple[str, ...]) -> None:
        if name in found:
            return
        for call in _check_function(func_op):
            target = callee_name(call)
            if target in stack or target == name:
                raise _error(call, f"mpmd.call @{target} is recursive "
                                   f"(call chain: @{' -> @'.join((*stack, name, target))})")
            if target not in funcs:
                raise _error(call, f"mpmd.call of @{target}: no such func.func in the module")
            visit(target, funcs[target], (*stack, name))
        found[name] = func_op

    visit("main", main, ())
    return {"main": main, **{k: v for k, v in found.items() if k != "main"}}


# ----------------------------------------------------------------------------- rewriting


def _inline_block(op: ir.Operation, body: ir.Block, operands: Sequence[ir.Value]) -> list[ir.Value]:
    """Move `body`'s ops (not its terminator) right before `op`, its arguments replaced
    by `operands`; returns the values its terminator returns."""
    for arg, value in zip(body.arguments, operands, strict=True):
        arg.replace_all_uses_with(value)
    ops = [o.operation for o in body.operations]
    for body_op in ops[:-1]:
        body_op.move_before(op)
    return list(ops[-1].operands)


def _replace_op(op: ir.Operation, values: Sequence[ir.Value]) -> None:
    for result, value in zip(op.results, values, strict=True):
        result.replace_all_uses_with(value)
    op.erase()


def _inline_call(call: ir.Operation, funcs: dict[str, ir.Operation]) -> None:
    callee = funcs[callee_name(call)].clone(ip=False)
    values = _inline_block(call, callee.regions[0].blocks[0], list(call.operands))
    _replace_op(call, values)
    callee.erase()


def _inline_program(main: ir.Operation, funcs: dict[str, ir.Operation]) -> None:
    """In place: calls inlined (repeatedly: callees may call), then fragments inlined and
    transfers removed, in @main."""
    while True:
        calls = [op for op in top_level_ops(main) if op.name == CALL]
        if not calls:
            break
        for call in calls:
            _inline_call(call, funcs)
    for op in list(top_level_ops(main)):
        if op.name == FRAGMENT:
            _replace_op(op, _inline_block(op, op.regions[0].blocks[0], list(op.operands)))
        elif op.name == TRANSFER:
            _replace_op(op, list(op.operands))


def _retype_to_global(func_op: ir.Operation) -> None:
    """Arguments and results of `func_op` as their global tensor types."""
    block = func_op.regions[0].blocks[0]
    for arg in block.arguments:
        arg.set_type(global_type(arg.type))
    ftype = ir.FunctionType(ir.TypeAttr(func_op.attributes["function_type"]).value)
    with func_op.context:
        new = ir.FunctionType.get([global_type(t) for t in ftype.inputs],
                                  [global_type(t) for t in ftype.results])
        func_op.attributes["function_type"] = ir.TypeAttr.get(new)


def _verified(module: ir.Module) -> ir.Module:
    try:
        module.operation.verify()
    except ir.MLIRError as err:
        raise DiagnosticError(from_mlir_error(err)) from None
    return module


def flatten(module: ir.Module) -> ir.Module:
    """A NEW plain StableHLO module computing what the MPMD `module` computes: @main with
    the same arguments and results (global tensor types, argument attributes such as
    `tf.aliasing_output` kept, shardings dropped), every `mpmd.call` and fragment
    inlined, transfers removed, no sdy op or mesh left. XLA compiles it for one device."""
    funcs = program_functions(module)
    copy = context.clone_module(module)
    copied = graph.functions(copy)
    main = copied["main"]
    _inline_program(main, {name: copied[name] for name in funcs})
    _retype_to_global(main)
    del main.attributes[TOPOLOGY_ATTR]
    for name, func_op in copied.items():  # callees, and any other MPMD function
        if name != "main" and has_topology(func_op):
            func_op.erase()
    shardy.strip_shardings(copy)
    return _verified(copy)


def _referenced_functions(op: ir.Operation, funcs: dict[str, ir.Operation]) -> list[str]:
    """Functions that `op` reaches through `func.call` (transitively), in first-use order."""
    found: list[str] = []
    pending = [op]
    while pending:
        current = pending.pop()

        def visit(inner: ir.Operation) -> ir.WalkResult:
            if inner.name == "func.call":
                name = str(ir.FlatSymbolRefAttr(inner.attributes["callee"]).value)
                if name in funcs and name not in found:
                    found.append(name)
                    pending.append(funcs[name])
            return ir.WalkResult.ADVANCE

        current.walk(visit)
    return found


def _enclosing_module(op: ir.Operation) -> ir.Operation | None:
    parent = op.parent
    while parent is not None and parent.operation.name != "builtin.module":
        parent = parent.operation.parent
    return None if parent is None else parent.operation


def fragment_module(fragment: ir.Operation, keep_shardings: bool = False) -> ir.Module:
    """A NEW plain module whose `@main` is the fragment's body: arguments of the body's
    block types, results of its `mpmd.return`; private functions the body calls copied
    along. Without `keep_shardings`: sharding constraints dropped, XLA compiles it for
    one device. With it: an SPMD module for the fragment's mesh -- `sdy.mesh` of that
    name with the topology's axes, the `mesh_tensor` shardings of its operands and
    results on @main's arguments and results, the constraints inside kept."""
    fragment = fragment.operation
    _check_fragment_body(fragment)
    body = fragment.regions[0].blocks[0]
    source_module = _enclosing_module(fragment)
    with fragment.context, fragment.location:
        new = ir.Module.create()
        arg_types = [a.type for a in body.arguments]
        terminator = list(body.operations)[-1].operation
        result_types = [v.type for v in terminator.operands]
        with ir.InsertionPoint(new.body):
            main = func.FuncOp("main", ir.FunctionType.get(arg_types, result_types))
        block = ir.Block.create_at_start(main.regions[0], arg_types)
        clone = fragment.clone(ip=ir.InsertionPoint(block))
        values = _inline_block(clone, clone.regions[0].blocks[0], list(block.arguments))
        with ir.InsertionPoint(block):
            func.ReturnOp(values)
        clone.erase()
        if source_module is not None:
            helpers = {
                str(ir.StringAttr(o.operation.attributes["sym_name"]).value): o.operation
                for o in source_module.regions[0].blocks[0].operations
                if o.operation.name == "func.func"
            }
            for name in _referenced_functions(main.operation, helpers):
                helpers[name].clone(ip=ir.InsertionPoint(new.body))
    if not keep_shardings:
        shardy.strip_shardings(new)
        return _verified(new)
    _declare_fragment_mesh(new, main.operation, fragment)
    return _verified(new)


def _declare_fragment_mesh(module: ir.Module, main: ir.Operation, fragment: ir.Operation) -> None:
    """`sdy.mesh @<fragment mesh>` and @main's argument/result shardings (SPMD form)."""
    mesh_name = fragment_mesh(fragment)
    parent = fragment.parent
    func_op = parent.operation if parent is not None else None
    if func_op is None or not has_topology(func_op):
        raise _error(fragment, "the fragment's function has no topology")
    meshes = topology(func_op)
    if mesh_name not in meshes:
        raise _error(fragment, f"mesh '{mesh_name}' is not in the topology ({', '.join(meshes)})")
    shardy.set_mesh(module, mesh_name, meshes[mesh_name])

    def declared(types: Sequence[ir.Type]) -> dict[int, shardy.Sharding | None]:
        found: dict[int, shardy.Sharding | None] = {}
        for i, t in enumerate(types):
            text = mesh_tensor_parts(t)[2] if is_mesh_tensor(t) else None
            found[i] = None if text is None else shardy.parse_sharding(text)
        return found

    shardy.set_arg_shardings(main, declared([v.type for v in fragment.operands]))
    shardy.set_result_shardings(main, declared([r.type for r in fragment.results]))
