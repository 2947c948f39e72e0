"""``daemonkit logs``: program output and the lifecycle ledger.

- ``-n N``: the last N lines of each chosen log, reaching into rotated generations (``x.log.1`` ...)
  when the current file holds fewer (right after a rotation it may hold none).
- ``-f``: keep printing new lines; survives rotation (the old file is drained before switching to the
  new one, so no line written around the rotation is lost) and files that appear later.
- ``--since WHEN``: ``90s``, ``10m``, ``2h``, ``1d``, an ISO date/time, or Unix seconds. Events carry
  their own time; program output is raw text, so there ``--since`` works per file: generations last
  written before WHEN are skipped.
- ``--events``: the ledger (``events.jsonl`` and its rotated files), one readable line per event.
- ``--json``: one JSON object a line (events as recorded; output as program/stream/line).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import EXIT_USAGE, DaemonkitError

if TYPE_CHECKING:
    from .paths import Home
    from .spec import Spec

FOLLOW_INTERVAL = 0.2
DEFAULT_LINES = 20
TAIL_CHUNK = 64 * 1024
MAX_BACKUPS = 9  # generations looked at when reaching back (specs keep fewer)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float | None = None) -> float:
    """``10m`` / ``2h`` / ``1d`` ago, an ISO date or date-time (local time unless it says otherwise), or
    Unix seconds. Raises a usage error naming the accepted forms."""
    now = time.time() if now is None else now
    value = text.strip()
    if value and value[-1] in _UNITS and value[:-1].replace(".", "", 1).isdigit():
        return now - float(value[:-1]) * _UNITS[value[-1]]
    try:
        number = float(value)
        if number > 1e8:  # plainly a Unix time, not a count of seconds
            return number
        return now - number
    except ValueError:
        pass
    from datetime import datetime

    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        error = DaemonkitError(f"cannot read --since {text!r}",
                               "expected 90s, 10m, 2h, 1d, an ISO date/time like 2026-01-31T14:00, or Unix seconds",
                               "logs --since 10m")
        error.exit_code = EXIT_USAGE
        raise error from None


# ------------------------------------------------------------------------------------------ reading


def generations(path: Path) -> list[Path]:
    """``path`` and its rotated generations that exist, oldest first."""
    older = [path.with_name(f"{path.name}.{i}") for i in range(MAX_BACKUPS, 0, -1)]
    return [p for p in [*older, path] if p.exists()]


def tail_lines(path: Path, n: int, since: float | None = None) -> list[str]:
    """The last ``n`` lines of a rotated log, across generations, newest last."""
    if n <= 0:
        return []
    out: list[str] = []
    for file in reversed(generations(path)):
        if since is not None and _mtime(file) < since:
            break  # this generation and every older one were last written before ``since``
        lines = _last_lines(file, n - len(out))
        out[:0] = lines
        if len(out) >= n:
            break
    return out[-n:]


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _last_lines(path: Path, n: int) -> list[str]:
    """Read backwards in chunks until ``n`` lines are found (a huge log costs only what is shown)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            data = b""
            while end > 0 and data.count(b"\n") <= n:
                start = max(0, end - TAIL_CHUNK)
                f.seek(start)
                data = f.read(end - start) + data
                end = start
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n:] if n else []


def tail_events(home: "Home", n: int, since: float | None = None, program: str | None = None) -> list[dict[str, Any]]:
    """The last ``n`` matching events across the ledger's generations, oldest first."""
    from collections import deque

    from .store.events import read_events

    keep: deque[dict[str, Any]] = deque(maxlen=max(n, 0))
    for event in read_events(home.events_file, backups=MAX_BACKUPS):
        if program and event.get("program") != program:
            continue
        if since is not None and float(event.get("ts") or 0) < since:
            continue
        keep.append(event)
    return list(keep) if n > 0 else []


def format_event(event: dict[str, Any]) -> str:
    from .store.events import EVENTS

    ts = float(event.get("ts", 0) or 0)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int((ts % 1) * 1000):03d}"
    who = event.get("program") or "supervisor"
    pid = f" pid {event['pid']}" if event.get("pid") else ""
    detail = event.get("detail") or {}
    extra = " ".join(f"{k}={v}" for k, v in detail.items()) if isinstance(detail, dict) else str(detail)
    meaning = EVENTS.get(str(event.get("event")), "")
    text = f"{stamp} {who}{pid}: {event.get('event')} {extra}".rstrip()
    return f"{text}  ({meaning})" if meaning and event.get("event") in _EXPLAINED else text


# Events whose name alone does not tell a user what happened.
_EXPLAINED = ("crashloop", "config-error", "backoff", "breakaway-denied", "orphan-ended", "orphan-gone", "kill",
              "log-write-failed", "stale-cleared", "ready-timeout", "spawn-failed")


# ------------------------------------------------------------------------------------------ following


def follow(path: Path) -> Iterator[str | None]:
    """Yield new lines as they are appended, ``None`` when there is nothing new (the caller sleeps).

    Starts at the end of the current file. When the file is rotated (another inode at the path) or
    truncated, the old handle is read to its end first, then the new file is read from its start.
    """
    handle = None
    inode = None
    buffer = b""
    while True:
        if handle is None:
            try:
                handle = open(path, "rb")
                handle.seek(0, os.SEEK_END)
                inode = os.fstat(handle.fileno()).st_ino
            except OSError:
                handle = None
                yield None
                continue
        chunk = handle.read(TAIL_CHUNK)
        if chunk:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                yield line.decode("utf-8", "replace")
            continue
        try:
            st = os.stat(path)
            rotated = st.st_ino != inode
            truncated = not rotated and st.st_size < handle.tell()
        except OSError:
            rotated = truncated = False  # mid-rotation: the path reappears in a moment
        if rotated or truncated:
            if rotated:
                rest = handle.read()  # written to the old file between our last read and the rotation
                buffer += rest
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    yield line.decode("utf-8", "replace")
            if buffer:
                yield buffer.decode("utf-8", "replace")
                buffer = b""
            handle.close()
            try:
                handle = open(path, "rb")  # the new generation: from its start
                inode = os.fstat(handle.fileno()).st_ino
            except OSError:
                handle = None
            continue
        yield None


# ------------------------------------------------------------------------------------------ command


def show_logs(spec: "Spec", home: "Home", *, lines: int | None = None, follow: bool = False,
              program: str | None = None, stream: str = "both", events: bool = False, as_json: bool = False,
              since: str | None = None, max_follow: float | None = None) -> int:
    """Print logs (see the module doc). ``max_follow``: stop following after that many seconds (tests)."""
    since_ts = parse_since(since) if since else None
    # Like journalctl: --since alone shows everything since then; -n limits either way.
    lines = lines if lines is not None else (10**9 if since_ts is not None else DEFAULT_LINES)
    if program:
        spec.program(program)  # a clear error for an unknown program name
    out = sys.stdout
    if events:
        for event in tail_events(home, lines, since_ts, program):
            out.write((json.dumps(event) if as_json else format_event(event)) + "\n")
        out.flush()
        if follow:
            _follow_events(home, program, as_json, max_follow)
        return 0
    names = [program] if program else [p.name for p in spec.programs]
    streams = ("out", "err") if stream == "both" else (stream,)
    files = [(name, s, home.program_log(name, s)) for name in names for s in streams]
    if not any(generations(path) for _, _, path in files):
        print(f"no output recorded yet in {home.logs_dir}", file=sys.stderr)
    for name, s, path in files:
        for line in tail_lines(path, lines, since_ts):
            _emit(name, s, line, as_json)
    out.flush()
    if follow:
        _follow_files(files, as_json, max_follow)
    return 0


def _follow_events(home: "Home", program: str | None, as_json: bool, max_follow: float | None) -> None:
    deadline = None if max_follow is None else time.monotonic() + max_follow
    for line in follow(home.events_file):
        if deadline is not None and time.monotonic() > deadline:
            return
        if line is None:
            time.sleep(FOLLOW_INTERVAL)
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and (not program or event.get("program") == program):
            sys.stdout.write((json.dumps(event) if as_json else format_event(event)) + "\n")
            sys.stdout.flush()


def _follow_files(files: list[tuple[str, str, Path]], as_json: bool, max_follow: float | None) -> None:
    deadline = None if max_follow is None else time.monotonic() + max_follow
    followers = [(name, s, follow(path)) for name, s, path in files]
    while deadline is None or time.monotonic() < deadline:
        idle = True
        for name, s, gen in followers:
            line = next(gen)
            while line is not None:
                idle = False
                _emit(name, s, line, as_json)
                line = next(gen)
        sys.stdout.flush()
        if idle:
            time.sleep(FOLLOW_INTERVAL)


def _emit(name: str, stream: str, line: str, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"program": name, "stream": stream, "line": line}) + "\n")
    elif stream == "err":
        sys.stdout.write(f"{name}|err| {line}\n")
    else:
        sys.stdout.write(f"{name}| {line}\n")
