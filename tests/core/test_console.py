"""The console factory (issue 25): plain, unwrapped, unelided text off a terminal; rich's defaults on one;
a closed pipe is an exception for harness.cli, never rich's own exit."""
from __future__ import annotations

import io

import pytest
from rich.table import Table

from harness.core.console import PLAIN_WIDTH, make_console


class _Terminal(io.StringIO):
    """A file that says it is a terminal, as a user's tty does."""

    def isatty(self) -> bool:
        return True


class _ClosedPipe(io.StringIO):
    """A file whose reader has gone: every write fails as a closed pipe's does."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.fixture(autouse=True)
def _no_colour_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a file is a terminal is rich's judgement, which these variables override."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


def test_a_long_line_to_a_file_stays_one_line() -> None:
    out = io.StringIO()
    line = " ".join(f"word{i:03d}" for i in range(38))   # 303 characters with spaces to break at
    make_console(file=out).print(line)
    assert out.getvalue() == line + "\n"


def test_a_table_with_long_cells_is_neither_wrapped_nor_elided() -> None:
    out = io.StringIO()
    table = Table(title="runs")
    cells = [f"{'x' * 60} cell {i}" for i in range(8)]   # about 560 columns, seven times rich's 80
    for i in range(len(cells)):
        table.add_column(f"column {i}")
    table.add_row(*cells)
    make_console(file=out).print(table)
    text = out.getvalue()
    assert "…" not in text
    row = [line for line in text.splitlines() if "cell 0" in line]
    assert len(row) == 1 and all(cell in row[0] for cell in cells)


def test_markup_and_colour_become_plain_text_off_a_terminal() -> None:
    out = io.StringIO()
    make_console(file=out).print("[bold]run 1/1[/bold] [green]target reached[/green] 0.6371")
    assert out.getvalue() == "run 1/1 target reached 0.6371\n"


def test_a_terminal_keeps_rich_defaults() -> None:
    out = _Terminal()
    console = make_console(file=out)
    console.print("[bold]run[/bold]")
    assert console.is_terminal and console.width != PLAIN_WIDTH
    assert "\x1b[1m" in out.getvalue()


def test_a_closed_pipe_raises_broken_pipe_instead_of_exiting() -> None:
    console = make_console(file=_ClosedPipe())
    with pytest.raises(BrokenPipeError):
        console.print("epoch 1")
    console.print("epoch 2")   # nowhere to go and no second error: the console went quiet
