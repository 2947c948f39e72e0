"""The lifecycle ledger: ``events.jsonl``, one JSON object a line, rotated by size.

Each line has ``ts`` (Unix time), ``event`` (a word from ``EVENTS``), ``program`` (or null for the
supervisor), ``pid`` (or null) and ``detail`` (an object). Readers skip lines they cannot parse: a
torn last line from a crash never hides the rest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

from .rotating import RotatingFile, generations

EVENTS_MAX_BYTES = 1024 * 1024
EVENTS_BACKUPS = 3

# What each event means, for `status --deep` and `logs --events`.
EVENTS = {
    "supervisor-start": "the supervisor started and took the lock",
    "supervisor-stop": "the supervisor stopped cleanly",
    "supervisor-ready": "all autostart programs are ready",
    "orphan-ended": "a program left by a previous supervisor was ended",
    "orphan-gone": "a program recorded by a previous supervisor had already exited",
    "orphan-guard": "the supervisor died; its sentinel process ended the program it left behind",
    "sentinel-lost": "the supervisor's orphan-guard process exited unexpectedly (it is started again)",
    "spawn": "a program was started",
    "spawn-failed": "a program could not be started (missing executable, bad cwd, ...)",
    "ready": "a program passed its readiness check",
    "ready-timeout": "a program did not become ready in time",
    "exit": "a program exited",
    "backoff": "a program died quickly and waits before its next start",
    "crashloop": "a program died too often; it is retried after a cooldown",
    "config-error": "a program exited 78 (config error) and stays stopped until started again",
    "restart": "a program is being restarted",
    "stop": "a program was stopped on request",
    "kill": "a program ignored its stop signal and was killed after the grace period",
    "breakaway-denied": "Windows refused CREATE_BREAKAWAY_FROM_JOB; started without it",
    "control": "a control request was served",
    "log-write-failed": "program output could not be written (disk full?) and was dropped",
    "stale-cleared": "'stop' found the supervisor dead (killed) and cleared its stale records",
}


class EventLog:
    def __init__(self, path: Path, max_bytes: int = EVENTS_MAX_BYTES, backups: int = EVENTS_BACKUPS) -> None:
        self._file = RotatingFile(path, max_bytes, backups, whole_lines=True)

    def emit(self, event: str, program: str | None = None, pid: int | None = None, **detail: Any) -> dict[str, Any]:
        record = {"ts": round(time.time(), 6), "event": event, "program": program, "pid": pid, "detail": detail}
        self._file.write((json.dumps(record, separators=(",", ":"), default=str) + "\n").encode())
        return record

    def close(self) -> None:
        self._file.close()


def read_events(path: Path, *, backups: int = EVENTS_BACKUPS) -> Iterator[dict[str, Any]]:
    """All parseable events, oldest first, across rotated generations."""
    for file in generations(Path(path), backups):
        try:
            with open(file, "rb") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and "event" in record:
                        yield record
        except OSError:
            continue


def tail_events(path: Path, n: int) -> list[dict[str, Any]]:
    from collections import deque

    return list(deque(read_events(path), maxlen=n)) if n > 0 else []
