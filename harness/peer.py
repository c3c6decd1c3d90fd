"""Running the TF Model Garden NCF peer (../shared/peers/tfg_ncf.sh) and reading its result line.

Why: `throughput --peer` (its training rate) and `time-to-target` (its time to the target) both
run the peer script as a subprocess, and each of its modes ends with one line
"PEER_TFG <mode> key=value ...". One function runs it, bounds its time and turns a failure
into one sentence, so the two commands cannot drift apart in how they treat the peer.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness.errors import UserError
from harness.tf_runtime import user_environment

PEER_SCRIPT = Path(__file__).resolve().parent.parent.parent / "shared" / "peers" / "tfg_ncf.sh"
PEER_TIMEOUT_S = 3600
PEER_ENV_HELP = ("add this variable to the peer's environment (repeatable), e.g. TF_CPU_ALLOCATOR_USE_BFC=true "
                 "to give it the allocator this harness uses")


def parse_peer_env(pairs: list[str]) -> dict[str, str]:
    """--peer-env KEY=VALUE arguments as a dict; one sentence for a malformed one."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "").isalnum():
            raise UserError(f"--peer-env takes KEY=VALUE with a variable name as KEY, got {pair!r}.")
        env[key] = value
    return env


def run_peer_script(mode: str, *args: str, env: dict[str, str] | None = None) -> tuple[dict[str, str], str]:
    """(key=value fields, the line itself) of the last `PEER_TFG <mode>` line the script printed.

    `env` is added to the user's environment: this process's, without the settings the harness
    gave its own TensorFlow (harness.tf_runtime), so the peer runs as the user would run it. A
    timeout, a non-zero exit or a missing result line raises UserError with the script's last
    output lines.
    """
    try:
        proc = subprocess.run(["bash", str(PEER_SCRIPT), mode, *args], capture_output=True, text=True,
                              timeout=PEER_TIMEOUT_S, env={**user_environment(), **(env or {})}, check=False)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"the peer did not finish within {PEER_TIMEOUT_S} s.") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith(f"PEER_TFG {mode}")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise UserError(f"the peer failed (exit {proc.returncode}): {tail}")
    return dict(re.findall(r"(\w+)=(\S+)", lines[-1])), lines[-1]
