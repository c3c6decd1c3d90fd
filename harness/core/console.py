"""The one place a rich Console is made, so every command behaves alike at a terminal and off it.

On a terminal: rich's defaults (colour, the terminal's width, live displays). Anywhere else (a file,
a pipe, a CI log): plain text a program or a person can grep. Rich's own default off a terminal
is 80 columns, which split `train 1.5 s (129,472` / `ex/s)` over two lines and shrank wide tables
until their cells held only `…`; here every printed line stays one line (soft wrap), tables are as
wide as their content (a width nothing reaches), and there are no colour or cursor codes.

A closed pipe (`report --json | head -1`) raises BrokenPipeError to the caller, as a plain
`print` does, instead of rich's default of `SystemExit(1)`: that exit skipped the run's own
error handling (a run's log lost its run_stop) and `harness.cli.main` ends every closed pipe the
same quiet way.
"""
from __future__ import annotations

from typing import IO

from rich.console import Console

# Off a terminal nothing should wrap or shrink: wider than any table or line this harness prints.
PLAIN_WIDTH = 10_000


class _Console(Console):
    """rich's Console, except that a vanished reader is an exception, not an exit."""

    def on_broken_pipe(self) -> None:
        """Called by rich inside its `except BrokenPipeError`; re-raise it for harness.cli.main."""
        self.quiet = True   # whatever else this console is asked to print has nowhere to go
        raise  # noqa: PLE0704 - re-raises the BrokenPipeError rich is handling


def make_console(stderr: bool = False, file: IO[str] | None = None, highlight: bool = True) -> Console:
    """A console for stdout (or stderr, or `file`): rich's defaults on a terminal, plain otherwise.

    Whether it is a terminal is rich's own judgement, so FORCE_COLOR and TTY_COMPATIBLE still let
    a user ask for colour in a log that understands it.
    """
    if Console(file=file, stderr=stderr).is_terminal:
        return _Console(file=file, stderr=stderr, highlight=highlight)
    return _Console(file=file, stderr=stderr, highlight=False, width=PLAIN_WIDTH, soft_wrap=True,
                    color_system=None, force_terminal=False, force_interactive=False)
