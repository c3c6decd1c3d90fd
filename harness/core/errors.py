"""The one exception type for user mistakes.

Anything the user can fix (unknown system, bad flag value, corrupt download, missing hardware)
raises `UserError` with a single sentence; `harness.cli.main` prints it as `error: ...` and exits
non-zero, so users never see a traceback for their own mistakes.
"""


class UserError(Exception):
    """A problem the user can fix, described in one sentence."""

    exit_code = 2
