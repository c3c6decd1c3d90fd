"""`run_benchmark.py data`: the JSON contract, the text form, the bench flags, no TensorFlow."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.data import synthetic
from harness.commands.data import SUMMARY_KEYS

REPO = Path(__file__).resolve().parents[2]


def test_json_is_one_object_with_the_documented_keys(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "--dataset", "synthetic-small", "--cache-dir", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)                      # fails on anything but exactly one JSON document
    assert out.count("\n") == 1 and tuple(report) == SUMMARY_KEYS
    config = synthetic.parse_name("synthetic-small")
    assert (report["users"], report["items"], report["ratings"]) == (
        config.num_users, config.num_items, config.num_ratings)
    assert report["train_positives"] == config.num_ratings - config.num_users == report["ratings"] - report["eval_users"]
    assert report["verification"] == "synthetic" and report["eval_seed"] == 0
    assert 0 < report["mean_duplicates_per_eval_row"] < 999 and 0 <= report["test_item_drawn_share"] <= 1
    assert Path(report["cache_path"]).is_file() and len(report["sha256"]) == 64


def test_text_output_names_every_statistic(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "--cache-dir", str(tmp_path), "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines] == [key.replace("_", " ") for key in SUMMARY_KEYS]


def test_data_command_does_not_import_tensorflow(tmp_path: Path) -> None:
    code = ("import sys\nfrom harness.cli import main\n"
            f"rc = main(['data', '--json', '--cache-dir', {str(tmp_path)!r}])\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\nsys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)


def test_bench_flags_report_timings(tmp_path: Path, capsys: pytest.CaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(synthetic._BASES, "tiny", (300, 400, 9_000, 8))
    assert main(["data", "--dataset", "synthetic-tiny", "--cache-dir", str(tmp_path), "--json",
                 "--bench-csv", "--bench-sampling"]) == 0
    report = json.loads(capsys.readouterr().out)
    csv, sampling = report["bench_csv"], report["bench_sampling"]
    assert (csv["rows"], csv["ratings"], csv["users"], csv["train_positives"]) == (9_000, 9_000, 300, 8_700)
    assert csv["prepare_seconds"] >= 0 and csv["peak_rss_mib"] > 0
    assert sampling["epoch_examples"] == 5 * 8_700 and sampling["eval_seconds"] >= 0
    assert sampling["later_epoch_seconds"] >= 0 and sampling["later_epoch_cpu_seconds"] >= 0
    assert sampling["epoch_kernel"] == "compiled" and sampling["read_floor_seconds"] > 0
    assert len(sampling["numpy_kernel_seconds"]) == len(sampling["compiled_kernel_seconds"]) == 3
    assert sampling["compiled_vs_numpy"] > 0 and sampling["compiled_vs_read_floor"] > 0
    assert main(["data", "--dataset", "ml-1m", "--bench-csv"]) == 2   # the CSV bench needs a synthetic set
