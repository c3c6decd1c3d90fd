"""What a user sees while the benchmark runs: a live rich display on a terminal, plain lines
otherwise (CI logs, pipes), with the same content."""
from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.core.console import make_console


class RunDisplay:
    """Per-epoch lines and, on a terminal, a progress bar over the epoch's training steps."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.console = console or make_console(highlight=False)
        self.live = self.console.is_terminal and not quiet
        self.quiet = quiet
        self._progress: Progress | None = None
        self._task: Any = None

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def warn(self, text: str) -> None:
        make_console(stderr=True, highlight=False).print(f"[yellow]warning:[/yellow] {text}")

    def plan(self, rows: list[tuple[str, str]], title: str) -> None:
        if self.quiet:
            return
        if not self.console.is_terminal:
            # Plain text: "label  value" lines, no trailing padding (a borderless table pads every
            # row to its widest value, which a log or a diff shows as trailing spaces).
            width = max((len(label) for label, _ in rows), default=0)
            self.console.print(title, markup=False, highlight=False)
            for label, value in rows:
                self.console.print(f"{label:<{width}}  {value}", markup=False, highlight=False)
            return
        table = Table(title=title, show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for label, value in rows:
            table.add_row(label, value)
        self.console.print(table)

    def run_header(self, index: int, total: int, seed: int) -> None:
        self.note(f"[bold]run {index + 1}/{total}[/bold] seed {seed}")

    def epoch_progress(self, epoch: int, done: int, steps: int, per_call: int, epochs: int) -> None:
        """Advance the live bar: `done` of `steps` training steps of `epoch`, `per_call` per compiled call.

        The bar can only move between compiled calls. When one call trains the whole epoch
        (synthetic-small: 48 steps, 50 per call) a step bar would sit at 0/48 and vanish, so the
        bar counts epochs of `epochs` instead: `epoch 3  2/12 epochs` while epoch 3 trains.
        """
        if not self.live:
            return
        by_epoch = per_call >= steps
        if done == 0:
            unit, total, start = ("epochs", epochs, epoch - 1) if by_epoch else ("steps", steps, 0)
            self._progress = Progress(TextColumn(f"epoch {epoch}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn(unit), TimeElapsedColumn(), console=self.console,
                                      transient=True)
            self._task = self._progress.add_task("train", total=total, completed=start)
            self._progress.start()
        elif self._progress is not None:
            self._progress.update(self._task, completed=epoch if by_epoch else done, refresh=True)
            if done >= steps:
                self._progress.stop()
                self._progress = None

    def epoch_done(self, stats: Any, target: float) -> None:
        if self.quiet:
            return
        mark = "  [green]target reached[/green]" if stats.hit_rate >= target else ""
        self.console.print(
            f"epoch {stats.epoch:2d}  HR@10 {stats.hit_rate:.4f}  NDCG@10 {stats.ndcg:.4f}  loss {stats.loss:.4f}  "
            f"train {stats.train_s:6.1f} s ({stats.examples_per_s:,.0f} ex/s)  "
            f"eval {stats.eval_s:5.1f} s ({stats.eval_pairs_per_s:,.0f} pairs/s){mark}")
        sys.stdout.flush()

    def run_done(self, outcome: Any) -> None:
        if self.quiet:
            return
        status = outcome.status + (f" ({outcome.abort_reason})" if outcome.abort_reason else "")
        ttt = f"{outcome.time_to_train_s:.1f} s" if outcome.time_to_train_s is not None else "-"
        self.console.print(f"run finished: {status}, time to train {ttt}, {len(outcome.epochs)} epochs, "
                           f"best HR@10 {outcome.best_hr:.4f}")
        if outcome.log_path:
            self.console.print(f"  log: {outcome.log_path}")
        if outcome.verdict is not None:
            verdict = "PASS" if outcome.verdict["passed"] else "FAIL"
            detail = "; ".join(outcome.verdict["failures"][:3])
            self.console.print(f"  compliance ({outcome.verdict['division']}): {verdict}" + (f": {detail}" if detail else ""))

    def summary(self, outcomes: list[Any]) -> None:
        if self.quiet or len(outcomes) < 1:
            return
        table = Table(title="runs")
        for col in ("result", "seed", "status", "epochs", "time to train (s)", "best HR@10", "compliance"):
            table.add_column(col)
        for o in outcomes:
            verdict = "-" if o.verdict is None else ("PASS" if o.verdict["passed"] else "FAIL")
            table.add_row(str(o.index if o.index is not None else "-"), str(o.seed),
                          o.status + (f" ({o.abort_reason})" if o.abort_reason else ""), str(len(o.epochs)),
                          f"{o.time_to_train_s:.1f}" if o.time_to_train_s is not None else "-",
                          f"{o.best_hr:.4f}", verdict)
        self.console.print(table)
