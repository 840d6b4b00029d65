"""What the command-line tools share about their arguments: a usage error is exit status
1 with `PROG: error: message` (argparse's own convention is 2), and an option that takes
one value refuses to be given twice instead of silently keeping the last."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn


class ToolParser(argparse.ArgumentParser):
    """argparse with exit status 1 for usage errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message}\n")


class Once(argparse.Action):
    """Store the value; an option given a second time is a usage error."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        if getattr(namespace, f"_given_{self.dest}", False):
            parser.error(f"{option_string} is given twice")
        setattr(namespace, f"_given_{self.dest}", True)
        setattr(namespace, self.dest, values)
