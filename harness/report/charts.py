"""The report's two PNG charts, drawn with matplotlib's Agg canvas.

`Figure` + `FigureCanvasAgg` are used directly instead of pyplot: no global backend switch, no
figure registry to leak between calls, so the report can be called from tests or other tools
without side effects. Systems can differ by 100x in speed (a DGX-1 trains in half a minute, a
CPU in an hour), so time axes switch to a log scale when the range is that wide.

The HR chart draws every run as its own line, one panel per system: with 100 runs of a system in
one colour and one legend entry, a slow or diverging run could not be found. Runs take shades of
their system's hue by run_start order, and the notable ones (fastest, slowest, dropped from the
olympic mean, missed the target) carry their name at the end of their line.
"""
from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass
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


def _log_if_wide(ax, values: Sequence[float]) -> None:
    """A log time axis when the range is wide, ticked at 1-2-5 steps in plain numbers (powers of
    ten read badly when the range spans less than two decades)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > WIDE_RANGE:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------------------------------------
# HR@10 against time: one panel per system, one line per run


FEW_RUNS = 12        # up to this many runs per system, every run is labelled and gets its own marker
MAX_LABELS = 12      # above it, at most this many notable runs per panel are labelled
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")   # FEW_RUNS of them
DARKEST, LIGHTEST = 0.22, 0.70   # HLS lightness of a system's first and last run (same hue)
LABEL_POINTS = 7.0   # label font size; label rows are spaced 1.3x this apart


@dataclass(frozen=True)
class RunLine:
    """What the chart needs of one run: its evals as (minutes since run_start, HR@10) and why
    it may deserve a label."""

    name: str                        # the log's stem, e.g. result_3
    minutes: tuple[float, ...]
    hrs: tuple[float, ...]
    converged: bool
    seconds: float | None            # time to train
    role: str                        # its part in the score ("counted", "dropped (fastest)", ...) or ""


@dataclass(frozen=True)
class RunStyle:
    """How one run is drawn; `labelled` runs are drawn on top and thicker when there are many."""

    colour: tuple[float, float, float]
    linestyle: str                   # "--": the run did not reach the target
    marker: str
    labelled: bool
    label: str | None


def run_lines(runs: Sequence[RunRecord], roles: Mapping[str, str]) -> list[RunLine]:
    """The runs that can be drawn (a run_start and at least one eval), in run_start order, so a
    run's shade tells when it ran."""
    drawn = sorted((r for r in runs if r.run_start_ms is not None and r.epochs), key=lambda r: r.run_start_ms)
    return [RunLine(Path(r.path).stem, tuple((t - r.run_start_ms) / 60000.0 for _, _, t in r.epochs),
                    tuple(hr for _, hr, _ in r.epochs), r.converged, r.time_to_train_s, roles.get(r.path, ""))
            for r in drawn]


def run_tags(lines: Sequence[RunLine]) -> list[list[str]]:
    """Why each run is notable: the fastest and slowest converged runs, the runs the olympic mean
    dropped, and every run that did not reach the target. Empty for the rest."""
    timed = sorted((i for i, line in enumerate(lines) if line.converged and line.seconds is not None),
                   key=lambda i: lines[i].seconds)
    tags: list[list[str]] = [[] for _ in lines]
    if timed:
        tags[timed[0]].append("fastest")
    if len(timed) > 1:
        tags[timed[-1]].append("slowest")
    for i, line in enumerate(lines):
        if line.role.startswith("dropped"):
            reason = line.role[len("dropped"):].strip(" ()")
            tags[i].append("dropped" if reason in tags[i] or reason in ("", "non-converged")
                           else f"dropped as {reason}")
        if not line.converged:
            tags[i].append("missed target")
    return tags


def labelled_runs(lines: Sequence[RunLine], tags: Sequence[list[str]]) -> list[int]:
    """Indices of the runs to label: all of them when there are few; otherwise the notable ones,
    fastest/slowest/dropped first and then the missed runs furthest from the target, at most
    MAX_LABELS, so a panel of 100 runs keeps a readable label column."""
    if len(lines) <= FEW_RUNS:
        return list(range(len(lines)))
    ranked = [i for i, t in enumerate(tags) if set(t) - {"missed target"}]
    missed = sorted((i for i, t in enumerate(tags) if t and i not in ranked), key=lambda i: max(lines[i].hrs))
    return ranked[:MAX_LABELS] + missed[:max(0, MAX_LABELS - len(ranked))]


def _with_lightness(colour: Sequence[float], lightness: float) -> tuple[float, float, float]:
    hue, _, saturation = colorsys.rgb_to_hls(*colour[:3])
    return colorsys.hls_to_rgb(hue, lightness, saturation)


def _shade(base: Sequence[float], index: int, count: int) -> tuple[float, float, float]:
    """The system's hue and saturation at the lightness of the run's place in run_start order."""
    return _with_lightness(base, DARKEST + (LIGHTEST - DARKEST) * (index / (count - 1) if count > 1 else 0.5))


def _ink(colour: Sequence[float]) -> tuple[float, float, float]:
    """A run's colour, darkened where needed so its label reads on white."""
    return _with_lightness(colour, min(colorsys.rgb_to_hls(*colour[:3])[1], 0.4))


def run_styles(lines: Sequence[RunLine], base: Sequence[float]) -> list[RunStyle]:
    """One style per run: its shade, dashed if it missed the target, its own marker when few."""
    tags = run_tags(lines)
    chosen = set(labelled_runs(lines, tags))
    few = len(lines) <= FEW_RUNS
    styles = []
    for i, line in enumerate(lines):
        label = line.name + (f" ({', '.join(tags[i])})" if tags[i] else "") if i in chosen else None
        marker = MARKERS[i] if few else ("o" if line.converged else "x")
        styles.append(RunStyle(_shade(base, i, len(lines)), "-" if line.converged else "--", marker,
                               i in chosen, label))
    return styles


def _draw_run(ax, line: RunLine, style: RunStyle, few: bool) -> None:
    """A run as one Line2D with its marker on its last eval (where its label points); when many,
    the unlabelled runs are thin and faint so the labelled ones stand out."""
    loud = few or style.labelled
    ax.plot(line.minutes, line.hrs, color=style.colour, linestyle=style.linestyle, marker=style.marker,
            markevery=[len(line.hrs) - 1], markersize=5.0 if loud else 3.5,
            linewidth=1.0 if few else (1.4 if loud else 0.6), alpha=1.0 if loud else 0.45,
            zorder=3 if loud else 2, label=line.name, gid=f"run:{line.name}")


def spread(wanted: Sequence[float], gap: float, top: float = 1.0) -> list[float]:
    """Label heights near `wanted` (axes fractions) that are at least `gap` apart and not above
    `top`, keeping their order, so end-of-line labels of runs that end close together stay apart."""
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    placed = [wanted[i] for i in order]
    for k in range(1, len(placed)):
        placed[k] = max(placed[k], placed[k - 1] + gap)
    for k in range(len(placed) - 1, -1, -1):
        placed[k] = min(placed[k], top if k == len(placed) - 1 else placed[k + 1] - gap)
    heights = [0.0] * len(wanted)
    for k, i in enumerate(order):
        heights[i] = placed[k]
    return heights


def _label_ends(ax, fig, lines: Sequence[RunLine], styles: Sequence[RunStyle]) -> None:
    """Labels in a column just right of the panel's last eval, each tied to its run's end."""
    from matplotlib.transforms import blended_transform_factory, offset_copy

    chosen = [i for i, s in enumerate(styles) if s.labelled]
    if not chosen:
        return
    low, high = ax.get_ylim()
    panel_points = ax.get_position().height * fig.get_figheight() * 72.0
    wanted = [(lines[i].hrs[-1] - low) / (high - low) for i in chosen]
    heights = spread(wanted, 1.3 * LABEL_POINTS / panel_points)
    column = offset_copy(blended_transform_factory(ax.transData, ax.transAxes), fig=fig, x=14, units="points")
    x = max(line.minutes[-1] for line in lines)
    for i, height in zip(chosen, heights):
        ax.annotate(styles[i].label, xy=(lines[i].minutes[-1], lines[i].hrs[-1]), xytext=(x, height),
                    textcoords=column, fontsize=LABEL_POINTS, va="center", annotation_clip=False,
                    gid=f"label:{lines[i].name}",
                    color=_ink(styles[i].colour),
                    arrowprops={"arrowstyle": "-", "color": styles[i].colour, "linewidth": 0.5,
                                "alpha": 0.6, "shrinkA": 1, "shrinkB": 2})


def _targets(ax, runs: Sequence[RunRecord]) -> None:
    for target in sorted({r.target for r in runs if r.target is not None}):
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, gid="target")
        ax.annotate(f"target {target:g}", xy=(0.01, target), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=7, color="grey")


def _panel_title(ax, label: str, lines: Sequence[RunLine], styles: Sequence[RunStyle]) -> None:
    missed = sum(not line.converged for line in lines)
    unlabelled = sum(not line.converged and not s.labelled for line, s in zip(lines, styles))
    text = f"{label}: {len(lines)} runs, {missed} missed the target"
    if unlabelled:
        text += f" ({unlabelled} of them unlabelled: see runs.csv)"
    ax.set_title(text, fontsize=9, loc="left")


def hr_figure(groups: Mapping[str, Sequence[RunRecord]], roles: Mapping[str, str] | None = None):
    """The HR@10-against-time Figure: one panel per system on shared axes, one Line2D per run in
    shades of the system's hue (darker = earlier run_start, dashed = missed the target), with the
    run's name at the end of its line (all runs when few, the notable ones when many).
    `roles` maps a run's log path to its part in the score (`RunRow.scoring`), naming the runs
    the olympic mean dropped. Returned unsaved so tests can inspect it."""
    labels = list(groups) or ["no runs"]
    height = 1.0 + 2.4 * len(labels)
    fig = _figure(10.0, height)
    axes = fig.subplots(len(labels), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    fig.subplots_adjust(left=0.08, right=0.78, top=1.0 - 0.55 / height, bottom=0.45 / height, hspace=0.35)
    colours = _colours(labels)
    drawn = []
    xs: list[float] = []
    for ax, label in zip(axes, labels):
        runs = groups.get(label, [])
        lines = run_lines(runs, roles or {})
        styles = run_styles(lines, colours[label])
        for line, style in zip(lines, styles):
            _draw_run(ax, line, style, len(lines) <= FEW_RUNS)
            xs.extend(line.minutes)
        _targets(ax, runs)
        _panel_title(ax, label, lines, styles)
        ax.set_ylabel("HR@10")
        ax.grid(True, alpha=0.3)
        drawn.append((ax, lines, styles))
    _log_if_wide(axes[0], xs)
    axes[-1].set_xlabel("wall-clock minutes since run_start")
    fig.suptitle("HR@10 during each run (one line per run: darker = earlier run_start, "
                 "dashed = did not reach the target)", fontsize=10)
    for ax, lines, styles in drawn:
        ax.autoscale_view()
        _label_ends(ax, fig, lines, styles)
    return fig


def hr_against_time(groups: Mapping[str, Sequence[RunRecord]], path: str | Path,
                    roles: Mapping[str, str] | None = None) -> Path:
    """Write `hr_figure` as a PNG."""
    return _save(hr_figure(groups, roles), Path(path))


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
    _log_if_wide(ax, xs)
    ax.set_xlabel("time to train (minutes, run_start to run_stop)")
    ax.set_title("Time to train per system (x: did not converge)")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, Path(path))
