"""Polling for a condition, shared by the tests, the systemd lane's drivers (lane.workdir copies this
file next to them) and bench/supervisor_bench.py. Standard library only, for that reason.

Deadlines are generous by default: the machine running the suite has two cores shared with other
jobs, and a deadline only costs time when the test is failing anyway."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02, what: str = "",
             ignore: tuple[type[BaseException], ...] = (), error: type[Exception] = AssertionError) -> Any:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and return that.

    ``ignore``: exceptions that mean "not yet" (a file being replaced, a record not written yet).
    After ``timeout`` seconds, raises ``error`` naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:g} s waiting for {what or 'the condition'} (last value: {last!r})")
        time.sleep(interval)
