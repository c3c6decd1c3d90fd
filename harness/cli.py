"""Command line of the benchmark: `run` (the default), `systems`, `data`, `check`, `report`,
`throughput`, `time-to-target`, `calibrate`.

Each subcommand lives in its own module under `harness.commands` exposing `register(subparsers)`,
which adds an argparse parser and sets `handler=<callable(args) -> int>`. TensorFlow is imported
only inside handlers that train, so `systems`, `data`, `check` and `report` answer quickly. A
command module that fails to import is a broken program, not a missing feature: the error
propagates.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from harness.core.errors import UserError
from harness.core.tf_runtime import apply_runtime_environment

# Modules that provide subcommands, in the order `--help` lists them.
SUBCOMMAND_MODULES = (
    "harness.commands.run",
    "harness.commands.systems",
    "harness.commands.data",
    "harness.commands.check",
    "harness.commands.report",
    "harness.commands.throughput",
    "harness.commands.time_to_target",
    "harness.commands.calibrate",
)
DEFAULT_SUBCOMMAND = "run"
# Exit status when the reader of stdout goes away (`report --json | head -1`): 128 + SIGPIPE, what
# a shell reports for any Unix tool a closed pipe stopped (`yes | head -1`). The output was cut
# short, so it is not 0; nothing is printed, because the reader chose to stop reading, and only
# scripts with `set -o pipefail` see the status at all.
CLOSED_PIPE_EXIT = 141


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one sentence (via UserError) instead of usage + exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, one subparser per module of SUBCOMMAND_MODULES."""
    parser = _Parser(
        prog="run_benchmark.py",
        description="NCF (NeuMF) MLPerf-style training benchmark for TensorFlow.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _with_default_subcommand(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """`run_benchmark.py --system cpu` means `run_benchmark.py run --system cpu`."""
    choices = set()
    for action in parser._actions:  # noqa: SLF001 - argparse exposes no public accessor
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            choices = set(action.choices)
    if argv and (argv[0] in choices or argv[0] in ("-h", "--help")):
        return argv
    if DEFAULT_SUBCOMMAND in choices:
        return [DEFAULT_SUBCOMMAND, *argv]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn user mistakes into one line on stderr plus a non-zero exit."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    apply_runtime_environment()   # before any command imports TensorFlow (harness.core.tf_runtime says why)
    try:
        parser = build_parser()
        args = parser.parse_args(_with_default_subcommand(args_list, parser))
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return 2
        code = int(handler(args) or 0)
        sys.stdout.flush()   # a reader that left is found here, not in the interpreter's final flush
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130


def _reader_went_away() -> int:
    """End quietly: stdout now points at /dev/null, so flushing what is still buffered at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return CLOSED_PIPE_EXIT
