"""`run_benchmark.py systems [NAME] [--json]`: the declared system profiles, at a glance.

Without NAME: one row per profile (devices, hosts, strategy, precision, batch, optimizer).
With NAME: that profile's resolved MLPerf system description ("detect" filled from this host),
i.e. what a run would write to `<root>/systems/<name>.json`.
Never imports TensorFlow, so it answers instantly.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.run.profiles import DEFAULT_SYSTEMS_DIR, SystemProfile, load_profile, resolved_description, scan_profiles


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "systems", help="list the system profiles (systems/*.json)",
        description="List the declared system profiles, or show one profile's MLPerf system "
                    "description with the host fields detected on this machine.")
    p.add_argument("name", nargs="?", help="show this profile (name or path) in full")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--systems-dir", default=str(DEFAULT_SYSTEMS_DIR),
                   help="directory of profiles (default: the project's systems/)")
    p.set_defaults(handler=run)


def profile_row(profile: SystemProfile) -> dict[str, Any]:
    """The summary of one profile that both the table and --json show."""
    h = profile.harness
    opt = h.optimizer
    return {
        "name": profile.name,
        "devices": profile.devices_label,
        "hosts": h.num_hosts,
        "replicas": profile.num_replicas,
        "strategy": h.strategy,
        "precision": h.precision,
        "xla": h.xla,
        "global_batch_size": h.global_batch_size,
        "optimizer": {"name": opt.name, "learning_rate": opt.learning_rate, "beta1": opt.beta1,
                      "beta2": opt.beta2, "epsilon": opt.epsilon, "source": opt.source},
        "max_epochs": h.max_epochs,
        "path": str(profile.path),
    }


def run(args: argparse.Namespace) -> int:
    if args.name:
        desc = resolved_description(load_profile(args.name, args.systems_dir))
        print(json.dumps(desc, indent=2, ensure_ascii=False))
        return 0
    profiles, errors = scan_profiles(args.systems_dir)
    rows = [profile_row(p) for p in profiles]
    if args.json:
        print(json.dumps({"profiles": rows, "errors": errors}, indent=2))
    else:
        _print_table(rows)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    return 2 if errors else 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from harness.core.console import make_console

    table = Table(title="System profiles (systems/*.json)")
    for column, justify in (("name", "left"), ("devices", "left"), ("hosts", "right"),
                            ("strategy", "left"), ("precision", "left"),
                            ("global batch", "right"), ("optimizer", "left")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        opt = row["optimizer"]
        table.add_row(row["name"], row["devices"], str(row["hosts"]), row["strategy"],
                      row["precision"] + (" +XLA" if row["xla"] else ""),
                      f"{row['global_batch_size']:,}",
                      f"{opt['name']} lr {opt['learning_rate']:g}")
    make_console().print(table)
