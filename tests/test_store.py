"""Lock, records, events and rotation: real processes, corrupt files healed, never a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemonkit.errors import UnsafeFileError
from daemonkit.paths import Home
from daemonkit.store.atomic import write_json_atomic
from daemonkit.store.events import EventLog, read_events, tail_events
from daemonkit.store.lock import SupervisorLock, probe_lock
from daemonkit.store.records import read_pid_record, read_state, write_state, write_state_streamed
from daemonkit.store.rotating import RotatingFile, generations

HOLD_LOCK = """
import sys, time
sys.path.insert(0, {src!r})
from daemonkit.store.lock import SupervisorLock
lock = SupervisorLock(sys.argv[1])
print("got" if lock.acquire({{"pid": 1, "create_time": 2.0}}) else "busy", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(path: Path, seconds: float) -> subprocess.Popen[str]:
    src = str(Path(__file__).resolve().parent.parent / "src")
    return subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(src=src), str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)


def test_lock_contention_between_real_processes(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.lock"
    first = _holder(path, 30)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "got"
        second = _holder(path, 0)
        assert second.stdout is not None and second.stdout.readline().strip() == "busy"
        second.wait()
        probe = probe_lock(path)
        assert probe.held and probe.record == {"pid": 1, "create_time": 2.0}
        assert not SupervisorLock(path).acquire({"pid": 3})
    finally:
        first.kill()
        first.wait()
    # The OS dropped the lock with its holder, however it died.
    assert not probe_lock(path).held
    lock = SupervisorLock(path)
    assert lock.acquire({"pid": 4, "create_time": 5.0})
    lock.release()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_probe_lock_without_file(tmp_path: Path) -> None:
    probe = probe_lock(tmp_path / "nope.lock")
    assert not probe.held and probe.problem == "no lock file"


@pytest.mark.parametrize("content, problem", [
    (b"", "empty"),
    (b'{"pid": 12, "create_', "not valid JSON"),
    (b"\x00\xff\xfe binary", "not UTF-8"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"pid": "x", "create_time": 1}', "wrong type"),
    (b'{"create_time": 1}', "missing field"),
])
def test_corrupt_pid_record_is_reported_not_raised(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "supervisor.pid"
    path.write_bytes(content)
    result = read_pid_record(path)
    assert result.data is None and result.exists
    assert problem in result.problem


def test_state_record(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert read_state(path).exists is False
    write_json_atomic(path, {"supervisor": {}, "programs": {"a": {}}})
    assert read_state(path).data == {"supervisor": {}, "programs": {"a": {}}}
    path.write_text('{"supervisor": {}, "programs": []}')
    assert "not an object" in read_state(path).problem
    path.mkdir if False else None
    path.unlink()
    path.mkdir()
    assert "directory" in read_state(path).problem


@pytest.mark.parametrize("names", [[], ["a"], ["a", "b-2", "b.1", "ü"]])
def test_streamed_state_is_byte_for_byte_the_whole_document(tmp_path: Path, names: list[str]) -> None:
    """The supervisor writes state.json a program at a time (memory); readers must not see a difference."""
    head = {"name": "d", "supervisor": {"pid": 7, "state": "running", "create_time": 1.5}, "updated_at": 2.25}
    entries = {n: {"state": "running", "pid": i, "last_exit": {"code": None, "signal": "SIGKILL"}, "reason": "é \n\""}
               for i, n in enumerate(names)}
    whole, streamed = tmp_path / "whole.json", tmp_path / "streamed.json"
    write_state(whole, {**head, "programs": entries})
    write_state_streamed(streamed, head, ((n, lambda n=n: entries[n]) for n in sorted(names)))
    assert streamed.read_bytes() == whole.read_bytes()
    assert read_state(streamed).data == {"schema": 1, **head, "programs": entries}


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    for i in range(20):
        write_json_atomic(path, {"i": i})
    assert json.loads(path.read_text()) == {"i": 19}
    assert os.listdir(tmp_path) == ["x.json"]


def test_rotating_file_caps_size(tmp_path: Path) -> None:
    path = tmp_path / "p.out.log"
    log = RotatingFile(path, max_bytes=1024, backups=2)
    for i in range(500):
        log.write(f"line {i:04d} ".encode() * 3 + b"\n")
    log.close()
    files = generations(path, 2)
    assert [f.name for f in files] == ["p.out.log.2", "p.out.log.1", "p.out.log"]
    assert all(f.stat().st_size <= 1024 for f in files)
    assert not (tmp_path / "p.out.log.3").exists()
    assert b"line 0499" in path.read_bytes()  # the newest output is kept


def test_oversized_single_write_keeps_newest_part(tmp_path: Path) -> None:
    log = RotatingFile(tmp_path / "x.log", max_bytes=1024, backups=1)
    log.write(b"a" * 5000 + b"END")
    log.close()
    data = (tmp_path / "x.log").read_bytes()
    assert len(data) == 1024 and data.endswith(b"END")


def test_events_rotate_and_skip_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=2048, backups=2)
    for i in range(200):
        log.emit("spawn", "p", 100 + i, n=i)
    log.close()
    with open(path, "ab") as f:
        f.write(b'{"ts": 1, "event": "exi')  # a torn last line from a crash
    events = list(read_events(path, backups=2))
    assert events and events[-1]["detail"]["n"] == 199
    assert sum(f.stat().st_size for f in generations(path, 2)) <= 3 * 2048 + 64
    assert [e["detail"]["n"] for e in tail_events(path, 3)] == [197, 198, 199]


def test_home_is_private_and_refuses_foreign_or_linked(tmp_path: Path) -> None:
    home = Home(tmp_path / "h").ensure()
    assert home.path.stat().st_mode & 0o777 == 0o700
    os.chmod(home.path, 0o777)
    home.ensure()  # ours: tightened, not refused
    assert home.path.stat().st_mode & 0o777 == 0o700
    link = tmp_path / "link"
    link.symlink_to(home.path)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        Home(link).ensure()
    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        os.chown(foreign, 4321, 4321)
        with pytest.raises(UnsafeFileError, match="owned by uid 4321"):
            Home(foreign).ensure()


def test_long_home_paths_get_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    home = Home(deep)
    assert len(str(home.control_socket)) < 108
    assert home.control_socket != deep / "control.sock"
    assert Home(tmp_path / "short").control_socket == tmp_path / "short" / "control.sock"


def test_deferred_events_wait_for_the_loop_turn_but_not_for_a_whole_burst(tmp_path: Path) -> None:
    """The supervisor defers ledger writes to the end of the loop turn (a restart writes nothing before
    the new program runs); a burst bigger than DEFERRED_MAX is written as it comes, not held whole."""
    from daemonkit.store.events import DEFERRED_MAX

    path = tmp_path / "events.jsonl"
    scheduled: list[object] = []
    log = EventLog(path)
    log.defer_writes(scheduled.append)
    log.emit("exit", "p", 1)
    log.emit("spawn", "p", 2)
    assert not path.exists() or path.read_text() == ""  # a restart's records wait for the turn's end
    assert len(scheduled) == 1
    for i in range(DEFERRED_MAX):
        log.emit("spawn", f"q{i}", 10 + i)
    written = [e["event"] for e in read_events(path)]
    assert len(written) >= DEFERRED_MAX  # the burst did not wait
    log.flush()
    assert len(list(read_events(path))) == DEFERRED_MAX + 2
    log.close()
