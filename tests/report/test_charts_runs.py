"""The HR-vs-time chart tells runs apart: one line per run, shades of one hue per system, and the
notable runs named at the end of their lines (issue 29).

Why: with one colour and one legend entry per system, a slow or diverging run among 100 could not
be found. Records are generated (3 systems x 100 runs, as in the full published v0.5 sets, and
1 system x 3 runs) so the counts and the notable runs are known in advance.
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from harness.report import charts, scoring
from harness.results.run_record import RunRecord

TARGET = 0.635
EPOCHS = 20


def make_run(system: str, index: int, rng: np.random.Generator, miss: bool) -> RunRecord:
    """One run: HR climbs towards a plateau above the target (below it when `miss`); a run
    that reaches the target stops at that eval, as MLPerf runs do."""
    start = 1_000_000.0 + index * 100_000.0
    epoch_ms = rng.uniform(1500.0, 2500.0)
    plateau = TARGET - 0.01 if miss else TARGET + 0.01
    epochs = []
    for epoch in range(1, EPOCHS + 1):
        hr = plateau * (1.0 - 0.35 * np.exp(-epoch / rng.uniform(2.0, 4.0)))
        epochs.append((epoch, float(hr), start + epoch * epoch_ms))
        if hr >= TARGET:
            break
    reached = next((n for n, hr, _ in epochs if hr >= TARGET), None)
    stop = epochs[-1][2] + 10.0
    return RunRecord(path=f"/published/{system}/ncf/result_{index}.txt", system=system, format="v0.5",
                     division="closed", dataset="ml-20m", seed=index,
                     status="aborted" if reached is None else "success", abort_reason=None, target=TARGET,
                     run_start_ms=start, run_stop_ms=stop, time_to_train_s=(stop - start) / 1000.0,
                     epochs=epochs, best_hr=max(hr for _, hr, _ in epochs), epochs_to_target=reached)


def make_system(system: str, count: int, missed: set[int], seed: int) -> list[RunRecord]:
    rng = np.random.default_rng(seed)
    return [make_run(system, i, rng, i in missed) for i in range(count)]


def roles_of(runs: list[RunRecord]) -> dict[str, str]:
    """Each run's part in its v0.5 score, as the report hands it to the chart."""
    attempts = [scoring.Attempt(r.path, r.run_start_ms, r.time_to_train_s, r.converged) for r in runs]
    result = scoring.score(scoring.V05, attempts)
    roles = {key: "counted" for key in result.counted}
    roles.update({key: f"dropped ({why})" for key, why in result.dropped.items()})
    return roles


def name(run: RunRecord) -> str:
    return Path(run.path).stem


def expected_labels(runs: list[RunRecord], roles: dict[str, str]) -> set[str]:
    """The rule, written out: fastest and slowest converged, dropped, and every missed run."""
    converged = [r for r in runs if r.converged]
    notable = [min(converged, key=lambda r: r.time_to_train_s), max(converged, key=lambda r: r.time_to_train_s)]
    notable += [r for r in runs if roles.get(r.path, "").startswith("dropped") or not r.converged]
    return {name(r) for r in notable}


def run_lines_of(ax) -> list:
    return [line for line in ax.get_lines() if str(line.get_gid()).startswith("run:")]


def labels_of(ax) -> dict[str, str]:
    return {t.get_gid().split(":", 1)[1]: t.get_text() for t in ax.texts if str(t.get_gid()).startswith("label:")}


def hue(colour) -> float:
    return colorsys.rgb_to_hls(*to_rgb(colour))[0]


@pytest.fixture(scope="module")
def many():
    groups = {"sys_a": make_system("sys_a", 100, {7, 42, 93}, 1),
              "sys_b": make_system("sys_b", 100, {3, 4, 5, 60}, 2),
              "sys_c": make_system("sys_c", 100, set(), 3)}
    roles = {k: v for runs in groups.values() for k, v in roles_of(runs).items()}
    return groups, roles, charts.hr_figure(groups, roles)


def test_one_panel_per_system_and_one_line_per_run(many) -> None:
    groups, _, fig = many
    assert len(fig.axes) == 3
    for ax, (label, runs) in zip(fig.axes, groups.items()):
        assert ax.get_title(loc="left").startswith(label)
        assert sorted(line.get_label() for line in run_lines_of(ax)) == sorted(name(r) for r in runs)
    assert all(ax.get_shared_x_axes().joined(fig.axes[0], ax) for ax in fig.axes)


def test_runs_of_a_system_have_distinct_styles_in_one_hue(many) -> None:
    _, _, fig = many
    hues = []
    for ax in fig.axes:
        lines = run_lines_of(ax)
        styles = {(to_rgb(line.get_color()), line.get_linestyle(), line.get_marker()) for line in lines}
        assert len(styles) == len(lines) == 100
        system_hues = {round(hue(line.get_color()), 3) for line in lines}
        assert len(system_hues) == 1, system_hues
        hues.append(system_hues.pop())
    assert min(abs(a - b) for i, a in enumerate(hues) for b in hues[i + 1:]) > 0.05


def test_many_runs_label_only_the_notable_ones(many) -> None:
    groups, roles, fig = many
    for ax, runs in zip(fig.axes, groups.values()):
        labels = labels_of(ax)
        assert set(labels) == expected_labels(runs, roles)
        assert len(labels) < len(runs)
    missed = {name(r) for r in groups["sys_b"] if not r.converged}
    assert missed == {"result_3", "result_4", "result_5", "result_60"}
    assert all("missed target" in text for key, text in labels_of(fig.axes[1]).items() if key in missed)


def test_missed_runs_are_dashed(many) -> None:
    groups, _, fig = many
    converged = {name(r): r.converged for r in groups["sys_a"]}
    for line in run_lines_of(fig.axes[0]):
        assert (line.get_linestyle() == "--") == (not converged[line.get_label()])


def test_labels_are_capped_when_many_runs_miss() -> None:
    runs = make_system("sys_d", 100, set(range(0, 80, 2)), 4)
    roles = roles_of(runs)
    ax = charts.hr_figure({"sys_d": runs}, roles).axes[0]
    labels = labels_of(ax)
    assert len(labels) == charts.MAX_LABELS
    timed = sorted((r for r in runs if r.converged), key=lambda r: r.time_to_train_s)
    dropped = {name(r) for r in runs if roles.get(r.path, "").startswith("dropped")}
    assert {name(timed[0]), name(timed[-1])} | dropped <= set(labels)
    missed = sorted((r for r in runs if not r.converged), key=lambda r: r.best_hr)
    assert name(missed[0]) in labels and name(missed[-1]) not in labels   # furthest from the target first
    assert "unlabelled" in ax.get_title(loc="left")


def test_few_runs_are_all_labelled_with_their_own_marker(tmp_path) -> None:
    runs = make_system("small", 3, {1}, 5)
    fig = charts.hr_figure({"small": runs})
    (ax,) = fig.axes
    lines = run_lines_of(ax)
    assert len(lines) == 3 and len({line.get_marker() for line in lines}) == 3
    labels = labels_of(ax)
    assert set(labels) == {"result_0", "result_1", "result_2"}
    assert "missed target" in labels["result_1"]
    assert [line for line in ax.get_lines() if line.get_gid() == "target"]
    path = charts.hr_against_time({"small": runs}, tmp_path / "hr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spread_keeps_order_and_gap_below_the_top() -> None:
    heights = charts.spread([0.95, 0.2, 0.96, 0.97], gap=0.05)
    assert heights[1] == pytest.approx(0.2)
    ordered = [heights[i] for i in (1, 0, 2, 3)]
    assert all(b - a >= 0.05 - 1e-12 for a, b in zip(ordered, ordered[1:]))
    assert max(heights) <= 1.0
