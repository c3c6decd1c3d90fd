"""harness.results.log_parser: both MLPerf line formats, console noise, and garbage that must not crash."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from support.logbuilder import LogBuilder  # noqa: E402

from harness.core.errors import UserError  # noqa: E402
from harness.results.log_parser import parse_log  # noqa: E402


def _write(tmp_path: Path, text: str | bytes, name: str = "log.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_mllog_lines_become_events_in_file_order(tmp_path):
    builder = LogBuilder(epochs=2)
    path = builder.write(tmp_path / "log.txt")
    parsed = parse_log(path)
    assert parsed.format == "mllog" and parsed.errors == []
    assert [e.key for e in parsed.events] == [e.key for e in builder.entries]
    assert [e.line_no for e in parsed.events] == list(range(1, len(builder.entries) + 1))
    accuracy = parsed.all("eval_accuracy")[1]
    assert accuracy.value == pytest.approx(builder.hit_rates[1])
    assert accuracy.metadata["epoch_num"] == 2 and accuracy.event_type == "POINT_IN_TIME"
    assert accuracy.time_ms == builder.get("eval_accuracy", epoch=2).time_ms
    assert parsed.first("run_start").event_type == "INTERVAL_START"
    assert parsed.first("run_stop").metadata["status"] == "success"


def test_console_noise_and_prefixes_are_ignored(tmp_path):
    lines = LogBuilder(epochs=1).text().splitlines()
    noisy = ["Epoch 1: HR@10 = 0.43", "  3%|###  | 3/95 [00:01<00:30]", "a ::: b"]
    noisy += ["progress 99%\r" + lines[0]] + lines[1:]
    parsed = parse_log(_write(tmp_path, "\n".join(noisy) + "\n"))
    assert parsed.errors == []
    assert parsed.events[0].key == "submission_benchmark" and parsed.events[0].line_no == 4
    assert len(parsed.events) == len(lines)


def test_v05_lines(tmp_path):
    text = "\n".join([
        "Beginning trial 1 of 100",
        ":::MLPv0.5.0 ncf 1541731848.585105896 (<string>:1) run_clear_caches",
        ":::MLPv0.5.0 ncf 1541731858.930371284 (ncf.py:242) run_start",
        ":::MLPv0.5.0 ncf 1542308853.359 (NeuralCFexample.scala:187) model_hp_mlp_layer_sizes: \"[256, 256, 128, 64]\"",
        ":::MLPv0.5.0 ncf 1541731867.072517872 (ncf.py:450) eval_accuracy: {\"epoch\": 0, \"value\": 0.43}",
        ":::MLPv0.5.0 ncf 1541731867.1 (ncf.py:9) opt_name: Adam without quotes",
        ":::MLPv0.5.0 ncf 1541731885.447123289 (ncf.py:460) run_stop: {\"success\": true}",
    ]) + "\n"
    parsed = parse_log(_write(tmp_path, text))
    assert parsed.format == "v0.5" and parsed.errors == []
    keys = [e.key for e in parsed.events]
    assert keys == ["run_clear_caches", "run_start", "model_hp_mlp_layer_sizes", "eval_accuracy", "opt_name", "run_stop"]
    first = parsed.events[0]
    assert first.value is None and first.event_type == "POINT_IN_TIME" and first.line_no == 2
    assert first.time_ms == pytest.approx(1541731848585.105896)
    assert first.metadata == {"benchmark": "ncf", "file": "<string>", "lineno": "1"}
    assert parsed.events[2].value == "[256, 256, 128, 64]"           # JSON string stays a string
    assert parsed.events[3].value == {"epoch": 0, "value": 0.43}     # epochs kept as written (from 0)
    assert parsed.events[4].value == "Adam without quotes"           # not JSON: the raw text
    assert parsed.first("run_stop").value == {"success": True}


@pytest.mark.parametrize("line, reason", [
    (":::MLLOG {not json", "not valid JSON"),
    (":::MLLOG [1, 2]", "not a JSON object"),
    (":::MLLOG {\"key\": \"x\", \"value\": 1, \"metadata\": {}, \"event_type\": \"POINT_IN_TIME\"}", "time_ms is missing"),
    (":::MLLOG {\"key\": \"x\", \"time_ms\": 1, \"value\": 1, \"metadata\": [], \"event_type\": \"POINT_IN_TIME\"}",
     "metadata is not a JSON object"),
    (":::MLLOG {\"key\": \"x\", \"time_ms\": 1, \"value\": 1, \"metadata\": {}, \"event_type\": \"SOMETIME\"}",
     "event_type 'SOMETIME'"),
    (":::MLLOG {\"time_ms\": 1, \"value\": 1, \"metadata\": {}, \"event_type\": \"POINT_IN_TIME\"}", "has no key"),
    (":::MLLOG {\"key\": \"x\", \"time_ms\": \"soon\", \"value\": 1, \"metadata\": {}, \"event_type\": \"POINT_IN_TIME\"}",
     "time_ms is missing or not a number"),
    (":::MLPv0.5.0 ncf notatime (a.py:1) run_start", "timestamp 'notatime' is not a number"),
    (":::MLPv0.5.0 ncf 12.5 run_start", "not a `:::MLPv0.5.0"),
    (":::MLPv0.6.0 ncf 12.5 (a.py:1) run_start", "unsupported MLPerf log format ':::MLPv0.6.0'"),
])
def test_garbage_lines_become_errors_with_their_line_number(tmp_path, line, reason):
    good = LogBuilder(epochs=1).text().splitlines()
    parsed = parse_log(_write(tmp_path, "\n".join(good[:3] + [line] + good[3:]) + "\n"))
    assert len(parsed.errors) == 1
    assert parsed.errors[0].startswith("line 4: ") and reason in parsed.errors[0], parsed.errors
    assert len(parsed.events) == len(good)


def test_truncated_last_line_is_flagged(tmp_path):
    text = LogBuilder(epochs=1).text()
    cut = text[: text.rindex('"value"')]
    parsed = parse_log(_write(tmp_path, cut))
    assert len(parsed.errors) == 1 and "truncated log?" in parsed.errors[0]
    assert parsed.format == "mllog" and parsed.first("run_stop") is None


def test_empty_binary_and_console_only_files(tmp_path):
    assert parse_log(_write(tmp_path, b"", "empty.txt")).format == "unknown"
    binary = parse_log(_write(tmp_path, bytes(range(256)) * 8 + b":::\xff\xfe", "binary.txt"))
    assert binary.format == "unknown" and binary.events == []
    console = parse_log(_write(tmp_path, "just text\nno mlperf\n", "console.txt"))
    assert console.format == "unknown" and console.errors == []


def test_mixed_formats_keep_the_first_and_report_the_other(tmp_path):
    mllog = LogBuilder(epochs=1).text().splitlines()
    text = "\n".join(mllog[:2] + [":::MLPv0.5.0 ncf 1.0 (a.py:1) run_start"] + mllog[2:]) + "\n"
    parsed = parse_log(_write(tmp_path, text))
    assert parsed.format == "mllog" and len(parsed.events) == len(mllog)
    assert parsed.errors == ["line 3: a v0.5 line in a mllog log (mixed formats)"]


def test_unreadable_paths_raise_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        parse_log(tmp_path / "missing.txt")
    with pytest.raises(UserError, match="is a directory"):
        parse_log(tmp_path)


def test_values_are_kept_as_json_gave_them(tmp_path):
    record = {"namespace": "", "time_ms": 5, "event_type": "POINT_IN_TIME", "key": "eval_accuracy",
              "value": 0.5, "metadata": {"epoch_num": 1}}
    line = ":::MLLOG " + json.dumps(record)
    parsed = parse_log(_write(tmp_path, line + "\n" + line.replace("0.5", "NaN") + "\n"))
    assert parsed.errors == [] and parsed.events[0].time_ms == 5.0 and parsed.events[0].value == 0.5
    assert math.isnan(parsed.events[1].value)  # judged later by the rules, not dropped here


def test_published_v05_samples_parse_cleanly(shared_dir):
    logs = sorted((shared_dir / "data" / "mlperf-v0.5-ncf").glob("*/ncf/result_*.txt"))
    assert logs, "no v0.5 samples in the shared folder"
    for path in logs:
        parsed = parse_log(path)
        assert parsed.format == "v0.5" and parsed.errors == [], (path, parsed.errors[:3])
        assert len(parsed.all("run_start")) == 1 and len(parsed.all("run_final")) == 1
        assert all(isinstance(e.value, dict) for e in parsed.all("eval_accuracy"))
