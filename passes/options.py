"""Typed pass options, parsed from MLIR pass-option syntax and printed back.

A pass declares its options as dataclass fields with defaults; the option name is the
field name in kebab-case (`memory_budget` -> `memory-budget`) and the field's
`metadata["help"]` its description. Values are converted by the field's annotated type:

    int, float, str, bool (true/false/1/0; a bare `flag` means true), enum.Enum (by value),
    tuple[int, ...] / tuple[float, ...] / tuple[str, ...] (comma separated), X | None,
    or any type with a `parse_option(text) -> value` classmethod (e.g. a mesh shape 2x4).

Option text: `{mesh=2x4 beta=1,0.1 report="out dir/x.json"}`; values may be quoted and may
contain balanced braces.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass
from typing import Any


class OptionError(ValueError):
    """A malformed option string or a value that does not fit the option's type."""


@dataclass(frozen=True)
class OptionSpec:
    """One declared option of a pass."""

    name: str  # kebab-case, as written in pipelines
    field: str  # the dataclass field
    type: Any
    default: Any
    help: str

    def type_name(self) -> str:
        return _type_name(self.type)

    def format_default(self) -> str:
        return format_value(self.default)


def split_option_text(text: str) -> list[tuple[str, str | None]]:
    """`k1=v1 k2="a b" flag` -> [("k1","v1"), ("k2","a b"), ("flag", None)].

    `text` is the inside of the braces. Raises OptionError on unbalanced quotes/braces.
    """
    items: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        start = i
        while i < n and not text[i].isspace() and text[i] != "=":
            i += 1
        key = text[start:i]
        if not key:
            raise OptionError(f"expected an option name at {text[start:]!r}")
        if i >= n or text[i] != "=":
            items.append((key, None))
            continue
        i += 1  # '='
        value, i = _read_value(text, i)
        items.append((key, value))
    return items


def _read_value(text: str, i: int) -> tuple[str, int]:
    n = len(text)
    if i < n and text[i] in "\"'":
        quote = text[i]
        end = text.find(quote, i + 1)
        if end < 0:
            raise OptionError(f"unterminated quoted value in {text!r}")
        return text[i + 1:end], end + 1
    start, depth = i, 0
    while i < n and (depth > 0 or not text[i].isspace()):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth < 0:
                raise OptionError(f"unbalanced '}}' in option value {text[start:]!r}")
        i += 1
    if depth:
        raise OptionError(f"unbalanced '{{' in option value {text[start:]!r}")
    return text[start:i], i


def option_specs(cls: type) -> list[OptionSpec]:
    """The options declared by a pass dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"option {f.name} of {cls.__name__} needs a default")
        specs.append(
            OptionSpec(f.name.replace("_", "-"), f.name, hints[f.name], default, f.metadata.get("help", ""))
        )
    return specs


def parse_value(text: str, tp: Any) -> Any:
    """Convert option text to a value of type `tp` (see the module docstring)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", ""):
            return None
        errors = []
        for a in args:
            try:
                return parse_value(text, a)
            except OptionError as e:
                errors.append(str(e))
        raise OptionError("; ".join(errors))
    if origin is tuple:
        (elem, *_rest) = typing.get_args(tp)
        if text == "":
            return ()
        return tuple(parse_value(part.strip(), elem) for part in text.split(","))
    if tp is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "on", "yes"):
            return True
        if lowered in ("false", "0", "off", "no"):
            return False
        raise OptionError(f"expected true or false, got {text!r}")
    if tp is int:
        try:
            return int(float(text)) if _is_integral_float(text) else int(text, 0)
        except ValueError:
            raise OptionError(f"expected an integer, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise OptionError(f"expected a number, got {text!r}") from None
    if tp is str:
        return text
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if str(member.value) == text:
                return member
        choices = ", ".join(str(m.value) for m in tp)
        raise OptionError(f"expected one of {choices}, got {text!r}")
    parser = getattr(tp, "parse_option", None)
    if parser is not None:
        try:
            return parser(text)
        except ValueError as e:
            raise OptionError(str(e)) from None
    raise TypeError(f"unsupported option type {tp!r}")


def _is_integral_float(text: str) -> bool:
    """Accept `1e9` or `2.0` for int options (byte budgets are written that way)."""
    try:
        value = float(text)
    except ValueError:
        return False
    return ("e" in text.lower() or "." in text) and value.is_integer()


def format_value(value: Any) -> str:
    """Inverse of parse_value: the text a pipeline would carry."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return f'"{value}"' if (not value or any(c.isspace() or c in "{}" for c in value)) else value
    return str(value)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " | ".join(_type_name(a) for a in args) + " | none"
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "|".join(str(m.value) for m in tp)
    return getattr(tp, "option_type_name", getattr(tp, "__name__", str(tp)))
