"""The MLPerf submission layout on disk, and the rules that keep it trustworthy.

    <root>/results/<system>/ncf/result_<n>.txt    the MLPerf log of run n (n from 0)
    <root>/results/<system>/ncf/result_<n>.json   its run summary
    <root>/systems/<system>.json                  the system description (+ "harness" section)

Three rules:
- Run numbers are claimed atomically: the log file is created with O_CREAT|O_EXCL, so two runs
  started at once (even from different processes or hosts on a shared disk) never share an n.
- An incomplete run (interrupted, crashed) is renamed to `result_<n>.txt.incomplete` (and its
  summary to `.json.incomplete`): it keeps its number and its log for inspection, but no tool
  that globs `result_*.txt` (ours or mlperf-logging's) can count it.
- The system description is never silently replaced. When the root is the project directory,
  `<root>/systems/<name>.json` may be the profile itself (with "detect" fields); writing the
  resolved description there would bake this host into a profile meant for any host. So:
    * no file yet: write the resolved description ("written");
    * an identical resolved description: leave it ("unchanged");
    * a different resolved description: UserError, since results of two different systems
      (another CPU, another TensorFlow build...) would mix under one name; use --system-name
      or another --results-dir;
    * a profile whose declared fields and harness section agree with this run: leave the
      profile untouched ("profile"); the detected host values are in each result's summary
      (provenance, host_fingerprint);
    * any other profile: UserError, refuse to overwrite it.
  A resolved description is recognised by the marker keys that `resolved_description` adds to
  its harness section (profile, detected_fields, host_fingerprint). These rules need the profile
  validator, so harness.run.system_description applies them; this module only knows the paths.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import UserError
from harness.core.writable import require_writable_dir, writing_to


BENCHMARK_DIR = "ncf"
RESULTS_FLAG = "--results-dir"   # what an unwritable root tells the user to change
INCOMPLETE_SUFFIX = ".incomplete"
_RESULT_FILE = re.compile(r"^result_(\d+)\.(txt|json)((?:\.incomplete)?)$")
_SYSTEM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


def check_system_name(name: str) -> str:
    """A system name becomes a directory and a file name: keep it plain."""
    if not isinstance(name, str) or not _SYSTEM_NAME.fullmatch(name):
        raise UserError(f"System name {name!r} must be a plain name (letters, digits, '.', '_', "
                        "'-', '+'; at most 100 characters, no '/').")
    return name


@dataclass(frozen=True)
class ResultEntry:
    """One claimed run number of one system, as found on disk."""

    system: str
    n: int
    log_path: Path | None        # result_<n>.txt, or result_<n>.txt.incomplete when incomplete
    summary_path: Path | None    # result_<n>.json (or .json.incomplete), when written
    complete: bool               # False when marked incomplete


class ResultsTree:
    """One submission root. Paths, atomic run-number claims, system descriptions."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._last_claimed: str | None = None

    # -- paths -------------------------------------------------------------------------------
    def result_dir(self, system: str) -> Path:
        return self.root / "results" / check_system_name(system) / BENCHMARK_DIR

    def log_path(self, system: str, n: int) -> Path:
        return self.result_dir(system) / f"result_{n}.txt"

    def summary_path(self, system: str, n: int) -> Path:
        return self.result_dir(system) / f"result_{n}.json"

    def system_description_path(self, system: str) -> Path:
        return self.root / "systems" / f"{check_system_name(system)}.json"

    def require_writable(self, system: str) -> None:
        """UserError now unless `system`'s run can write everything it will: its result folder
        and, while its description is not there yet, `systems/`.

        Called before a run starts (harness.run.session), so a read-only root costs seconds, not
        a data preparation and a TensorFlow start. Nothing is created (harness.core.writable).
        """
        require_writable_dir(self.result_dir(system), RESULTS_FLAG)
        description = self.system_description_path(system)
        with writing_to(description.parent, RESULTS_FLAG):
            written = description.exists()
        if not written:
            require_writable_dir(description.parent, RESULTS_FLAG)

    # -- run numbers -------------------------------------------------------------------------
    def _used_numbers(self, system: str) -> set[int]:
        directory = self.result_dir(system)
        if not directory.is_dir():
            return set()
        return {int(m.group(1)) for p in directory.iterdir()
                if (m := _RESULT_FILE.match(p.name))}

    def claim_next_result(self, system: str) -> tuple[int, Path, Path]:
        """(n, log path, summary path) for a new run; the empty log file now exists.

        n is one past the highest number in use (complete or not), so runs keep their order
        even when an earlier result was deleted. O_EXCL makes the claim atomic.
        """
        directory = self.result_dir(system)
        with writing_to(directory, RESULTS_FLAG):
            directory.mkdir(parents=True, exist_ok=True)
        used = self._used_numbers(system)
        n = max(used) + 1 if used else 0
        while True:
            log = self.log_path(system, n)
            with writing_to(directory, RESULTS_FLAG):
                try:
                    fd = os.open(log, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    n += 1
                    continue
            os.close(fd)
            # A run that claimed n and was then marked incomplete renamed its log away; if this
            # claim raced with that (listed before the claim, opened after the rename), give the
            # number back and take the next one.
            if Path(f"{log}{INCOMPLETE_SUFFIX}").exists():
                log.unlink()
                n += 1
                continue
            self._last_claimed = system
            return n, log, self.summary_path(system, n)

    def mark_incomplete(self, n: int, system: str | None = None) -> Path:
        """Move run n's log (and summary, if written) out of the counted `result_*.txt` names.

        `system` defaults to the system of this tree's last claim. Idempotent. Returns the new
        log path. Write the summary before calling this; one written later lands on the old
        name and is ignored by `results()`.
        """
        if system is None:
            if self._last_claimed is None:
                raise ValueError("mark_incomplete needs the system: this tree claimed no result")
            system = self._last_claimed
        log = self.log_path(system, n)
        for path in (log, self.summary_path(system, n)):
            if path.exists():
                os.replace(path, f"{path}{INCOMPLETE_SUFFIX}")
        return Path(f"{log}{INCOMPLETE_SUFFIX}")

    # -- listing -----------------------------------------------------------------------------
    def systems(self) -> list[str]:
        """Systems with a results folder under this root."""
        base = self.root / "results"
        if not base.is_dir():
            return []
        return sorted(d.name for d in base.iterdir() if (d / BENCHMARK_DIR).is_dir())

    def results(self, system: str | None = None) -> list[ResultEntry]:
        """Every claimed run number, complete or not, sorted by system then n."""
        entries = []
        for name in ([system] if system else self.systems()):
            directory = self.result_dir(name)
            if not directory.is_dir():
                continue
            found: dict[int, dict[str, Path]] = {}
            for path in directory.iterdir():
                match = _RESULT_FILE.match(path.name)
                if match:
                    found.setdefault(int(match.group(1)), {})[match.group(2) + match.group(3)] = path
            for n in sorted(found):
                files = found[n]
                complete = "txt.incomplete" not in files and "json.incomplete" not in files
                log = files.get("txt") if complete else files.get("txt.incomplete")
                summary = files.get("json") if complete else files.get("json.incomplete")
                entries.append(ResultEntry(name, n, log, summary, complete))
        return entries
