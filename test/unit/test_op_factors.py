"""dialect_utils.op_factors (Shardy's op sharding rules as values, our chlo rules) and
dialect_utils.control_flow (static trip counts)."""

from __future__ import annotations

import pytest
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.control_flow import static_trip_count
from alpa_mlir.dialect_utils.graph import main_function
from alpa_mlir.dialect_utils.op_factors import factor_rules, factor_symbol, parse_rule


def ops_of(module: ir.Module) -> dict[str, ir.Operation]:
    found: dict[str, ir.Operation] = {}

    def visit(op: ir.Operation) -> ir.WalkResult:
        found.setdefault(str(op.name), op)
        return ir.WalkResult.ADVANCE

    main_function(module).walk(visit)
    return found


def test_parse_rule_reads_multi_factor_dims_kinds_and_late_symbols() -> None:
    ctx = make_context()
    with ctx:
        rule = parse_rule(ir.Attribute.parse(
            "#sdy.op_sharding_rule<([i, j, kl], [])->([i, j, k, l]) {i=8, j=16, k=4, l=8} "
            "reduction={j} need_replication={k} permutation={l} blocked_propagation={i}>"))
    assert rule.sizes == (8, 16, 4, 8)
    assert rule.operands == (((0,), (1,), (2, 3)), ())
    assert rule.results == (((0,), (1,), (2,), (3,)),)
    assert (rule.reduction, rule.need_replication, rule.permutation, rule.blocked) == (
        {1}, {2}, {3}, {0})
    assert [rule.splittable(f) for f in range(4)] == [False, True, False, False]
    # Shardy names factor 18 on as z_1, z_2, ...: the parser and factor_symbol agree
    assert [factor_symbol(f) for f in (0, 17, 18, 20)] == ["i", "z", "z_1", "z_3"]


def test_factor_rules_reads_shardy_and_our_chlo_rules_without_touching_the_module() -> None:
    text = """
    func.func @main(%a: tensor<8x32xf32>, %b: tensor<32x16xf32>) -> (tensor<8x16xf32>, tensor<8x4xf32>) {
      %0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : (tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<8x16xf32>
      %1 = chlo.square %0 : tensor<8x16xf32> -> tensor<8x16xf32>
      %2:2 = chlo.top_k(%1, k = 4) : tensor<8x16xf32> -> (tensor<8x4xf32>, tensor<8x4xi32>)
      %3 = stablehlo.custom_call @my_kernel(%2#0) : (tensor<8x4xf32>) -> tensor<8x4xf32>
      return %1, %3 : tensor<8x16xf32>, tensor<8x4xf32>
    }"""
    module = parse_module(text, make_context())
    before = print_module(module)
    rules = factor_rules(module)
    assert print_module(module) == before  # the pass ran on a copy
    ops = ops_of(module)
    dot = rules[ops["stablehlo.dot_general"]]
    assert dot.sizes == (8, 16, 32) and dot.reduction == {2}
    assert rules[ops["chlo.square"]].operands == (((0,), (1,)),)  # elementwise
    top_k = rules[ops["chlo.top_k"]]
    assert top_k.operands == (((0,), (1,)),) and top_k.results == (((0,), (2,)), ((0,), (2,)))
    assert not top_k.splittable(1) and not top_k.splittable(2) and top_k.splittable(0)
    assert ops["stablehlo.custom_call"] not in rules


@pytest.mark.parametrize(("init", "limit", "direction", "step", "trip"), [
    (0, 12, "LT", 1, 12),
    (0, 12, "LE", 1, 13),
    (3, 12, "LT", 2, 5),
    (10, 0, "GT", -1, 10),
    (10, 0, "GE", -2, 6),
    (0, 12, "NE", 3, 4),
    (0, 12, "EQ", 1, None),
    (0, 12, "LT", -1, None),
])
def test_static_trip_count(init: int, limit: int, direction: str, step: int, trip: int | None) -> None:
    op = "add" if step > 0 else "subtract"
    text = f"""
    func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> {{
      %c = stablehlo.constant dense<{init}> : tensor<i32>
      %r:2 = stablehlo.while(%i = %c, %v = %x) : tensor<i32>, tensor<4xf32>
       cond {{
        %n = stablehlo.constant dense<{limit}> : tensor<i32>
        %p = stablehlo.compare {direction}, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
        stablehlo.return %p : tensor<i1>
      }} do {{
        %s = stablehlo.constant dense<{abs(step)}> : tensor<i32>
        %i1 = stablehlo.{op} %i, %s : tensor<i32>
        stablehlo.return %i1, %v : tensor<i32>, tensor<4xf32>
      }}
      return %r#1 : tensor<4xf32>
    }}"""
    module = parse_module(text, make_context())
    assert static_trip_count(ops_of(module)["stablehlo.while"]) == trip


def test_static_trip_count_needs_constant_bounds() -> None:
    text = """
    func.func @main(%x: tensor<4xf32>, %n: tensor<i32>) -> tensor<4xf32> {
      %c = stablehlo.constant dense<0> : tensor<i32>
      %r:2 = stablehlo.while(%i = %c, %v = %x) : tensor<i32>, tensor<4xf32>
       cond {
        %p = stablehlo.compare LT, %i, %n, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
        stablehlo.return %p : tensor<i1>
      } do {
        %s = stablehlo.constant dense<1> : tensor<i32>
        %i1 = stablehlo.add %s, %i : tensor<i32>
        stablehlo.return %i1, %v : tensor<i32>, tensor<4xf32>
      }
      return %r#1 : tensor<4xf32>
    }"""
    module = parse_module(text, make_context())
    assert static_trip_count(ops_of(module)["stablehlo.while"]) is None
