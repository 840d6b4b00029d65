"""Shardy (`sdy`) meshes and shardings as Python value types, read from and written to IR.

A sharding is, per tensor dimension, the ordered mesh axes that split it (major to minor),
the Shardy text `#sdy.sharding<@mesh, [{"x"}, {}]>` being `Sharding("mesh", (("x",), ()))`.
Open dimensions (`{?}`) and priorities are kept so that text round-trips.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import sdy

from .graph import functions

SDY_SHARDING = "sdy.sharding"
GSPMD_SHARDING = "mhlo.sharding"
_SHARDING_ATTRS = (SDY_SHARDING, GSPMD_SHARDING)


@dataclass(frozen=True)
class MeshAxis:
    name: str
    size: int

    def __post_init__(self) -> None:
        if not self.name or self.size < 1:
            raise ValueError(f"invalid mesh axis {self.name!r}={self.size}")


@dataclass(frozen=True)
class Mesh:
    """A logical device mesh: named axes with sizes, major to minor."""

    axes: tuple[MeshAxis, ...]
    device_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        names = [a.name for a in self.axes]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate mesh axis names in {names}")

    @classmethod
    def from_shape(cls, shape: tuple[int, ...], names: tuple[str, ...]) -> Mesh:
        if len(shape) != len(names):
            raise ValueError(f"mesh shape {shape} and axis names {names} differ in length")
        return cls(tuple(MeshAxis(n, s) for n, s in zip(names, shape, strict=True)))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def size(self) -> int:
        n = 1
        for a in self.axes:
            n *= a.size
        return n

    def axis_size(self, name: str) -> int:
        for a in self.axes:
            if a.name == name:
                return a.size
        raise KeyError(f"mesh has no axis {name!r} (axes: {self.axis_names})")

    def text(self) -> str:
        """The attribute body: `<["x"=2, "y"=4]>`."""
        axes = ", ".join(f'"{a.name}"={a.size}' for a in self.axes)
        ids = "" if self.device_ids is None else f", device_ids=[{', '.join(map(str, self.device_ids))}]"
        return f"<[{axes}]{ids}>"


def _axis_ref_text(axis: str) -> str:
    """`"x"`, or `"x":(1)2` for a sub-axis kept as `x:(1)2`."""
    name, sep, sub = axis.partition(":(")
    return f'"{name}":({sub}' if sep else f'"{axis}"'


@dataclass(frozen=True)
class DimSharding:
    """The mesh axes splitting one tensor dimension, major first."""

    axes: tuple[str, ...] = ()
    closed: bool = True
    priority: int | None = None

    def text(self) -> str:
        parts = [_axis_ref_text(a) for a in self.axes]
        if not self.closed:
            parts.append("?")
        prio = "" if self.priority is None else f"p{self.priority}"
        return "{" + ", ".join(parts) + "}" + prio


@dataclass(frozen=True)
class Sharding:
    """A tensor sharding over the mesh named `mesh` (a `sdy.mesh` symbol)."""

    mesh: str
    dims: tuple[DimSharding, ...]
    replicated: tuple[str, ...] = ()
    unreduced: tuple[str, ...] = ()

    @classmethod
    def from_axes(cls, mesh: str, axes: tuple[tuple[str, ...], ...] | list[Any]) -> Sharding:
        """From per-dimension axis tuples: `Sharding.from_axes("mesh", [("x",), ()])`."""
        return cls(mesh, tuple(DimSharding(tuple(a)) for a in axes))

    @classmethod
    def replicated_on(cls, mesh: str, rank: int) -> Sharding:
        return cls(mesh, tuple(DimSharding() for _ in range(rank)))

    @property
    def dim_axes(self) -> tuple[tuple[str, ...], ...]:
        return tuple(d.axes for d in self.dims)

    @property
    def is_replicated(self) -> bool:
        return all(not d.axes for d in self.dims)

    def used_axes(self) -> tuple[str, ...]:
        return tuple(a for d in self.dims for a in d.axes)

    def body(self) -> str:
        """`<@mesh, [{"x"}, {}]>`: the form `sdy.sharding_constraint` prints."""
        dims = ", ".join(d.text() for d in self.dims)
        extra = ""
        if self.replicated:
            extra += ", replicated={" + ", ".join(f'"{a}"' for a in self.replicated) + "}"
        if self.unreduced:
            extra += ", unreduced={" + ", ".join(f'"{a}"' for a in self.unreduced) + "}"
        return f"<@{self.mesh}, [{dims}]{extra}>"

    def text(self) -> str:
        return "#sdy.sharding" + self.body()

    def attr(self) -> ir.Attribute:
        """As an `ir.Attribute` (needs an active context)."""
        return ir.Attribute.parse(self.text())

    def validate(self, mesh: Mesh, shape: tuple[int, ...]) -> None:
        """Raise ValueError unless every axis exists, is used once and divides its dim."""
        if len(self.dims) != len(shape):
            raise ValueError(f"sharding {self.text()} has {len(self.dims)} dims, tensor rank {len(shape)}")
        used = self.used_axes() + self.replicated
        if len(set(used)) != len(used):
            raise ValueError(f"sharding {self.text()} uses a mesh axis twice")
        for d, size in zip(self.dims, shape, strict=True):
            factor = 1
            for a in d.axes:
                factor *= mesh.axis_size(a)
            if size % factor:
                raise ValueError(f"sharding {self.text()}: dim of size {size} not divisible by {factor}")


def to_gspmd(sharding: Sharding, mesh: Mesh) -> str:
    """The same layout as an XLA HloSharding string (GSPMD's `mhlo.sharding`), with
    devices numbered row-major over `mesh`: `{devices=[1,4,2]<=[2,4]T(1,0)
    last_tile_dim_replicate}` for `[{}, {"y"}]` on `["x"=2, "y"=4]`."""
    if mesh.device_ids is not None:
        raise ValueError("GSPMD output needs a mesh without explicit device_ids")
    sizes = dict(zip(mesh.axis_names, mesh.shape, strict=True))
    tiles = []
    order: list[str] = []
    for dim in sharding.dims:
        factor = 1
        for a in dim.axes:
            factor *= sizes[a]
            order.append(a)
        tiles.append(factor)
    unused = [a for a in mesh.axis_names if a not in order and sizes[a] > 1]
    replicate = 1
    for a in unused:
        replicate *= sizes[a]
    if all(t == 1 for t in tiles):
        return "{replicated}"
    order += unused
    real = [a for a in mesh.axis_names if sizes[a] > 1]
    order = [a for a in order if sizes[a] > 1]
    dims = ",".join(map(str, tiles + ([replicate] if replicate > 1 else [])))
    if order == real:
        devices = f"<=[{mesh.size}]"
    else:
        perm = ",".join(str(real.index(a)) for a in order)
        devices = f"<=[{','.join(str(sizes[a]) for a in real)}]T({perm})"
    suffix = " last_tile_dim_replicate" if replicate > 1 else ""
    return f"{{devices=[{dims}]{devices}{suffix}}}"


# ----------------------------------------------------------------------------- text parsing

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<sym>@[\w.$-]+)|(?P<num>-?\d+)'
                    r'|(?P<word>[A-Za-z_][\w.]*)|(?P<punct>[<>\[\]{}(),=?:#]))')


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ValueError(f"cannot parse sharding text {text!r} at column {pos + 1}")
            self.tokens.append(m.group(m.lastgroup or "punct"))
            pos = m.end()
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"malformed sharding {self.text!r}: expected {expected or 'more'}, got {tok!r}")
        self.i += 1
        return tok


def _axis_list(lx: _Lexer) -> tuple[tuple[str, ...], bool]:
    lx.take("{")
    axes: list[str] = []
    closed = True
    while lx.peek() != "}":
        tok = lx.take()
        if tok == "?":
            closed = False
        elif tok.startswith('"'):
            name = tok[1:-1]
            if lx.peek() == ":":  # sub-axis "x":(1)2 -- kept verbatim
                lx.take(":")
                lx.take("(")
                pre = lx.take()
                lx.take(")")
                size = lx.take()
                name = f"{name}:({pre}){size}"
            axes.append(name)
        elif tok != ",":
            raise ValueError(f"malformed sharding {lx.text!r}: unexpected {tok!r}")
    lx.take("}")
    return tuple(axes), closed


def parse_sharding(text: str) -> Sharding:
    """Parse `#sdy.sharding<@mesh, [...]>` or the bare `<@mesh, [...]>` body."""
    lx = _Lexer(text.strip())
    if lx.peek() == "#":
        lx.take("#")
        word = lx.take()
        if word != "sdy.sharding":
            raise ValueError(f"not an sdy.sharding attribute: {text!r}")
    lx.take("<")
    mesh = lx.take()
    if not mesh.startswith("@"):
        raise ValueError(f"only shardings that name a mesh symbol are supported, got {text!r}")
    lx.take(",")
    lx.take("[")
    dims: list[DimSharding] = []
    while lx.peek() != "]":
        if lx.peek() == ",":
            lx.take(",")
            continue
        axes, closed = _axis_list(lx)
        priority = None
        nxt = lx.peek()
        if nxt is not None and re.fullmatch(r"p\d+", nxt):
            priority = int(lx.take()[1:])
        dims.append(DimSharding(axes, closed, priority))
    lx.take("]")
    extra: dict[str, tuple[str, ...]] = {"replicated": (), "unreduced": ()}
    while lx.peek() == ",":
        lx.take(",")
        key = lx.take()
        lx.take("=")
        if key not in extra:
            raise ValueError(f"unknown sharding field {key!r} in {text!r}")
        extra[key], _ = _axis_list(lx)
    lx.take(">")
    return Sharding(mesh[1:], tuple(dims), extra["replicated"], extra["unreduced"])


def parse_sharding_per_value(text: str) -> tuple[Sharding, ...]:
    """Parse `#sdy.sharding_per_value<[<@mesh, [...]>, ...]>`."""
    body = text.strip()
    prefix = "#sdy.sharding_per_value<["
    if not body.startswith(prefix) or not body.endswith("]>"):
        raise ValueError(f"not an sdy.sharding_per_value attribute: {text!r}")
    inner = body[len(prefix):-2]
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(inner):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
            if depth == 0:
                parts.append(inner[start:i + 1].strip().lstrip(","))
                start = i + 1
    return tuple(parse_sharding(p.strip()) for p in parts if p.strip())


def parse_mesh(text: str) -> Mesh:
    """Parse `#sdy.mesh<["x"=2, "y"=4]>` or its `<[...]>` body (device_ids kept)."""
    body = text.strip()
    if body.startswith("#sdy.mesh"):
        body = body[len("#sdy.mesh"):]
    m = re.fullmatch(r"<\[(.*?)\](?:\s*,\s*device_ids=\[([\d,\s]*)\])?>", body)
    if m is None:
        raise ValueError(f"malformed sdy mesh {text!r}")
    axes = tuple(
        MeshAxis(name, int(size))
        for name, size in re.findall(r'"((?:[^"\\]|\\.)*)"\s*=\s*(\d+)', m.group(1))
    )
    ids = None if m.group(2) is None else tuple(int(x) for x in m.group(2).split(",") if x.strip())
    return Mesh(axes, ids)


# ----------------------------------------------------------------------------- IR access


def meshes(module: ir.Module) -> dict[str, Mesh]:
    """Every `sdy.mesh` symbol of the module, by name."""
    out: dict[str, Mesh] = {}
    for op in module.body.operations:
        if op.operation.name == "sdy.mesh":
            name = str(ir.StringAttr(op.operation.attributes["sym_name"]).value)
            out[name] = parse_mesh(str(op.operation.attributes["mesh"]))
    return out


def set_mesh(module: ir.Module, name: str, mesh: Mesh) -> None:
    """Define (or redefine) `sdy.mesh @name` at the top of the module."""
    with module.context, ir.Location.unknown(module.context):
        for op in list(module.body.operations):
            if op.operation.name == "sdy.mesh" and ir.StringAttr(
                op.operation.attributes["sym_name"]
            ).value == name:
                op.operation.erase()
        new = ir.Operation.parse(f"sdy.mesh @{name} = {mesh.text()}")
        first = next(iter(module.body.operations), None)
        if first is None:
            ir.InsertionPoint(module.body).insert(new)
        else:
            ir.InsertionPoint(first).insert(new)


def remove_meshes(module: ir.Module, keep: Collection[str] = ()) -> int:
    """Erase every `sdy.mesh` op but those named in `keep`; returns how many were removed."""
    removed = 0
    for op in list(module.body.operations):
        if op.operation.name == "sdy.mesh" and ir.StringAttr(op.operation.attributes["sym_name"]).value not in keep:
            op.operation.erase()
            removed += 1
    return removed


def _attr_list(func_op: ir.Operation, key: str, count: int) -> list[dict[str, ir.Attribute]]:
    attrs = func_op.attributes
    if key not in attrs:
        return [{} for _ in range(count)]
    out = []
    for d in ir.ArrayAttr(attrs[key]):
        dct = ir.DictAttr(d)
        out.append({dct[i].name: dct[i].attr for i in range(len(dct))})
    return out


def _set_attr_list(func_op: ir.Operation, key: str, dicts: list[dict[str, ir.Attribute]]) -> None:
    with func_op.context:
        func_op.attributes[key] = ir.ArrayAttr.get([ir.DictAttr.get(d) for d in dicts])


def _signature_counts(func_op: ir.Operation) -> tuple[int, int]:
    ftype = ir.FunctionType(ir.TypeAttr(func_op.attributes["function_type"]).value)
    return len(ftype.inputs), len(ftype.results)


def arg_attrs(func_op: ir.Operation) -> list[dict[str, ir.Attribute]]:
    """Per-argument attribute dictionaries of a `func.func`."""
    return _attr_list(func_op, "arg_attrs", _signature_counts(func_op)[0])


def result_attrs(func_op: ir.Operation) -> list[dict[str, ir.Attribute]]:
    return _attr_list(func_op, "res_attrs", _signature_counts(func_op)[1])


def _get(dicts: list[dict[str, ir.Attribute]], i: int) -> Sharding | None:
    a = dicts[i].get(SDY_SHARDING)
    return None if a is None else parse_sharding(str(a))


def arg_sharding(func_op: ir.Operation, i: int) -> Sharding | None:
    return _get(arg_attrs(func_op), i)


def result_sharding(func_op: ir.Operation, i: int) -> Sharding | None:
    return _get(result_attrs(func_op), i)


def _set_many(func_op: ir.Operation, key: str, shardings: Mapping[int, Sharding | None]) -> None:
    n_in, n_out = _signature_counts(func_op)
    dicts = _attr_list(func_op, key, n_in if key == "arg_attrs" else n_out)
    with func_op.context:
        for i, sharding in shardings.items():
            if sharding is None:
                dicts[i].pop(SDY_SHARDING, None)
            else:
                dicts[i][SDY_SHARDING] = sharding.attr()
    _set_attr_list(func_op, key, dicts)


def set_arg_attribute(func_op: ir.Operation, indices: Sequence[int], name: str, value: ir.Attribute) -> None:
    """Set attribute `name` = `value` on the given arguments (one rewrite)."""
    n_in, _ = _signature_counts(func_op)
    dicts = _attr_list(func_op, "arg_attrs", n_in)
    for i in indices:
        dicts[i][name] = value
    _set_attr_list(func_op, "arg_attrs", dicts)


def set_arg_sharding(func_op: ir.Operation, i: int, sharding: Sharding | None) -> None:
    """Set (or with None remove) `sdy.sharding` on argument i."""
    _set_many(func_op, "arg_attrs", {i: sharding})


def set_result_sharding(func_op: ir.Operation, i: int, sharding: Sharding | None) -> None:
    _set_many(func_op, "res_attrs", {i: sharding})


def set_arg_shardings(func_op: ir.Operation, shardings: Mapping[int, Sharding | None]) -> None:
    """Set many arguments' shardings at once (one rewrite of the attribute array)."""
    _set_many(func_op, "arg_attrs", shardings)


def set_result_shardings(func_op: ir.Operation, shardings: Mapping[int, Sharding | None]) -> None:
    _set_many(func_op, "res_attrs", shardings)


def op_shardings(op: ir.Operation) -> tuple[Sharding, ...] | None:
    """The `sdy.sharding` per-value attribute of an op, if any."""
    if SDY_SHARDING not in op.attributes:
        return None
    return parse_sharding_per_value(str(op.attributes[SDY_SHARDING]))


def constraint_sharding(op: ir.Operation) -> Sharding:
    """The sharding of an `sdy.sharding_constraint` (or `sdy.reshard`) op."""
    return parse_sharding(str(op.attributes["sharding"]))


def insert_sharding_constraint(value: ir.Value, sharding: Sharding, loc: ir.Location | None = None) -> ir.Value:
    """Insert `sdy.sharding_constraint` right after `value`'s definition and route every
    existing use of `value` through it. Returns the constrained value."""

    owner = value.owner
    with value.context:
        if isinstance(owner, ir.Block):
            first = next(iter(owner.operations))
            ip = ir.InsertionPoint(first)
            location = loc or first.location
        else:
            op = owner.operation
            ip = ir.InsertionPoint.after(op)
            location = loc or op.location
        with ip, location:
            constraint = sdy.ShardingConstraintOp(value, sharding.attr())
        result = constraint.result
        value.replace_all_uses_except(result, constraint.operation)
    return result



def _is_gspmd_constraint(op: ir.Operation) -> bool:
    return op.name == "stablehlo.custom_call" and str(op.attributes["call_target_name"]) == '"Sharding"'


MANUAL_COMPUTATION = "sdy.manual_computation"
_MESH_REF = re.compile(r"<@([\w.$-]+)")


def manual_computations(module: ir.Module) -> list[ir.Operation]:
    """The `sdy.manual_computation` ops (JAX's shard_map regions), outermost ones."""
    found: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == MANUAL_COMPUTATION:
            found.append(op)
            return ir.WalkResult.SKIP
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit, ir.WalkOrder.PRE_ORDER)
    return found


def manual_meshes(module: ir.Module) -> dict[str, ir.Operation]:
    """The meshes that manual computations name in their in/out shardings -> the first
    manual computation that names each."""
    used: dict[str, ir.Operation] = {}
    for op in manual_computations(module):
        for key in ("in_shardings", "out_shardings"):
            if key in op.attributes:
                for name in _MESH_REF.findall(str(op.attributes[key])):
                    used.setdefault(name, op)
    return used


def strip_shardings(module: ir.Module) -> int:
    """Remove every sharding annotation: `sdy.sharding` / `mhlo.sharding` on function
    arguments, results and ops, `sdy.sharding_constraint` / `sdy.reshard` ops and GSPMD's
    `custom_call @Sharding` (their uses take the operand) and `sdy.mesh` symbols; sets
    `mhlo.num_partitions` to 1 when present. Returns the number of annotations removed.
    The computation itself is unchanged.

    `sdy.manual_computation`s (shard_map regions) are the user's own parallel program:
    they, their bodies and the meshes they name are kept (and `mhlo.num_partitions`), so
    the result still runs them on those meshes, with everything around them replicated."""
    removed = 0
    keep = manual_meshes(module)
    for func_op in functions(module).values():
        n_in, n_out = _signature_counts(func_op)
        for key, count in (("arg_attrs", n_in), ("res_attrs", n_out)):
            dicts = _attr_list(func_op, key, count)
            hits = sum(1 for d in dicts for k in _SHARDING_ATTRS if k in d)
            if hits:
                for d in dicts:
                    for k in _SHARDING_ATTRS:
                        d.pop(k, None)
                _set_attr_list(func_op, key, dicts)
                removed += hits
        doomed: list[ir.Operation] = []

        def visit(op: ir.Operation, doomed: list[ir.Operation] = doomed) -> ir.WalkResult:
            nonlocal removed
            if op.name == MANUAL_COMPUTATION:
                return ir.WalkResult.SKIP
            if op.name in ("sdy.sharding_constraint", "sdy.reshard") or _is_gspmd_constraint(op):
                doomed.append(op)
                return ir.WalkResult.ADVANCE
            for k in _SHARDING_ATTRS:
                if k in op.attributes:
                    del op.attributes[k]
                    removed += 1
            return ir.WalkResult.ADVANCE

        func_op.walk(visit, ir.WalkOrder.PRE_ORDER)
        for op in doomed:
            op.results[0].replace_all_uses_with(op.operands[0])
            op.erase()
            removed += 1
    removed += remove_meshes(module, keep=keep)
    attrs = module.operation.attributes
    if "mhlo.num_partitions" in attrs and not keep:
        with module.context:
            attrs["mhlo.num_partitions"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(32), 1)
    return removed
