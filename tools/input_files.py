"""Reading tool inputs: files or stdin, text or MLIR bytecode, split into chunks."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from alpa_mlir.dialect_utils.context import is_bytecode

SPLIT_MARKER = re.compile(r"^// -----\s*$", re.MULTILINE)
STDIN_NAME = "<stdin>"


class InputError(Exception):
    """The input cannot be read; `str()` is the message, `name` the input's name."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


@dataclass(frozen=True)
class Chunk:
    """A piece of the input parsed as one module. `text` is padded with newlines so that
    parser line numbers equal the line numbers of the whole input."""

    source: str | bytes
    first_line: int  # 1-based line of the chunk's first line in the input

    @property
    def is_bytecode(self) -> bool:
        return isinstance(self.source, bytes)


def buffer_name(path: str) -> str:
    return STDIN_NAME if path == "-" else path


def read_input(path: str) -> bytes:
    """The raw bytes of `path` ("-" = stdin). Raises InputError."""
    name = buffer_name(path)
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InputError(name, f"cannot open input file: {e.strerror or e}") from None


def split_chunks(data: bytes, split: bool, name: str) -> list[Chunk]:
    """One chunk per module: the whole input, or (with `split`) each `// -----` part."""
    if is_bytecode(data):
        if split:
            raise InputError(name, "--split-input-file needs MLIR text, not bytecode")
        return [Chunk(data, 1)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(name, f"input is neither MLIR text (UTF-8) nor MLIR bytecode: {e.reason}") from None
    if not split:
        return [Chunk(text, 1)]
    chunks: list[Chunk] = []
    start, line = 0, 1
    for m in SPLIT_MARKER.finditer(text):
        chunks.append(Chunk("\n" * (line - 1) + text[start:m.start()], line))
        line += text.count("\n", start, m.end()) + 1
        start = m.end() + 1
    chunks.append(Chunk("\n" * (line - 1) + text[start:], line))
    return chunks
