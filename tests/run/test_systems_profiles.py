"""System profiles: every shipped profile loads; every kind of mistake names the file and field."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.errors import UserError
from harness.results.system_desc import DETECT, SYSTEM_DESC_FIELDS
from harness.run.profile_schema import KNOWN_HYPERPARAMETER_SETS
from harness.run.profiles import DEFAULT_SYSTEMS_DIR, list_profiles, load_profile, resolved_description

REQUIRED_PROFILES = {"cpu", "gpu-a100-x1", "gpu-h100-x1", "gpu-h100-x8", "tpu-v3-8", "tpu-v4-8",
                     "cpu-2host"}


def test_every_shipped_profile_loads_and_is_consistent():
    profiles = {p.name: p for p in list_profiles(DEFAULT_SYSTEMS_DIR)}
    assert REQUIRED_PROFILES <= set(profiles)
    for p in profiles.values():
        h = p.harness
        assert p.num_replicas == h.devices_per_host * h.num_hosts
        assert h.global_batch_size % p.num_replicas == 0
        assert set(SYSTEM_DESC_FIELDS) <= set(p.description)
        assert p.description["division"] == "closed"
        assert p.description["submitter"] == "ncf-benchmark"
        row = KNOWN_HYPERPARAMETER_SETS.get(h.optimizer.source)
        assert row is not None, f"{p.name} should use a known-good hyperparameter set"
        assert h.optimizer.learning_rate == row.learning_rate
        assert (h.tpu is not None) == (h.device == "tpu")


def test_profile_choices_match_the_plan():
    p = {x.name: x for x in list_profiles()}
    assert p["cpu"].harness.strategy == "default" and p["cpu"].harness.precision == "fp32"
    assert p["cpu"].harness.global_batch_size == 98304
    assert p["gpu-h100-x8"].num_replicas == 8
    assert p["gpu-h100-x8"].harness.optimizer.source == "nvidia-v0.5"
    assert p["gpu-h100-x8"].devices_label == "8x H100"
    assert p["tpu-v3-8"].harness.precision == "mixed_bfloat16"
    assert p["tpu-v3-8"].harness.strategy == "tpu"
    assert p["cpu-2host"].harness.strategy == "multi_worker_mirrored"
    assert p["cpu-2host"].harness.per_replica_batch_size == 98304 // 2
    assert dict(p["cpu"].harness.cpu_threads) == {"intra_op": None, "inter_op": None}


def test_resolved_description_fills_every_detect_field():
    profile = load_profile("cpu")
    assert profile.detect_fields, "the cpu profile detects its host fields"
    desc = resolved_description(profile)
    assert [k for k in desc if k != "harness"] == list(SYSTEM_DESC_FIELDS)
    assert all(isinstance(desc[k], str) and desc[k] and desc[k] != DETECT
               for k in SYSTEM_DESC_FIELDS)
    assert desc["harness"]["profile"] == "cpu"
    assert sorted(desc["harness"]["detected_fields"]) == sorted(profile.detect_fields)
    assert desc["framework"].startswith("TensorFlow ")
    # The resolved description is itself a valid profile with the same harness settings.
    assert load_profile_from_dict(desc).harness == profile.harness


def load_profile_from_dict(data: dict):
    from harness.run.profiles import parse_profile

    return parse_profile("x", Path("x.json"), data)


# --- broken profiles ------------------------------------------------------------------------

def _break(data: dict, how: str) -> None:
    h = data["harness"]
    if how == "negative batch":
        h["global_batch_size"] = -3
    elif how == "wrong type":
        h["xla"] = "yes"
    elif how == "missing field":
        del h["strategy"]
    elif how == "missing description field":
        del data["host_networking"]
    elif how == "unknown strategy":
        h["strategy"] = "ring"
    elif how == "not divisible":
        h["global_batch_size"] = 1004
    elif how == "typo key":
        h["max_epoch"] = h.pop("max_epochs")
    elif how == "constants differ from source":
        h["optimizer"]["learning_rate"] = 0.004
    elif how == "detect where not detectable":
        data["cooling"] = DETECT
    elif how == "nodes disagree":
        data["number_of_nodes"] = "3"


BROKEN = {
    # how: (profile to copy, text the message must contain)
    "negative batch": ("cpu", "field harness.global_batch_size must be a positive integer, got -3"),
    "wrong type": ("cpu", "field harness.xla must be true or false, got \"yes\""),
    "missing field": ("cpu", "field harness.strategy is missing"),
    "missing description field": ("cpu", "field host_networking is missing"),
    "unknown strategy": ("gpu-h100-x8", "field harness.strategy must be one of default, one_device"),
    "not divisible": ("gpu-h100-x8", "harness.global_batch_size (1004) must divide evenly by the 8 replicas"),
    "typo key": ("cpu", "did you mean max_epochs?"),
    "constants differ from source": ("cpu", "harness.optimizer.learning_rate (0.004) differs from the 'tf-model-garden'"),
    "detect where not detectable": ("cpu", "field cooling cannot be \"detect\""),
    "nodes disagree": ("cpu-2host", "number_of_nodes ('3') must equal harness.num_hosts (2)"),
}


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_broken_profile_names_file_and_field(tmp_path, how):
    source, expected = BROKEN[how]
    data = json.loads((DEFAULT_SYSTEMS_DIR / f"{source}.json").read_text())
    _break(data, how)
    path = tmp_path / "foo.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as err:
        load_profile("foo", tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") or message.startswith("foo.json: ")
    assert expected in message
    # Loading by path gives the same message.
    with pytest.raises(UserError, match="foo.json"):
        load_profile(str(path))


def test_several_problems_are_counted(tmp_path):
    data = json.loads((DEFAULT_SYSTEMS_DIR / "cpu.json").read_text())
    data["harness"]["xla"] = 1
    data["harness"]["max_epochs"] = 0
    (tmp_path / "foo.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"xla must be true or false, got 1 \(and 1 more problem\)"):
        load_profile("foo", tmp_path)


def test_invalid_json_names_file_and_position(tmp_path):
    shutil.copy(DEFAULT_SYSTEMS_DIR / "cpu.json", tmp_path / "ok.json")
    (tmp_path / "bad.json").write_text('{\n  "submitter": "x",\n  "division" "closed"\n}\n')
    with pytest.raises(UserError, match=r"bad\.json is not valid JSON: Expecting ':' delimiter at line 3 column 14"):
        load_profile("bad", tmp_path)
    with pytest.raises(UserError, match="bad.json"):
        list_profiles(tmp_path)
    assert load_profile("ok", tmp_path).name == "ok"


def test_unknown_system_lists_available_ones(tmp_path):
    for name in ("cpu", "tpu-v3-8"):
        shutil.copy(DEFAULT_SYSTEMS_DIR / f"{name}.json", tmp_path / f"{name}.json")
    with pytest.raises(UserError, match=r"Unknown system 'tpu-v3-9'; available: cpu, tpu-v3-8\. Did you mean tpu-v3-8\?"):
        load_profile("tpu-v3-9", tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load_profile(str(tmp_path / "missing.json"))


def test_systems_command_table_json_and_errors(tmp_path, capsys):
    assert main(["systems", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["profiles"]}
    assert REQUIRED_PROFILES <= set(rows)
    assert rows["gpu-h100-x8"]["devices"] == "8x H100"
    assert rows["gpu-h100-x8"]["optimizer"]["learning_rate"] == 0.0045

    assert main(["systems"]) == 0
    table = capsys.readouterr().out
    assert "multi_worker_mirrored" in table and "1,048,576" in table and "adam lr 0.0045" in table

    shutil.copy(DEFAULT_SYSTEMS_DIR / "cpu.json", tmp_path / "cpu.json")
    (tmp_path / "bad.json").write_text("{")
    assert main(["systems", "--systems-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "cpu" in captured.out and "bad.json is not valid JSON" in captured.err

    assert main(["systems", "nope"]) == 2
    assert "error: Unknown system 'nope'" in capsys.readouterr().err
