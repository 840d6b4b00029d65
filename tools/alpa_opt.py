"""alpa-opt: an mlir-opt-style driver for alpa-mlir's passes and jaxlib's native passes.

    alpa-opt INPUT [-o OUTPUT] --pass-pipeline='builtin.module(p1{k=v},p2)'

Errors are printed as `file:line:col: error: message` and exit with status 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import metadata
from typing import TextIO

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.diagnostics import (
    Diagnostic,
    DiagnosticCollector,
    Severity,
    from_mlir_error,
)
from alpa_mlir.dialect_utils.output_files import output_problem, write_atomically
from alpa_mlir.passes import (
    InternalPassError,
    IRPrinter,
    PassFailure,
    PassManager,
    PassTimer,
    PipelineError,
)
from alpa_mlir.passes.pass_manager import Instrumentation
from alpa_mlir.tools.cli import Once, ToolParser

from .input_files import Chunk, InputError, buffer_name, read_input, split_chunks
from .pass_listing import list_passes, markdown_reference
from .verify_diagnostics import check, parse_expectations

SPLIT_OUTPUT = "// -----\n"


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(
        prog="alpa-opt",
        description="Run alpa-mlir and native MLIR passes over a StableHLO module.",
    )
    p.add_argument("input", nargs="?", default="-", help="input .mlir (text or bytecode); '-' = stdin")
    p.add_argument("-o", dest="output", default="-", action=Once, help="output file ('-' = stdout)")
    p.add_argument("--pass-pipeline", default="", action=Once, help="e.g. 'builtin.module(alpa-annotate-flops,canonicalize)'")
    p.add_argument("--split-input-file", action="store_true", help="process each '// -----' chunk separately")
    p.add_argument("--verify-diagnostics", action="store_true", help="check diagnostics against expected-* comments")
    p.add_argument("--mlir-print-ir-after-all", action="store_true", help="print the IR after every pass (stderr)")
    p.add_argument("--mlir-timing", action="store_true", help="print wall time per pass (stderr)")
    p.add_argument("--mlir-print-debuginfo", action="store_true", help="print locations in the output")
    p.add_argument("--no-verify-each", action="store_true", help="do not verify the module after each pass")
    p.add_argument("--list-passes", action="store_true", help="list passes usable in pipelines, with options")
    p.add_argument("--markdown", action="store_true",
                   help="with --list-passes: the Markdown pass reference (docs/passes.md)")
    p.add_argument("--version", action="store_true", help="print versions and exit")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks of internal errors")
    return p


def version_text() -> str:
    def v(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return f"alpa-opt (alpa-mlir {v('alpa-mlir')}; jax {v('jax')}, jaxlib {v('jaxlib')})"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.markdown and not args.list_passes:
        parser.error("--markdown applies to --list-passes")
    try:
        return run(args, sys.stdout, sys.stderr)
    except Exception as e:  # a bug of ours: say so plainly, traceback only with --debug
        if args.debug:
            raise
        print(f"alpa-opt: internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)", file=sys.stderr)
        return 1


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.version:
        out.write(version_text() + "\n")
        return 0
    if args.list_passes and args.markdown:
        out.write(markdown_reference())
        return 0
    ctx = make_context()
    if args.list_passes:
        out.write(list_passes(ctx))
        return 0
    name = buffer_name(args.input)
    timer = PassTimer() if args.mlir_timing else None
    instrumentations: list[Instrumentation] = []
    if args.mlir_print_ir_after_all:
        instrumentations.append(IRPrinter(err, args.mlir_print_debuginfo))
    if timer is not None:
        instrumentations.append(timer)
    try:
        pm = PassManager.parse(
            args.pass_pipeline, ctx, verify_each=not args.no_verify_each, instrumentations=tuple(instrumentations)
        )
    except PipelineError as e:
        _print(e.diagnostics, name, err)
        return 1
    problem = None if args.output == "-" else output_problem(args.output)
    if problem is not None:
        err.write(f"{args.output}:0:0: error: cannot write the output: {problem}\n")
        return 1
    try:
        start = time.perf_counter()
        chunks = split_chunks(read_input(args.input), args.split_input_file, name)
    except InputError as e:
        err.write(f"{e.name}:0:0: error: {e}\n")
        return 1
    failed = False
    outputs: list[str] = []
    for chunk in chunks:
        ok, text = _process_chunk(chunk, pm, ctx, args, name, err, timer, start)
        failed |= not ok
        if text is not None:
            outputs.append(text)
        start = time.perf_counter()
    start = time.perf_counter()
    if args.output == "-":
        sys.stdout.write(SPLIT_OUTPUT.join(outputs))
        sys.stdout.flush()
    elif not failed:  # a failed run leaves an existing output file as it was
        try:
            write_atomically(args.output, SPLIT_OUTPUT.join(outputs))
        except OSError as e:
            err.write(f"{args.output}:0:0: error: cannot write the output: {e.strerror or e}\n")
            return 1
    if timer is not None:
        timer.add("output", time.perf_counter() - start)
        err.write(timer.report())
    return 1 if failed else 0


def _process_chunk(
    chunk: Chunk,
    pm: PassManager,
    ctx: ir.Context,
    args: argparse.Namespace,
    name: str,
    err: TextIO,
    timer: PassTimer | None,
    start: float,
) -> tuple[bool, str | None]:
    """Parse and transform one chunk. Returns (ok, printed module or None)."""
    collector = DiagnosticCollector()
    text: str | None = None
    try:
        module = parse_module(chunk.source, ctx)
        if timer is not None:
            timer.add("parse", time.perf_counter() - start)
        pm.run(module, collector)
        text = print_module(module, args.mlir_print_debuginfo)
    except ir.MLIRError as e:
        collector.extend(from_mlir_error(e))
    except PassFailure as e:
        collector.extend(e.diagnostics)
    except InternalPassError as e:
        if args.debug:
            raise
        collector.extend([Diagnostic(Severity.ERROR, f"{e} (rerun with --debug for a traceback)")])
    if args.verify_diagnostics:
        source = chunk.source if isinstance(chunk.source, str) else ""
        problems = check(collector.diagnostics, parse_expectations(source), name)
        _print(problems, name, err)
        return not problems, text
    _print(collector.diagnostics, name, err)
    return not collector.has_errors, text


def _print(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...], name: str, err: TextIO) -> None:
    for d in diagnostics:
        err.write(d.format(name) + "\n")


if __name__ == "__main__":
    sys.exit(main())
