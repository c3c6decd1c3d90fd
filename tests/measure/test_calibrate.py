"""The calibration rule that places each dataset's target (docs/datasets.md, "Calibrating a target")."""
from __future__ import annotations

import pytest

from harness.measure.calibrate import UNREACHABLE_TARGET, suggest_target, success_rate
from harness.cli import main


def test_suggestion_is_the_lower_quantile_rounded_down_to_a_notch():
    best = [0.546, 0.578, 0.556, 0.566, 0.556]          # synthetic-small's measured bests
    assert suggest_target(best, 0.2) == pytest.approx(0.545)
    assert suggest_target([0.3109, 0.32, 0.33, 0.34, 0.35], 0.2) == pytest.approx(0.31)


def test_success_rate_counts_seeds_that_reach_the_target_at_any_epoch():
    curves = [[0.1, 0.3, 0.2], [0.1, 0.2, 0.25], [0.31]]
    assert success_rate(curves, 0.3) == pytest.approx(2 / 3)
    assert success_rate(curves, UNREACHABLE_TARGET) == 0.0


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "1"], "--seeds"), (["--quantile", "1.5"], "--quantile"),
    (["--peer-runs", "-1"], "argument --peer-runs: must be at least 0"),
    (["--peer-runs", "2"], "the peer trains only ml-latest-small"),
    (["--peer-env", "A=1"], "--peer-env needs --peer-runs"),
])
def test_bad_calibration_flags_are_one_sentence(flags, message, capsys):
    assert main(["calibrate", "--system", "cpu", "--dataset", "synthetic-small", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
