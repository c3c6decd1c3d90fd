"""Give up on a call that does not return in time.

Why: listing GPUs initialises the driver and connecting to a TPU waits on gRPC and the metadata
server; on a broken machine either can block forever inside C++ code that Python cannot
interrupt. A hung driver or TPU call must not hang the benchmark run, so such calls run in a
daemon thread that the caller stops waiting for at the deadline (the thread is abandoned, and
dies with the process).
"""
from __future__ import annotations

import threading
from typing import Any, Callable

TIMEOUT = "timeout"


def call_with_timeout(fn: Callable[[], Any], timeout_s: float,
                      name: str = "ncf-bounded-call") -> tuple[bool, Any]:
    """Run `fn` in a daemon thread named `name` and wait at most `timeout_s` seconds.

    (True, result) when it returned; (False, the exception) when it raised; (False, TIMEOUT)
    when it was still running at the deadline.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except Exception as exc:  # noqa: BLE001 - reported to the caller as a reason
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return False, TIMEOUT
    if "error" in box:
        return False, box["error"]
    return True, box["result"]
