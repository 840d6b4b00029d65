"""dialect_utils.output_files: a write either completes or leaves the old file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alpa_mlir.dialect_utils.output_files import output_problem, write_atomically


def test_write_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.mlir"
    target.write_text("old")
    target.chmod(0o640)
    write_atomically(target, "new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640
    write_atomically(tmp_path / "fresh.npz", b"\x00\x01")
    assert (tmp_path / "fresh.npz").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.npz", "out.mlir"]  # no temporaries left


def test_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.mlir"
    target.write_text("old")

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mlir"]


def test_problems_are_named_before_writing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert output_problem(tmp_path / "ok.mlir") is None
    assert output_problem(tmp_path / "missing" / "a.mlir") == f"no such directory: '{tmp_path / 'missing'}'"
    assert output_problem(tmp_path / "file" / "a.mlir") == f"not a directory: '{tmp_path / 'file'}'"
    assert output_problem(tmp_path) == "it is a directory"
    with pytest.raises(OSError) as info:
        write_atomically(tmp_path / "missing" / "a.mlir", "x")
    assert info.value.strerror == f"no such directory: '{tmp_path / 'missing'}'"
