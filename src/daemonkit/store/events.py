"""The lifecycle ledger: ``events.jsonl``, one JSON object a line, rotated by size.

Each line has ``ts`` (Unix time), ``event`` (a word from ``EVENTS``), ``program`` (or null for the
supervisor), ``pid`` (or null) and ``detail`` (an object). Readers skip lines they cannot parse: a
torn last line from a crash never hides the rest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .rotating import RotatingFile, generations

EVENTS_MAX_BYTES = 1024 * 1024
EVENTS_BACKUPS = 3
# Deferred records are written once this many are held, without waiting for the end of the loop turn:
# a burst (a cold start of 500 programs, stop all) would otherwise hold 500 records and their text at
# once, and the supervisor's heap keeps such a peak (~0.3 MiB at N = 500). A restart's few records
# stay deferred.
DEFERRED_MAX = 32

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
    """Appends events to the ledger.

    By default each ``emit`` writes its line at once. The supervisor calls ``defer_writes`` with its
    loop's ``call_soon``: records are then stamped when emitted but written together after the
    current loop turn, so a program's death → respawn path makes no file writes (and encodes no JSON)
    before the new program is running.
    """

    def __init__(self, path: Path, max_bytes: int = EVENTS_MAX_BYTES, backups: int = EVENTS_BACKUPS) -> None:
        self._file = RotatingFile(path, max_bytes, backups, whole_lines=True)
        self._schedule: Callable[[Callable[[], None]], None] | None = None
        self._pending: list[dict[str, Any]] = []

    def defer_writes(self, schedule: Callable[[Callable[[], None]], None]) -> None:
        self._schedule = schedule

    def emit(self, event: str, program: str | None = None, pid: int | None = None, **detail: Any) -> dict[str, Any]:
        record = {"ts": round(time.time(), 6), "event": event, "program": program, "pid": pid, "detail": detail}
        if self._schedule is None:
            self._write([record])
        else:
            if not self._pending:
                self._schedule(self.flush)
            self._pending.append(record)
            if len(self._pending) >= DEFERRED_MAX:
                self.flush()
        return record

    def flush(self) -> None:
        """Write the records held back by ``defer_writes`` (one write for the whole batch)."""
        pending, self._pending = self._pending, []
        if pending:
            self._write(pending)

    def _write(self, records: list[dict[str, Any]]) -> None:
        # Batched, but each write stays well under the rotation size: rotation happens between writes,
        # so a record is never split across two files.
        limit = max(1, self._file.max_bytes // 4)
        chunk: list[bytes] = []
        size = 0
        for record in records:
            line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
            if chunk and size + len(line) > limit:
                self._file.write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._file.write(b"".join(chunk))

    def close(self) -> None:
        self.flush()
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
