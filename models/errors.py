"""The one error type the model zoo raises for bad user input.

Unknown model or preset names, unknown or ill-typed overrides and inconsistent configs
(heads that do not divide the hidden size, ...) raise `ModelConfigError`, so a command-line
tool can print the message and exit instead of showing a traceback.
"""

from __future__ import annotations


class ModelConfigError(ValueError):
    """A model, preset or config value that the zoo cannot build."""
