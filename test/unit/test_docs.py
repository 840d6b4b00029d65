"""The documentation stays true to the code.

- `docs/passes.md` and the README's pass table are what `make docs` generates from the
  pass registry now (`tools/pass_listing.py`), so changing a pass's options or
  docstring without regenerating them fails here; a second test shows that this check
  does fail on such a change.
- Every repository path the README and `docs/*.md` name exists, and every
  `alpa_mlir.` name they cite resolves.
- Nothing cites sections of a design document the repository does not have.

No model is exported: the tests read the registry, the docs and the file tree only.
"""

from __future__ import annotations

import difflib
import importlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alpa_mlir.passes import get_pass_class, pass_names
from alpa_mlir.passes.annotate_flops import AnnotateFlopsPass
from alpa_mlir.passes.pass_base import Pass
from alpa_mlir.tools import pass_listing
from alpa_mlir.tools.alpa_opt import main as alpa_opt_main

REPO = Path(__file__).resolve().parents[2]
PASSES_MD = REPO / "docs" / "passes.md"
README = REPO / "README.md"
STALE = "is stale: run make docs"


def _diff(expected: str, actual: str, name: str) -> str:
    lines = difflib.unified_diff(
        actual.splitlines(), expected.splitlines(), f"{name} (committed)", f"{name} (generated)",
        lineterm="", n=1,
    )
    return "\n".join(list(lines)[:40])


def stale_docs() -> list[str]:
    """What `make docs` would change, one message per file (empty: all fresh)."""
    problems = []
    expected = pass_listing.markdown_reference()
    actual = PASSES_MD.read_text()
    if actual != expected:
        problems.append(f"docs/passes.md {STALE}\n{_diff(expected, actual, 'docs/passes.md')}")
    readme = README.read_text()
    try:
        regenerated = pass_listing.update_readme(readme, pass_listing.readme_table())
    except ValueError as e:
        return [*problems, f"README.md pass table {STALE} ({e})"]
    if regenerated != readme:
        problems.append(f"README.md pass table {STALE}\n{_diff(regenerated, readme, 'README.md')}")
    return problems


# --- freshness ---------------------------------------------------------------------


def test_generated_docs_are_fresh() -> None:
    problems = stale_docs()
    assert not problems, "\n\n".join(problems)


def test_markdown_flag_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert alpa_opt_main(["--list-passes", "--markdown"]) == 0
    assert capsys.readouterr().out == pass_listing.markdown_reference()


def test_markdown_flag_needs_list_passes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        alpa_opt_main(["--markdown"])
    assert e.value.code == 1  # usage errors exit 1 (tools/cli.py)
    assert "--markdown applies to --list-passes" in capsys.readouterr().err


def test_reference_covers_every_pass_and_option() -> None:
    text = pass_listing.markdown_reference()
    table = pass_listing.readme_table()
    for name in pass_names():
        cls = get_pass_class(name)
        assert cls is not None
        assert f"## `{name}`" in text
        assert f"[`{name}`](docs/passes.md#{name})" in table
        for spec in cls.options():
            assert f"| `{spec.name}` |" in text, (name, spec.name)


# --- the check fails when a pass changes and the docs do not ------------------------


def _as_registered(cls: type[Pass], like: type[Pass]) -> type[Pass]:
    """`cls` presented as the registered class `like` (same docstring and module), so
    that only its options differ in the generated text."""
    cls.__doc__ = like.__doc__
    cls.__module__ = like.__module__
    return cls


@dataclass(frozen=True)
class _ChangedDefault(AnnotateFlopsPass):
    report: str = field(default="flops.json", metadata={"help": "a changed default"})


@dataclass(frozen=True)
class _AddedOption(AnnotateFlopsPass):
    per_function: bool = field(default=False, metadata={"help": "an added option"})


@pytest.mark.parametrize(
    ("changed", "expected_row"),
    [
        (_ChangedDefault, '| `report` | str | `flops.json` | a changed default |'),
        (_AddedOption, "| `per-function` | bool | `false` | an added option |"),
    ],
    ids=["changed-default", "added-option"],
)
def test_freshness_check_fails_on_an_option_change(
    monkeypatch: pytest.MonkeyPatch, changed: type[Pass], expected_row: str
) -> None:
    assert not stale_docs(), "regenerate the docs first (make docs)"
    registered = get_pass_class("alpa-annotate-flops")
    assert registered is AnnotateFlopsPass
    fake = _as_registered(changed, registered)

    def lookup(name: str) -> type[Pass] | None:
        return fake if name == "alpa-annotate-flops" else get_pass_class(name)

    monkeypatch.setattr(pass_listing, "get_pass_class", lookup)
    generated = pass_listing.markdown_reference()
    assert expected_row in generated
    assert expected_row not in PASSES_MD.read_text()
    problems = stale_docs()
    assert any(p.startswith(f"docs/passes.md {STALE}") for p in problems), problems
    assert any(p.startswith(f"README.md pass table {STALE}") for p in problems), problems


def test_update_readme_needs_the_markers() -> None:
    with pytest.raises(ValueError, match="passes:begin"):
        pass_listing.update_readme("# no table here\n", pass_listing.readme_table())


# --- what the prose says about alpa-pipeshard's options -----------------------------


def _option_names(name: str) -> set[str]:
    cls = get_pass_class(name)
    assert cls is not None
    return {s.name for s in cls.options()}


def test_pipeshard_options_are_as_the_readme_says() -> None:
    pipeshard = _option_names("alpa-pipeshard")
    stages = _option_names("alpa-stage-construction")
    layers = _option_names("alpa-layer-construction")
    # "every option of alpa-stage-construction plus layers and eps of alpa-layer-construction"
    assert pipeshard == stages | {"layers", "eps"}
    # "whose batch-args it passes to layer construction too; min-heavy and loss-result keep
    # their defaults"
    assert layers - pipeshard == {"min-heavy", "loss-result"}
    assert "batch-args" in layers & stages
    text = " ".join(README.read_text().split())
    assert "every option of `alpa-stage-construction` plus `layers` and `eps`" in text
    assert "`min-heavy` and `loss-result` keep their defaults" in text


# --- paths and names the docs cite ---------------------------------------------------

DOCS = (README, *sorted((REPO / "docs").glob("*.md")))
TOP = ("dialect_utils", "passes", "runtime", "tools", "models", "docs", "test", "benchmarks",
       "examples")
PATH = re.compile(rf"^(?:{'|'.join(TOP)})/[\w./-]*$")
DOTTED = re.compile(r"^alpa_mlir(?:\.\w+)+$")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _cited(text: str) -> Iterator[str]:
    """Words in code spans, fenced code and link targets, trailing punctuation dropped."""
    words: list[str] = []
    for block in FENCE.findall(text):
        words.extend(block.split())
    prose = FENCE.sub("", text)
    for span in SPAN.findall(prose):
        words.extend(span.split())
    words.extend(target for target in LINK.findall(prose) if "://" not in target)
    for word in words:
        yield word.split("#", 1)[0].rstrip(".,;:)")


def test_cited_repository_paths_exist() -> None:
    missing = []
    for doc in DOCS:
        for word in _cited(doc.read_text()):
            path, _, test = word.partition("::")  # `test/unit/x.py::test_name`
            if not PATH.match(path):
                continue
            if not (REPO / path).exists():
                missing.append(f"{doc.relative_to(REPO)}: `{word}`")
            elif test and f"def {test.split('[')[0]}(" not in (REPO / path).read_text():
                missing.append(f"{doc.relative_to(REPO)}: `{word}` (no such test)")
    assert not missing, "docs name paths that do not exist:\n" + "\n".join(sorted(set(missing)))


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 1, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_cited_module_names_resolve() -> None:
    unresolved = []
    for doc in DOCS:
        for word in _cited(doc.read_text()):
            if DOTTED.match(word) and not _resolves(word):
                unresolved.append(f"{doc.relative_to(REPO)}: `{word}`")
    assert not unresolved, "docs name modules that do not exist:\n" + "\n".join(sorted(set(unresolved)))


# --- no citations of a design document that is not here -----------------------------

# The word DESIGN followed by a section number; the pattern is spelled in pieces so that
# this file does not match itself.
DESIGN_SECTION = re.compile("DESIGN" + r"\s*(?:section\s*|§\s*)?\d+(?:\.\d+)*")
SKIP_DIRS = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
             ".hypothesis", "Output", "out", "build"}


def _repository_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.splitlines()
        paths = [REPO / p for p in listed]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        paths = [p for p in REPO.rglob("*") if not SKIP_DIRS & set(p.relative_to(REPO).parts)]
    return [p for p in paths if p.is_file()]


def test_no_citations_of_a_missing_design_document() -> None:
    found = []
    for path in _repository_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if DESIGN_SECTION.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, (
        "cite a document of this repository (docs/*.md) or the Alpa paper instead of "
        "DESIGN sections:\n" + "\n".join(found)
    )
