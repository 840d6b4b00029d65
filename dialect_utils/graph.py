"""A typed, read-only view of one function: ops in order, values with shapes, users,
and the attributes the planners read, decoded into plain Python values.

The view holds the live `ir` objects (so a pass can rewrite around them) but never
mutates anything. Build it again after a rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import stablehlo

from .types import TensorInfo, tensor_info


@dataclass(frozen=True)
class DotDims:
    """`stablehlo.dot_general` dimension numbers."""

    lhs_batch: tuple[int, ...]
    rhs_batch: tuple[int, ...]
    lhs_contracting: tuple[int, ...]
    rhs_contracting: tuple[int, ...]


@dataclass(frozen=True)
class ConvDims:
    """`stablehlo.convolution` dimension numbers and grouping."""

    input_batch: int
    input_feature: int
    input_spatial: tuple[int, ...]
    kernel_input_feature: int
    kernel_output_feature: int
    kernel_spatial: tuple[int, ...]
    output_batch: int
    output_feature: int
    output_spatial: tuple[int, ...]
    feature_group_count: int
    batch_group_count: int


@dataclass(frozen=True, eq=False)
class ValueNode:
    """One SSA value of the function's top level: a block argument or an op result."""

    value: ir.Value
    info: TensorInfo
    producer: int | None  # index of the producing op in FunctionGraph.ops; None for args
    index: int  # argument number, or result number of the producer

    @property
    def is_argument(self) -> bool:
        return self.producer is None


@dataclass(frozen=True, eq=False)
class OpNode:
    """One top-level op of the function (its nested regions stay inside it)."""

    index: int
    op: ir.Operation
    operands: tuple[ValueNode, ...]
    results: tuple[ValueNode, ...]

    @property
    def name(self) -> str:
        return str(self.op.name)

    @property
    def location(self) -> ir.Location:
        return self.op.location

    def attr(self, name: str) -> ir.Attribute | None:
        attrs = self.op.attributes
        return attrs[name] if name in attrs else None  # noqa: SIM401 (no .get on OpAttributeMap)

    def int_array(self, name: str) -> tuple[int, ...] | None:
        """An integer-array attribute (dense i64 array or dense int elements)."""
        a = self.attr(name)
        return None if a is None else decode_int_array(a)

    def int_attr(self, name: str) -> int | None:
        a = self.attr(name)
        return None if a is None else int(ir.IntegerAttr(a).value)

    @property
    def dot_dims(self) -> DotDims:
        a = self.attr("dot_dimension_numbers")
        if a is None:
            raise ValueError(f"{self.name} has no dot_dimension_numbers")
        d = stablehlo.DotDimensionNumbers(a)
        return DotDims(
            tuple(d.lhs_batching_dimensions),
            tuple(d.rhs_batching_dimensions),
            tuple(d.lhs_contracting_dimensions),
            tuple(d.rhs_contracting_dimensions),
        )

    @property
    def conv_dims(self) -> ConvDims:
        a = self.attr("dimension_numbers")
        if a is None:
            raise ValueError(f"{self.name} has no dimension_numbers")
        d = stablehlo.ConvDimensionNumbers(a)
        return ConvDims(
            int(d.input_batch_dimension),
            int(d.input_feature_dimension),
            tuple(d.input_spatial_dimensions),
            int(d.kernel_input_feature_dimension),
            int(d.kernel_output_feature_dimension),
            tuple(d.kernel_spatial_dimensions),
            int(d.output_batch_dimension),
            int(d.output_feature_dimension),
            tuple(d.output_spatial_dimensions),
            self.int_attr("feature_group_count") or 1,
            self.int_attr("batch_group_count") or 1,
        )

    @property
    def broadcast_dims(self) -> tuple[int, ...]:
        """Operand dim i maps to result dim broadcast_dims[i] (`broadcast_in_dim`)."""
        return self.int_array("broadcast_dimensions") or ()

    @property
    def dimensions(self) -> tuple[int, ...]:
        """`dimensions` of reduce / reverse / transpose-like ops (`permutation` for
        transpose)."""
        for key in ("dimensions", "permutation"):
            dims = self.int_array(key)
            if dims is not None:
                return dims
        return ()


def decode_int_array(a: ir.Attribute) -> tuple[int, ...]:
    if isinstance(a, ir.DenseI64ArrayAttr):
        return tuple(int(x) for x in a)
    if isinstance(a, ir.DenseIntElementsAttr):
        return tuple(int(a[i]) for i in range(len(a)))
    if isinstance(a, ir.ArrayAttr):
        return tuple(int(ir.IntegerAttr(x).value) for x in a)
    try:
        return tuple(int(x) for x in ir.DenseI64ArrayAttr(a))
    except (ValueError, TypeError):
        pass
    raise ValueError(f"not an integer array attribute: {a}")


# Terminators whose operands are a body's results.
TERMINATORS = frozenset(("func.return", "mpmd.return", "stablehlo.return", "sdy.return"))


class FunctionGraph:
    """Read-only view of a `func.func` (or any single-block body, such as an
    `mpmd.fragment`'s): arguments, top-level ops (without the terminator) in order,
    returned values, and users of each value.

    `graph.region(node, i)` views the block of region i of one of its ops (a `while`
    body, a `case` branch) the same way: its block arguments are `args`, the operands
    of its terminator `returned`, and values of the enclosing graphs resolve through
    `parent`."""

    def __init__(self, func_op: Any, block: ir.Block | None = None,
                 parent: FunctionGraph | None = None) -> None:
        self.func_op: ir.Operation = func_op.operation
        self.parent = parent
        if block is None:
            block = self.func_op.regions[0].blocks[0]
        self._node_of: dict[ir.Value, ValueNode] = {}
        self.args: tuple[ValueNode, ...] = tuple(
            self._add_value(v, None, i) for i, v in enumerate(block.arguments)
        )
        ops: list[OpNode] = []
        returned: tuple[ValueNode, ...] = ()
        for op in block.operations:
            operation = op.operation
            operands = tuple(self._lookup(v) for v in operation.operands)
            if operation.name in TERMINATORS:
                returned = operands
                continue
            index = len(ops)
            results = tuple(
                self._add_value(r, index, j) for j, r in enumerate(operation.results)
            )
            ops.append(OpNode(index, operation, operands, results))
        self.ops: tuple[OpNode, ...] = tuple(ops)
        self.returned: tuple[ValueNode, ...] = returned
        self._users: dict[ir.Value, list[tuple[int, int]]] = {}
        for node in self.ops:
            for k, operand in enumerate(node.operands):
                self._users.setdefault(operand.value, []).append((node.index, k))
        self._index_of_op = {node.op: node.index for node in self.ops}

    @property
    def name(self) -> str:
        attrs = self.func_op.attributes
        if "sym_name" in attrs:
            return str(ir.StringAttr(attrs["sym_name"]).value)
        return str(self.func_op.name)

    def _add_value(self, v: ir.Value, producer: int | None, index: int) -> ValueNode:
        node = ValueNode(v, _info_or_token(v.type), producer, index)
        self._node_of[v] = node
        return node

    def _lookup(self, v: ir.Value) -> ValueNode:
        node = self._node_of.get(v)
        if node is None and self.parent is not None:
            return self.parent._lookup(v)
        if node is None:
            raise ValueError(f"value {v.get_name()} is not defined at the function's top level")
        return node

    def region(self, node: OpNode, index: int) -> FunctionGraph:
        """The graph of the (single) block of `node`'s region `index`."""
        return FunctionGraph(node.op, node.op.regions[index].blocks[0], parent=self)

    def node(self, v: ir.Value) -> ValueNode:
        return self._lookup(v)

    def producer(self, v: ValueNode) -> OpNode | None:
        return None if v.producer is None else self.ops[v.producer]

    def users(self, v: ValueNode) -> list[tuple[OpNode, int]]:
        """Top-level ops that take `v` as an operand, with the operand number."""
        return [(self.ops[i], k) for i, k in self._users.get(v.value, [])]

    def nested_users(self, v: ValueNode) -> list[OpNode]:
        """Top-level ops whose nested regions use `v` (captured values)."""
        found: list[OpNode] = []
        for use in v.value.uses:
            owner: ir.Operation | None = use.owner.operation
            while owner is not None and owner not in self._index_of_op:
                parent = owner.parent
                owner = parent.operation if parent is not None else None
                if owner == self.func_op:
                    owner = None
            if owner is not None:
                node = self.ops[self._index_of_op[owner]]
                if node not in found and all(o.value != v.value for o in node.operands):
                    found.append(node)
        return found

    def captured(self, node: OpNode) -> list[ValueNode]:
        """Top-level values used inside `node`'s regions without being its operands."""
        found: list[ValueNode] = []
        operands = {o.value for o in node.operands}

        def visit(op: ir.Operation) -> ir.WalkResult:
            if op != node.op:
                for v in op.operands:
                    vn = self._node_of.get(v)
                    if vn is not None and v not in operands and vn not in found:
                        found.append(vn)
            return ir.WalkResult.ADVANCE

        if len(node.op.regions):
            node.op.walk(visit)
        return found

    def result_positions(self, v: ValueNode) -> list[int]:
        """Positions at which `v` is returned by the function."""
        return [i for i, r in enumerate(self.returned) if r.value == v.value]


def _info_or_token(t: ir.Type) -> TensorInfo:
    try:
        return tensor_info(t)
    except ValueError:
        return TensorInfo((), str(t))


def functions(module: ir.Module) -> dict[str, ir.Operation]:
    """All `func.func` ops of a module by symbol name."""
    out: dict[str, ir.Operation] = {}
    for op in module.body.operations:
        if op.operation.name == "func.func":
            name = ir.StringAttr(op.operation.attributes["sym_name"]).value
            out[str(name)] = op.operation
    return out


def is_declaration(func_op: ir.Operation) -> bool:
    """A `func.func` without a body (`func.func private @f(...) -> ...`)."""
    region = func_op.regions[0]
    return not region.blocks or not list(region.blocks[0].operations)


def main_function(module: ir.Module, name: str = "main") -> ir.Operation:
    funcs = functions(module)
    if name not in funcs:
        raise ValueError(f"module has no function @{name} (found: {', '.join(funcs) or 'none'})")
    return funcs[name]
