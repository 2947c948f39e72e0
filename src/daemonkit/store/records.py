"""The supervisor's pid record and the state snapshot, read defensively.

Both are written atomically (temp file + rename), so a reader sees a whole old or a whole new file.
Readers never crash on what they find: a missing, empty, truncated, binary or wrongly shaped file is
reported with a reason (``RecordProblem``) and treated as absent; the next supervisor rewrites it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from .atomic import CorruptFile, read_json, write_chunks_atomic, write_json_atomic

STATE_SCHEMA = 1


class ReadResult(NamedTuple):  # not a dataclass: the supervisor imports this module (see spec.py)
    """``data`` is the parsed record (or None); ``problem`` says why it is unusable ("" when fine or absent);
    ``exists`` tells absent from unusable."""

    data: dict[str, Any] | None
    exists: bool
    problem: str = ""


def read_record(path: Path, required: tuple[str, ...] = ()) -> ReadResult:
    try:
        data = read_json(path)
    except CorruptFile as exc:
        return ReadResult(None, True, exc.reason)
    except OSError as exc:
        return ReadResult(None, True, f"cannot read: {exc.strerror or exc}")
    if data is None:
        return ReadResult(None, False)
    if not isinstance(data, dict):
        return ReadResult(None, True, "not a JSON object")
    missing = [k for k in required if k not in data]
    if missing:
        return ReadResult(None, True, f"missing field(s): {', '.join(missing)}")
    return ReadResult(data, True)


def write_pid_record(path: Path, *, pid: int, create_time: float, argv: list[str], version: str,
                     backend: str = "") -> dict[str, Any]:
    # ``exe``: the interpreter, so `status --deep` can tell a replaced or foreign process (argv[0] of
    # `python -m daemonkit` is only the module's path).
    record = {"pid": pid, "create_time": create_time, "argv": argv, "exe": sys.executable,
              "started_at": time.time(), "version": version, "backend": backend}
    try:
        # No fsync: the record describes a live process, which a power loss ends anyway; readers treat
        # a torn or empty record as stale. fsync cost ~7 ms of every supervisor start here.
        write_json_atomic(path, record, fsync=False)
    except OSError as exc:
        from ..errors import DaemonkitError

        hint = f"remove the directory {path}" if isinstance(exc, IsADirectoryError) else \
            f"check that {path.parent} is writable and the disk is not full"
        raise DaemonkitError(f"cannot write the pid record {path}", exc.strerror or str(exc), hint) from None
    return record


def read_pid_record(path: Path) -> ReadResult:
    result = read_record(path, required=("pid", "create_time"))
    if result.data is not None:
        pid, ctime = result.data["pid"], result.data["create_time"]
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or not isinstance(ctime, (int, float)):
            return ReadResult(None, True, "pid/create_time have the wrong type")
    return result


def read_state(path: Path) -> ReadResult:
    result = read_record(path, required=("supervisor", "programs"))
    if result.data is not None and not isinstance(result.data.get("programs"), dict):
        return ReadResult(None, True, "'programs' is not an object")
    return result


def write_state(path: Path, state: dict[str, Any]) -> None:
    # No fsync: state is rewritten on every change and a lost snapshot is rebuilt by the next write;
    # fsync here would put disk latency on the supervisor's hot path.
    write_json_atomic(path, {"schema": STATE_SCHEMA, **state}, fsync=False)


def write_state_streamed(path: Path, head: dict[str, Any],
                         programs: Iterable[tuple[str, Callable[[], dict[str, Any]]]]) -> None:
    """The same file as ``write_state({**head, "programs": {name: entry(), ...}})``, byte for byte,
    built and written one program at a time.

    The supervisor rewrites its state after every burst of changes; with N programs the whole
    document (N snapshot dicts, then its text, then its bytes) used to exist at once each time, and
    the heap kept that peak: ~1 MiB at N = 500 (docs/benchmarks.md, Memory). ``programs`` must come
    sorted by name, as ``json.dumps(sort_keys=True)`` would order them."""
    write_chunks_atomic(path, _state_chunks({"schema": STATE_SCHEMA, **head}, programs), fsync=False)


def _state_chunks(head: dict[str, Any], programs: Iterable[tuple[str, Callable[[], dict[str, Any]]]]) -> Iterator[bytes]:
    encode = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
    sep = b"{"
    for key in sorted([*head, "programs"]):
        yield sep + encode(key).encode() + b":"
        sep = b","
        if key != "programs":
            yield encode(head[key]).encode()
            continue
        inner = b"{"
        for name, entry in programs:
            yield inner + encode(name).encode() + b":" + encode(entry()).encode()
            inner = b","
        yield b"{}" if inner == b"{" else b"}"
    yield b"}\n"
