"""Errors of the execution runtime.

Every error says what was expected and what was received. Problems in the module text
itself (no @main, a malformed sharding) are `dialect_utils.diagnostics.DiagnosticError`s,
which carry an MLIR location; the errors here are about running a program: devices,
inputs, and modules this runtime cannot execute yet.
"""

from __future__ import annotations

from typing import Any


class ExecutionError(Exception):
    """Base class of every runtime error. `location`: the `ir.Location` in the module the
    error is about, where there is one (tools print it as file:line:col)."""

    def __init__(self, message: str, location: Any = None) -> None:
        super().__init__(message)
        self.location = location


class DeviceCountError(ExecutionError):
    """More devices were asked for than the process has."""


class InputMismatchError(ExecutionError):
    """Inputs (arrays or npz keys) that do not match @main's signature."""


class UnsupportedModuleError(ExecutionError):
    """A module kind or construct the runtime does not execute (yet)."""


class CompileError(ExecutionError):
    """XLA rejected the module (its message is kept)."""
