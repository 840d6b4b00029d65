"""`alpa-export`: write the StableHLO of a zoo model's training step.

    alpa-export MODEL [--preset NAME] [--batch-size N] [--seq-len N] [--num-layers N]
                [--set FIELD=VALUE ...] [--dtype fp32|bf16|fp16] [--loss-scale S]
                [--optimizer adam|adafactor]
                [--no-donate] [--no-debug-info] [-o FILE.mlir]
                [--example-inputs FILE.npz [--seed S]]
    alpa-export --list

Argument parsing and printing only; the models and the export live in `alpa_mlir.models`.
Errors print `alpa-export: error: ...` on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from alpa_mlir.dialect_utils.output_files import output_problem, write_atomically
from alpa_mlir.models.errors import ModelConfigError
from alpa_mlir.models.export import example_inputs, export_train_step
from alpa_mlir.models.optimizer import OPTIMIZERS
from alpa_mlir.models.precision import COMPUTE_DTYPES, DEFAULT_LOSS_SCALE, Precision
from alpa_mlir.models.registry import all_models, get_model, parse_override
from alpa_mlir.runtime.inputs import save_inputs

PROG = "alpa-export"
# Command-line flags that set a config field of the same name (where the model has it).
FIELD_FLAGS = (
    ("--batch-size", "batch_size"),
    ("--seq-len", "seq_len"),
    ("--num-layers", "num_layers"),
)


class UsageError(Exception):
    """A command line that cannot be carried out; the message is shown to the user."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = _Parser(
        prog=PROG,
        description="Export the training step (forward, backward, optimizer update) of a model "
        "from the zoo as StableHLO text. @main's arguments are the leaves of "
        "(params, opt_state, batch); its results those of (params, opt_state, loss).",
    )
    parser.add_argument("model", nargs="?", help="model name (see --list)")
    parser.add_argument("--list", action="store_true", help="list models and presets, then exit")
    parser.add_argument("--preset", default="tiny", help="size preset (default: tiny)")
    for flag, field in FIELD_FLAGS:
        parser.add_argument(
            flag, dest=field, type=int, metavar="N", help=f"override the config's {field}"
        )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any config field (repeatable)",
    )
    parser.add_argument(
        "--dtype",
        default="fp32",
        choices=tuple(COMPUTE_DTYPES),
        help="compute dtype: bf16/fp16 run the forward and backward passes in that dtype, "
        "with float32 parameters and optimizer state (default: fp32)",
    )
    parser.add_argument(
        "--optimizer",
        default="adam",
        choices=tuple(OPTIMIZERS),
        help="the update: adam (first and second moments per parameter) or adafactor (no "
        "momentum, factored second moments: Alpa's MoE benchmark) (default: adam)",
    )
    parser.add_argument(
        "--loss-scale",
        type=float,
        default=None,
        metavar="S",
        help=f"static loss scale (default: {DEFAULT_LOSS_SCALE['fp16']:g} for fp16, 1 otherwise)",
    )
    parser.add_argument(
        "--no-donate",
        dest="donate",
        action="store_false",
        help="do not donate params/opt_state (no tf.aliasing_output)",
    )
    parser.add_argument(
        "--no-debug-info",
        dest="debug_info",
        action="store_false",
        help="print without source locations",
    )
    parser.add_argument(
        "-o", "--output", default="-", help="output file ('-' = stdout, the default)"
    )
    parser.add_argument(
        "--example-inputs",
        metavar="FILE.npz",
        default=None,
        help="also write concrete inputs (arg0, arg1, ...: initialized parameters, a warm "
        "optimizer state, a random batch) for alpa-run --inputs (small models only)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --example-inputs")
    return parser


def format_count(n: int) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def list_models() -> str:
    """The --list table: model, preset, parameter count, and the model's summary."""
    rows = [("MODEL", "PRESET", "PARAMS", "")]
    for model in all_models():
        for i, (preset, config) in enumerate(model.presets.items()):
            summary = model.summary if i == 0 else ""
            rows.append((model.name, preset, format_count(model.num_params(config)), summary))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, [*widths, 0], strict=True)) for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def collect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides from the field flags and --set."""
    model = get_model(args.model)
    config = model.config(args.preset)
    overrides: dict[str, Any] = {}
    for item in args.settings:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise UsageError(f"--set expects FIELD=VALUE, got {item!r}")
        overrides[name] = parse_override(config, name, text)
    for _, field in FIELD_FLAGS:
        value = getattr(args, field)
        if value is not None:
            overrides[field] = value
    return overrides


def write_output(text: str, path: str) -> None:
    """Write to `path`, or stdout for '-'."""
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        write_atomically(path, text)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from e


def run(argv: Sequence[str] | None) -> int:
    """Parse and execute; raises UsageError / ModelConfigError for the caller to report."""
    args = build_parser().parse_args(argv)
    if args.list:
        print(list_models())
        return 0
    if args.model is None:
        raise UsageError("a MODEL is required (or --list)")
    overrides = collect_overrides(args)
    for path in (args.output, args.example_inputs):  # checked before the export, not after
        problem = None if path in (None, "-") else output_problem(path)
        if problem is not None:
            raise UsageError(f"cannot write {path}: {problem}")
    precision = Precision(args.dtype, args.loss_scale)
    text = export_train_step(
        args.model, args.preset, donate=args.donate, debug_info=args.debug_info,
        optimizer=args.optimizer, precision=precision, **overrides
    )
    write_output(text, args.output)
    if args.example_inputs:
        inputs = example_inputs(
            args.model, args.preset, seed=args.seed, optimizer=args.optimizer, **overrides)
        try:
            save_inputs(args.example_inputs, inputs)
        except OSError as e:
            raise UsageError(f"cannot write {args.example_inputs}: {e.strerror or e}") from e
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    try:
        return run(argv)
    except (UsageError, ModelConfigError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except BrokenPipeError:  # stdout closed early (`alpa-export ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
