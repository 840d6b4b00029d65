"""Floating-point operation counts per StableHLO op (multiply-add = 2 FLOPs).

- dot_general: 2 x (batch x lhs-free x contracting x rhs-free) elements
- convolution: 2 x output elements x (kernel elements / output features)
- elementwise (incl. transcendental, compare, select, convert, and the elementwise
  `chlo` ops such as `chlo.square`): 1 per result element
- reduce / reduce_window: 1 per input element reduced (per window element)
- data movement (reshape, transpose, broadcast, slice, pad, concatenate, gather, ...): 0
- ops with regions (while, case, call bodies): the FLOPs of the ops nested inside,
  counted once (trip counts are not known statically)
"""

from __future__ import annotations

import math

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import stablehlo

from .graph import OpNode, decode_int_array
from .op_factors import elementwise_chlo
from .types import tensor_info

ELEMENTWISE = frozenset(
    "stablehlo." + n
    for n in ["abs", "add", "atan2", "cbrt", "ceil", "clamp", "compare", "complex", "convert", "cosine", "count_leading_zeros", "divide", "exponential", "exponential_minus_one", "floor", "imag", "is_finite", "log", "log_plus_one", "logistic", "maximum", "minimum", "multiply", "negate", "not", "and", "or", "xor", "popcnt", "power", "real", "remainder", "round_nearest_afz", "round_nearest_even", "rsqrt", "select", "shift_left", "shift_right_arithmetic", "shift_right_logical", "sign", "sine", "sqrt", "subtract", "tan", "tanh"]
) | frozenset(("chlo.erf", "chlo.erf_inv", "chlo.lgamma", "chlo.digamma", "chlo.tan"))

_REGION_OPS_COUNTED_BY_RULE = frozenset(
    ("stablehlo.reduce", "stablehlo.reduce_window", "stablehlo.sort", "stablehlo.scatter",
     "stablehlo.select_and_scatter", "stablehlo.all_reduce", "stablehlo.reduce_scatter")
)


def op_flops(node: OpNode) -> int:
    """FLOPs of one top-level op (see the module docstring for the rules)."""
    return operation_flops(node.op)


def operation_flops(op: ir.Operation) -> int:
    name = str(op.name)
    if name == "stablehlo.dot_general":
        return _dot_flops(op)
    if name == "stablehlo.convolution":
        return _conv_flops(op)
    if name in ELEMENTWISE or (name.startswith("chlo.") and elementwise_chlo(op)):
        return sum(_elements(r.type) for r in op.results)
    if name == "stablehlo.reduce":
        n_inputs = len(op.operands) // 2
        return sum(_elements(v.type) for v in list(op.operands)[:n_inputs])
    if name == "stablehlo.reduce_window":
        window = op.attributes["window_dimensions"]
        return sum(_elements(r.type) for r in op.results) * math.prod(decode_int_array(window))
    if name in _REGION_OPS_COUNTED_BY_RULE:
        return 0
    total = 0
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                total += operation_flops(inner.operation)
    return total


def _elements(t: ir.Type) -> int:
    try:
        return tensor_info(t).num_elements
    except ValueError:
        return 0


def _dot_flops(op: ir.Operation) -> int:

    dims = stablehlo.DotDimensionNumbers(op.attributes["dot_dimension_numbers"])
    lhs = tensor_info(op.operands[0].type).shape
    rhs = tensor_info(op.operands[1].type).shape
    rhs_used = set(dims.rhs_batching_dimensions) | set(dims.rhs_contracting_dimensions)
    rhs_free = math.prod(d for i, d in enumerate(rhs) if i not in rhs_used)
    return 2 * math.prod(lhs) * rhs_free


def _conv_flops(op: ir.Operation) -> int:

    dims = stablehlo.ConvDimensionNumbers(op.attributes["dimension_numbers"])
    kernel = tensor_info(op.operands[1].type).shape
    out_elems = _elements(op.results[0].type)
    out_features = kernel[dims.kernel_output_feature_dimension]
    return 2 * out_elems * (math.prod(kernel) // max(out_features, 1))


def function_flops(func_op: ir.Operation) -> int:
    """Total FLOPs of a function body (nested regions included once)."""
    total = 0
    for block in func_op.regions[0].blocks:
        for op in block.operations:
            total += operation_flops(op.operation)
    return total
