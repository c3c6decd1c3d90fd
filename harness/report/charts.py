"""The report's two PNG charts, drawn with matplotlib's Agg canvas.

`Figure` + `FigureCanvasAgg` are used directly instead of pyplot: no global backend switch, no
figure registry to leak between calls, so the report can be called from tests or other tools
without side effects. Systems can differ by 100x in speed (a DGX-1 trains in half a minute, a
CPU in an hour), so time axes switch to a log scale when the range is that wide.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

from harness.core.atomic import atomic_write_bytes
from harness.results.run_record import RunRecord

WIDE_RANGE = 20.0   # max/min time ratio above which a log axis reads better


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _colours(labels: Sequence[str]) -> dict[str, object]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _log_if_wide(axis_setter, values: Sequence[float]) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > WIDE_RANGE:
        axis_setter("log")


def hr_against_time(groups: Mapping[str, Sequence[RunRecord]], path: str | Path) -> Path:
    """HR@10 of every eval against wall-clock minutes since run_start, one line per run,
    coloured by system; dashed lines mark the targets."""
    fig = _figure(8.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    colours = _colours(list(groups))
    xs: list[float] = []
    targets: set[float] = set()
    for label, runs in groups.items():
        first = True
        for run in runs:
            if run.run_start_ms is None or not run.epochs:
                continue
            minutes = [(t - run.run_start_ms) / 60000.0 for _, _, t in run.epochs]
            ax.plot(minutes, [hr for _, hr, _ in run.epochs], marker=".", linewidth=1.0, alpha=0.8,
                    color=colours[label], label=label if first else None)
            xs.extend(minutes)
            first = False
            if run.target is not None:
                targets.add(run.target)
    for target in sorted(targets):
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(f"target {target:g}", xy=(0.01, target), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8, color="grey")
    _log_if_wide(ax.set_xscale, xs)
    ax.set_xlabel("wall-clock minutes since run_start")
    ax.set_ylabel("HR@10")
    ax.set_title("HR@10 during each run")
    ax.grid(True, alpha=0.3)
    if groups:
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, Path(path))


def time_to_train(groups: Mapping[str, Sequence[RunRecord]], path: str | Path) -> Path:
    """Time to train per system: a box of the converged runs with every run drawn over it
    (converged as dots, non-converged as crosses), so the spread and the failures both show."""
    fig = _figure(8.0, 1.2 + 0.7 * max(len(groups), 1))
    ax = fig.add_subplot(1, 1, 1)
    labels = list(groups)
    colours = _colours(labels)
    xs: list[float] = []
    for row, label in enumerate(labels, start=1):
        runs = [r for r in groups[label] if r.time_to_train_s is not None]
        done = [r.time_to_train_s / 60.0 for r in runs if r.converged]
        failed = [r.time_to_train_s / 60.0 for r in runs if not r.converged]
        if done:
            ax.boxplot([done], positions=[row], orientation="horizontal", widths=0.5, showfliers=False,
                       medianprops={"color": colours[label]})
        ax.scatter(done, [row] * len(done), color=colours[label], s=18, zorder=3)
        ax.scatter(failed, [row] * len(failed), color=colours[label], marker="x", s=24, zorder=3)
        xs.extend(done + failed)
    ax.set_yticks(range(1, len(labels) + 1), labels)
    ax.set_ylim(0.4, len(labels) + 0.6)
    _log_if_wide(ax.set_xscale, xs)
    ax.set_xlabel("time to train (minutes, run_start to run_stop)")
    ax.set_title("Time to train per system (x: did not converge)")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, Path(path))
