"""The run layer's entry: flags become typed `PlanOverrides`, and `resolve` turns them into a plan.

Why: every training command (run, throughput, calibrate, time-to-target) goes through
`overrides_from` and `resolve`, so the ranges they enforce and the one-sentence messages they
give are checked here once, without TensorFlow; and the command line must be built only from
`harness.commands`, with a broken command module failing loudly instead of vanishing from --help.
"""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from harness import cli
from harness.core.errors import UserError
from harness.core.paths import DEFAULT_RESULTS_ROOT
from harness.run.flags import add_run_arguments, overrides_from
from harness.run.plan import PlanOverrides
from harness.run.session import resolve


def parse(*flags: str, run_only: bool = False) -> argparse.Namespace:
    """Flags as a command that adds the shared run flags parses them (with `run`'s own three if asked)."""
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    if run_only:
        parser.add_argument("--runs", type=int, default=1)
        parser.add_argument("--results-dir")
        parser.add_argument("--system-name")
    return parser.parse_args(["--system", "cpu", *flags])


def test_no_flags_give_the_defaults_every_command_starts_from():
    assert overrides_from(parse()) == PlanOverrides(system="cpu")
    assert PlanOverrides(system="cpu").dataset == "ml-20m"


def test_flags_become_typed_fields():
    overrides = overrides_from(parse("--dataset", "synthetic-small", "--seed", "4", "--layers", "64,32",
                                     "--worker-hosts", "a:1,b:2", "--task-index", "1", "--no-xla",
                                     "--deterministic", "--learning-rate", "0.01", "--runs", "3",
                                     "--results-dir", "/r", "--system-name", "box", run_only=True))
    assert overrides.layers == (64, 32) and overrides.worker_hosts == ("a:1", "b:2")
    assert (overrides.seed, overrides.task_index, overrides.xla, overrides.deterministic) == (4, 1, False, True)
    assert (overrides.learning_rate, overrides.runs, overrides.results_dir, overrides.system_name) == (0.01, 3, "/r", "box")


def test_flags_a_command_does_not_take_stay_unset():
    overrides = overrides_from(parse())
    assert (overrides.runs, overrides.results_dir, overrides.system_name) == (None, None, None)


def test_overrides_change_only_by_replace():
    overrides = PlanOverrides(system="cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        overrides.runs = 5  # type: ignore[misc]
    assert dataclasses.replace(overrides, runs=5).runs == 5 and overrides.runs is None


@pytest.mark.parametrize("flags, message", [
    (["--layers", "64"], "expected at least two positive sizes"),
    (["--layers", "64,x"], "expected comma-separated integers"),
    (["--worker-hosts", "nohost"], "expected host:port"),
    (["--xla", "--no-xla"], "not allowed with argument"),
])
def test_malformed_flags_are_refused_while_parsing(flags, message, capsys):
    with pytest.raises(SystemExit):
        parse(*flags)
    assert message in capsys.readouterr().err


def test_resolve_fills_the_plan_from_profile_dataset_and_overrides():
    profile, plan = resolve(PlanOverrides(system="cpu", dataset="synthetic-small", seed=7, runs=3,
                                          learning_rate=0.01, worker_hosts=("a:1",)))
    assert profile.name == plan.system == plan.system_name == "cpu"
    assert plan.seeds == [7, 8, 9] and not plan.seeds_drawn
    assert plan.learning_rate == 0.01 and plan.hyperparameter_source.endswith("with command-line overrides")
    assert plan.results_root == str(DEFAULT_RESULTS_ROOT) and plan.worker_hosts == ["a:1"]
    assert plan.division == "open"
    _, named = resolve(PlanOverrides(system="cpu", results_dir="/elsewhere", system_name="box"))
    assert (named.results_root, named.system_name, named.runs, len(named.seeds)) == ("/elsewhere", "box", 1, 1)
    assert named.seeds_drawn


@pytest.mark.parametrize("change, message", [
    (dict(system="no-such-system"), "no-such-system"),
    (dict(system_name="a/b"), "--system-name must be a plain name without '/', got 'a/b'."),
    (dict(system_name=".hidden"), "--system-name must be a plain name"),
    (dict(system_name=""), "--system-name must be a plain name"),
    (dict(runs=0), "--runs must be in 1..2147483647, got 0."),
    (dict(eval_users=0), "--eval-users must be at least 1, got 0."),
    (dict(steps_per_call=-1), "--steps-per-call must be at least 1, got -1."),
    (dict(mf_dim=0), "--mf-dim must be at least 1, got 0."),
    (dict(dataset="no-such-set"), "Unknown dataset 'no-such-set'; known datasets:"),
    (dict(batch_size=-5), "--batch-size must be at least 1, got -5."),
    (dict(learning_rate=0.0), "--learning-rate must be > 0 and finite, got 0.0."),
    (dict(epsilon=-1e-8), "--epsilon must be > 0 and finite"),
    (dict(max_epochs=-2), "--max-epochs must be at least 1, got -2."),
    (dict(beta1=1.0), "--beta1 must be in [0, 1), got 1.0."),
    (dict(beta2=-0.1), "--beta2 must be in [0, 1), got -0.1."),
    (dict(target=0.0), "--target must be in (0, 1], got 0.0."),
    (dict(target=1.5), "--target must be in (0, 1], got 1.5."),
    (dict(layers=(63, 32)), "--layers must start with an even size (user and item halves), got 63."),
    (dict(system="cpu-mirrored-x2", batch_size=3), "The global batch 3 does not divide evenly over 2 replicas."),
])
def test_resolve_refuses_out_of_range_values_in_one_sentence(change, message):
    with pytest.raises(UserError) as caught:
        resolve(dataclasses.replace(PlanOverrides(system="cpu"), **change))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_every_subcommand_comes_from_harness_commands():
    assert all(name.startswith("harness.commands.") for name in cli.SUBCOMMAND_MODULES)
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    handlers = {name: p.get_default("handler") for name, p in sub.choices.items()}
    assert set(handlers) == {"run", "systems", "data", "check", "report", "throughput", "time-to-target", "calibrate"}
    assert all(h.__module__.startswith("harness.commands.") for h in handlers.values()), handlers


def test_a_command_module_that_fails_to_import_fails_the_command_line(monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", (*cli.SUBCOMMAND_MODULES, "harness.commands.no_such_command"))
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser()
