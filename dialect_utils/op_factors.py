"""How an op's dims relate: Shardy's op sharding rules as plain values.

Shardy describes every op it knows by *factors*: a factor is an axis of the op's
iteration space with a size; each operand and result dim maps to the factors it spans
(major first: a reshape `32 -> 4x8` maps the 32-dim to two factors). A factor may be a
reduction (split, it leaves partial results to be combined), need replication (it cannot
be split), be a permutation (split, data moves between devices: pad, slice, reverse) or
block propagation. `dot_general` `[i, k] x [k, j] -> [i, j]` has reduction `{k}`.

`factor_rules(module)` runs jaxlib's `sdy-populate-op-sharding-rules` on a scratch copy
of the module and returns `{op: OpFactors}` for every op of the original that has a
rule; the module itself is left untouched (a rule an op already carries, such as a
user's custom rule on a `custom_call`, is read as it is). Ops Shardy has no rule for get
one here where the semantics are plain:

- `chlo` ops without regions whose operands and results all have one shape are
  elementwise (`chlo.square`, `chlo.erf_inv`, `chlo.lgamma`, ...);
- `chlo.top_k` keeps its leading dims and needs its last dim whole.

Data-flow ops (`while`, `case`, `optimization_barrier`) have no rule here: their
operands flow to their results unchanged, which the planners handle as such. Anything
else without a rule (an unknown `custom_call` target) gets none, and the callers fall
back to a replicated plan with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jax.extend.mlir import ir, passmanager
from jax.extend.mlir.dialects import sdy

from .types import tensor_info

RULE_ATTR = "sdy.sharding_rule"

DimFactors = tuple[int, ...]  # the factors one tensor dim spans, major first
TensorFactors = tuple[DimFactors, ...]  # per dim of one operand or result

_POPULATE = "builtin.module(func.func(sdy-populate-op-sharding-rules))"
# Shardy names factors i, j, ..., z, then z_1, z_2, ...
_SYMBOL = re.compile(r"z_\d+|[i-z]")
_FIRST_Z = ord("z") - ord("i")


@dataclass(frozen=True)
class OpFactors:
    """One op's factors: sizes, the factors of each operand and result dim, and kinds."""

    sizes: tuple[int, ...]
    operands: tuple[TensorFactors, ...]
    results: tuple[TensorFactors, ...]
    reduction: frozenset[int] = frozenset()
    need_replication: frozenset[int] = frozenset()
    permutation: frozenset[int] = frozenset()
    blocked: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        n = len(self.sizes)
        for tensor in (*self.operands, *self.results):
            for dim in tensor:
                if any(not 0 <= f < n for f in dim):
                    raise ValueError(f"factor index out of range in {tensor} (factors: {n})")

    def splittable(self, factor: int) -> bool:
        """Whether mesh axes may split `factor` without moving data inside the op:
        not needing replication, not a permutation, not blocked, larger than 1."""
        return (
            self.sizes[factor] > 1
            and factor not in self.need_replication
            and factor not in self.permutation
            and factor not in self.blocked
        )

    def tensors(self) -> tuple[TensorFactors, ...]:
        """Operands then results."""
        return (*self.operands, *self.results)

    @classmethod
    def elementwise(cls, shape: tuple[int, ...], num_operands: int, num_results: int) -> OpFactors:
        """Every operand and result dim d maps to factor d."""
        tensor = tuple((d,) for d in range(len(shape)))
        return cls(tuple(shape), (tensor,) * num_operands, (tensor,) * num_results)


FactorTable = Mapping[ir.Operation, OpFactors]


def parse_rule(attr: ir.Attribute) -> OpFactors:
    """An `#sdy.op_sharding_rule<...>` attribute as `OpFactors`."""
    rule = sdy.OpShardingRuleAttr(attr)
    return OpFactors(
        sizes=tuple(int(s) for s in rule.factor_sizes),
        operands=tuple(_tensor_mapping(m) for m in rule.operand_mappings),
        results=tuple(_tensor_mapping(m) for m in rule.result_mappings),
        reduction=frozenset(int(f) for f in rule.reduction_factors),
        need_replication=frozenset(int(f) for f in rule.need_replication_factors),
        permutation=frozenset(int(f) for f in rule.permutation_factors),
        blocked=frozenset(int(f) for f in rule.blocked_propagation_factors),
    )


def _tensor_mapping(attr: ir.Attribute) -> TensorFactors:
    """`#sdy<tensor_mapping[i, j, kl]>` -> ((0,), (1,), (2, 3))."""
    text = str(attr)
    body = text[text.index("[") + 1 : text.rindex("]")].strip()
    if not body:
        return ()
    return tuple(tuple(_factor_index(s) for s in _SYMBOL.findall(dim)) for dim in body.split(","))


def _factor_index(symbol: str) -> int:
    if symbol.startswith("z_"):
        return _FIRST_Z + int(symbol[2:])
    return ord(symbol) - ord("i")


def factor_symbol(factor: int) -> str:
    """Shardy's name of a factor: i, j, ..., z, z_1, z_2, ..."""
    return chr(ord("i") + factor) if factor <= _FIRST_Z else f"z_{factor - _FIRST_Z}"


def factor_rules(module: ir.Module | ir.Operation) -> dict[ir.Operation, OpFactors]:
    """Every op of `module` (nested ones included) that has a rule, Shardy's or ours.
    The module is not modified: Shardy's pass runs on a copy, matched op for op. Given
    an op inside a module, the whole enclosing module is read."""
    root = module.operation
    while root.parent is not None:
        root = root.parent.operation
    scratch = root.clone()
    # Shardy warns about every op it has no rule for; we report those ourselves (once,
    # as a replicated fallback), so its diagnostics are swallowed here.
    handler: Any = root.context.attach_diagnostic_handler(lambda diagnostic: True)
    try:
        passmanager.PassManager.parse(_POPULATE, context=root.context).run(scratch)
    finally:
        handler.detach()
    originals = _preorder(root)
    copies = _preorder(scratch)
    if len(originals) != len(copies):  # pragma: no cover - the pass only adds attributes
        raise RuntimeError("sdy-populate-op-sharding-rules changed the module's ops")
    table: dict[ir.Operation, OpFactors] = {}
    parsed: dict[str, OpFactors] = {}  # ops of one shape share a rule
    for op, copy in zip(originals, copies, strict=True):
        attrs = copy.attributes
        if RULE_ATTR in attrs:
            attr = attrs[RULE_ATTR]
            text = str(attr)
            if text not in parsed:
                parsed[text] = parse_rule(attr)
            table[op] = parsed[text]
        else:
            own = plain_rule(op)
            if own is not None:
                table[op] = own
    scratch.erase()
    return table


def _preorder(root: ir.Operation) -> list[ir.Operation]:
    found: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        found.append(op)
        return ir.WalkResult.ADVANCE

    root.walk(visit, ir.WalkOrder.PRE_ORDER)
    return found


def plain_rule(op: ir.Operation) -> OpFactors | None:
    """Our rule for an op Shardy has none for (module docstring), or None."""
    name = str(op.name)
    if not name.startswith("chlo."):
        return None
    try:
        operands = [tensor_info(v.type).shape for v in op.operands]
        results = [tensor_info(v.type).shape for v in op.results]
    except ValueError:
        return None
    if name == "chlo.top_k":
        return _top_k(operands[0], results[0])
    shapes = {*operands, *results}
    if len(op.regions) or len(shapes) != 1:
        return None
    return OpFactors.elementwise(shapes.pop(), len(operands), len(results))


def _top_k(operand: tuple[int, ...], result: tuple[int, ...]) -> OpFactors:
    """[..., n] -> [..., k] values and indices: the leading dims pass through; n and k
    need replication (the op picks the k largest along the whole last dim)."""
    lead = len(operand) - 1
    n, k = lead, lead + 1
    head = tuple((d,) for d in range(lead))
    sizes = (*operand[:-1], operand[-1], result[-1])
    out = (*head, (k,))
    return OpFactors(sizes, ((*head, (n,)),), (out, out), need_replication=frozenset((n, k)))


def elementwise_chlo(op: ir.Operation) -> bool:
    """A `chlo` op whose operands and results share one shape and that has no regions
    (the ops `plain_rule` takes as elementwise)."""
    rule = plain_rule(op)
    return rule is not None and str(op.name) != "chlo.top_k"
