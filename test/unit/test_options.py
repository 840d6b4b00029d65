from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alpa_mlir.passes.options import (
    OptionError,
    format_value,
    option_specs,
    parse_value,
    split_option_text,
)
from alpa_mlir.passes.pass_base import Pass


class Solver(enum.Enum):
    AUTO = "auto"
    SCIP = "scip"


@dataclass(frozen=True)
class MeshShape:
    dims: tuple[int, ...]

    @classmethod
    def parse_option(cls, text: str) -> MeshShape:
        try:
            return cls(tuple(int(d) for d in text.split("x")))
        except ValueError:
            raise ValueError(f"expected a mesh shape like 2x4, got {text!r}") from None

    def __str__(self) -> str:
        return "x".join(map(str, self.dims))


@dataclass(frozen=True)
class Demo(Pass):
    NAME: ClassVar[str] = "demo"
    mesh: MeshShape = field(default=MeshShape((8,)), metadata={"help": "mesh"})
    beta: tuple[float, ...] = (1.0, 0.1)
    axes: tuple[str, ...] = ("x", "y")
    memory_budget: int | None = None
    solver: Solver = Solver.AUTO
    verbose: bool = False
    report: str = ""


def test_split_option_text() -> None:
    assert split_option_text('a=1 b="x y" flag c={k=v z} d=1,2') == [
        ("a", "1"), ("b", "x y"), ("flag", None), ("c", "{k=v z}"), ("d", "1,2"),
    ]
    assert split_option_text("  ") == []
    with pytest.raises(OptionError, match="unterminated"):
        split_option_text('a="oops')
    with pytest.raises(OptionError, match="unbalanced"):
        split_option_text("a={b")


def test_parse_values_by_type() -> None:
    assert parse_value("3", int) == 3
    assert parse_value("1e9", int) == 1_000_000_000
    assert parse_value("0x10", int) == 16
    assert parse_value("0.5", float) == 0.5
    assert parse_value("true", bool) is True and parse_value("0", bool) is False
    assert parse_value("1,0.1", tuple[float, ...]) == (1.0, 0.1)
    assert parse_value("", tuple[int, ...]) == ()
    assert parse_value("scip", Solver) is Solver.SCIP
    assert parse_value("none", int | None) is None
    assert parse_value("7", int | None) == 7
    assert parse_value("2x4", MeshShape) == MeshShape((2, 4))


@pytest.mark.parametrize(
    ("text", "tp", "message"),
    [
        ("x", int, "expected an integer"),
        ("fast", float, "expected a number"),
        ("maybe", bool, "expected true or false"),
        ("gurobi", Solver, "expected one of auto, scip"),
        ("2y4", MeshShape, "expected a mesh shape"),
    ],
)
def test_bad_values_say_what_was_expected(text: str, tp: object, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        parse_value(text, tp)


def test_pass_from_options_and_back() -> None:
    p = Demo.from_options("mesh=2x4 beta=1,0.5 memory-budget=16e9 solver=scip verbose report=\"a b.json\"")
    assert p == Demo(MeshShape((2, 4)), (1.0, 0.5), ("x", "y"), 16_000_000_000, Solver.SCIP, True, "a b.json")
    text = p.pipeline_text()
    assert text.startswith("demo{mesh=2x4 ")
    inner = text[len("demo{"):-1]
    assert Demo.from_options(inner) == p
    assert p.changed_options() == {
        "mesh": MeshShape((2, 4)), "beta": (1.0, 0.5), "memory-budget": 16_000_000_000,
        "solver": Solver.SCIP, "verbose": True, "report": "a b.json",
    }


def test_pass_option_errors() -> None:
    with pytest.raises(OptionError, match="demo has no option 'nope'"):
        Demo.from_options("nope=1")
    with pytest.raises(OptionError, match="option 'mesh' of demo needs a value"):
        Demo.from_options("mesh")
    with pytest.raises(OptionError, match="bad value for option 'solver' of demo: expected one of"):
        Demo.from_options("solver=cplex")


def test_option_specs_are_kebab_case_with_help() -> None:
    specs = {s.name: s for s in option_specs(Demo)}
    assert list(specs) == ["mesh", "beta", "axes", "memory-budget", "solver", "verbose", "report"]
    assert specs["mesh"].help == "mesh"
    assert specs["solver"].type_name() == "auto|scip"
    assert specs["memory-budget"].format_default() == "none"


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=4))
def test_float_tuples_round_trip(values: list[float]) -> None:
    tp = tuple[float, ...]
    assert parse_value(format_value(tuple(values)), tp) == tuple(values)
