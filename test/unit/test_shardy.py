from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import shardy as S
from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.graph import FunctionGraph, main_function

CTX = make_context()
AXES = ("x", "y", "z")


@st.composite
def shardings(draw: st.DrawFn) -> S.Sharding:
    rank = draw(st.integers(0, 4))
    free = list(AXES)
    dims = []
    for _ in range(rank):
        k = draw(st.integers(0, len(free)))
        picked = draw(st.permutations(free))[:k]
        for a in picked:
            free.remove(a)
        closed = draw(st.booleans())
        prio = draw(st.one_of(st.none(), st.integers(0, 3)))
        dims.append(S.DimSharding(tuple(picked), closed, prio))
    replicated = tuple(draw(st.permutations(free))[: draw(st.integers(0, len(free)))])
    return S.Sharding("mesh", tuple(dims), replicated)


@settings(max_examples=60, deadline=None)
@given(shardings())
def test_round_trip_through_sdy_attributes(sharding: S.Sharding) -> None:
    with CTX:
        # the mesh must exist for the attribute to verify, not to parse
        attr = ir.Attribute.parse(sharding.text())
    # MLIR sorts replicated axes in mesh order; compare as sets there
    back = S.parse_sharding(str(attr))
    assert back.mesh == sharding.mesh and back.dims == sharding.dims
    assert set(back.replicated) == set(sharding.replicated)
    assert S.parse_sharding(sharding.text()) == sharding
    assert S.parse_sharding(sharding.body()) == sharding


def test_value_types() -> None:
    mesh = S.Mesh.from_shape((2, 4), ("x", "y"))
    assert mesh.shape == (2, 4) and mesh.size == 8 and mesh.axis_size("y") == 4
    assert mesh.text() == '<["x"=2, "y"=4]>'
    assert S.parse_mesh("#sdy.mesh" + mesh.text()) == mesh
    with pytest.raises(ValueError, match="duplicate"):
        S.Mesh.from_shape((2, 2), ("x", "x"))
    s = S.Sharding.from_axes("mesh", [("x",), ()])
    assert s.text() == '#sdy.sharding<@mesh, [{"x"}, {}]>'
    assert s.dim_axes == (("x",), ()) and not s.is_replicated
    assert S.Sharding.replicated_on("mesh", 2).is_replicated
    s.validate(mesh, (4, 3))
    with pytest.raises(ValueError, match="not divisible"):
        s.validate(mesh, (3, 3))
    with pytest.raises(ValueError, match="axis twice"):
        S.Sharding.from_axes("mesh", [("x",), ("x",)]).validate(mesh, (4, 4))
    with pytest.raises(KeyError, match="no axis 'q'"):
        S.Sharding.from_axes("mesh", [("q",)]).validate(mesh, (4,))


def test_parse_errors() -> None:
    for bad in ['#sdy.sharding<mesh<["x"=2]>, [{}]>', "#sdy.other<@m, []>", '<@m, [{"x"}', "#sdy.sharding<@m, [{x}]>"]:
        with pytest.raises(ValueError):
            S.parse_sharding(bad)


MODULE = """
module attributes {mhlo.num_partitions = 8 : i32} {
  sdy.mesh @mesh = <["x"=2, "y"=4]>
  func.func @main(%arg0: tensor<8x16xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>, tf.aliasing_output = 0 : i32},
                  %arg1: tensor<16x4xf32>) -> (tensor<8x4xf32> {jax.result_info = "out"}) {
    %0 = stablehlo.dot_general %arg0, %arg1, contracting_dims = [1] x [0] : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
    %1 = stablehlo.tanh %0 {sdy.sharding = #sdy.sharding_per_value<[<@mesh, [{"x"}, {"y"}]>]>} : tensor<8x4xf32>
    return %1 : tensor<8x4xf32>
  }
}
"""


def test_read_and_write_ir() -> None:
    m = parse_module(MODULE, CTX)
    f = main_function(m)
    assert S.meshes(m) == {"mesh": S.Mesh.from_shape((2, 4), ("x", "y"))}
    assert S.arg_sharding(f, 0) == S.Sharding.from_axes("mesh", [("x",), ()])
    assert S.arg_sharding(f, 1) is None and S.result_sharding(f, 0) is None
    g = FunctionGraph(f)
    assert S.op_shardings(g.ops[1].op) == (S.Sharding.from_axes("mesh", [("x",), ("y",)]),)
    assert S.op_shardings(g.ops[0].op) is None

    S.set_arg_sharding(f, 1, S.Sharding.from_axes("mesh", [(), ("y",)]))
    S.set_result_sharding(f, 0, S.Sharding.from_axes("mesh", [("x",), ()]))
    S.set_arg_sharding(f, 0, None)
    reordered = S.Mesh(S.Mesh.from_shape((2, 4), ("x", "y")).axes, tuple(range(7, -1, -1)))
    S.set_mesh(m, "mesh", reordered)  # redefinition replaces
    S.set_mesh(m, "flat", S.Mesh.from_shape((8,), ("d",)))
    new = S.insert_sharding_constraint(g.ops[0].results[0].value, S.Sharding.from_axes("mesh", [("x",), ()]))
    assert m.operation.verify()
    text = print_module(m)
    assert 'sdy.mesh @mesh = <["x"=2, "y"=4], device_ids=[7, 6, 5, 4, 3, 2, 1, 0]>' in text
    assert 'sdy.mesh @flat = <["d"=8]>' in text and text.count("sdy.mesh") == 2
    assert S.meshes(m)["mesh"] == reordered
    assert "tf.aliasing_output = 0 : i32" in text  # other arg attrs kept
    assert '%arg1: tensor<16x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {"y"}]>}' in text
    assert '{jax.result_info = "out", sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>}' in text
    assert 'sdy.sharding_constraint %0 <@mesh, [{"x"}, {}]>' in text
    assert "stablehlo.tanh %1" in text  # the user now reads the constrained value
    assert new.owner.name == "sdy.sharding_constraint"
    # insert on a block argument: the constraint goes first in the block
    S.insert_sharding_constraint(g.args[0].value, S.Sharding.from_axes("mesh", [(), ()]))
    first = next(iter(f.regions[0].blocks[0].operations))
    assert first.name == "sdy.sharding_constraint"


def test_strip_shardings() -> None:
    m = parse_module(MODULE, CTX)
    f = main_function(m)
    S.insert_sharding_constraint(FunctionGraph(f).ops[0].results[0].value, S.Sharding.from_axes("mesh", [("x",), ()]))
    assert S.strip_shardings(m) == 4  # arg attr, op attr, constraint, mesh
    text = print_module(m)
    assert "sdy" not in text and "mhlo.num_partitions = 1" in text
    assert m.operation.verify()


def test_gspmd_strings_match_jax() -> None:
    """The HloSharding text JAX itself writes for these layouts on a 2x4 ("x", "y") mesh
    under jax_use_shardy_partitioner=False (read off jax 0.10.2's lowering)."""
    mesh = S.Mesh.from_shape((2, 4), ("x", "y"))
    cases = {
        ((), ("y",)): "{devices=[1,4,2]<=[2,4]T(1,0) last_tile_dim_replicate}",
        (("x",), ()): "{devices=[2,1,4]<=[8] last_tile_dim_replicate}",
        (("y",), ("x",)): "{devices=[4,2]<=[2,4]T(1,0)}",
        (("x", "y"), ()): "{devices=[8,1]<=[8]}",
        ((), ()): "{replicated}",
    }
    for axes, text in cases.items():
        assert S.to_gspmd(S.Sharding.from_axes("mesh", axes), mesh) == text
    with pytest.raises(ValueError, match="device_ids"):
        S.to_gspmd(S.Sharding.from_axes("mesh", [("x",)]), S.Mesh(mesh.axes, tuple(range(8))))
