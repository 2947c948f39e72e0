"""Corrupt and hostile files in a daemon's home: truncated, empty, binary, huge, a directory, a symlink
to somewhere else, owned by another user, world-writable. Every command answers with a clear message
(never a traceback); runtime records are healed by the next start; what cannot be trusted (the spec,
which decides what gets executed) is refused.

Anchor: systemd refuses unit files and PIDFile= paths it cannot trust ("Refusing to accept PID outside
of service control group" / unsafe ownership), and s6 keeps its state in a directory only the
supervisor writes. A supervisor must not follow a symlink planted where it writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

from .conftest import PY, QUICK, SLEEP, Sandbox, need_second_user

RUNTIME = ("supervisor.pid", "state.json", "supervisor.lock", "events.jsonl")


def _prepare(sandbox: Sandbox, name: str) -> Path:
    """A daemon that ran and stopped, so every runtime file exists with real content."""
    spec = sandbox.write_spec(name, {"app": {"argv": [PY, "-c", SLEEP], "restart": "always", "backoff": QUICK}})
    assert sandbox.cli("start", name, "--spec", str(spec)).returncode == 0
    pid = json.loads((sandbox.home(name) / "supervisor.pid").read_text())
    assert sandbox.cli("stop", name).returncode == 0
    home = sandbox.home(name)
    # Put back what a kill -9 would have left (stop removes the pid record).
    (home / "supervisor.pid").write_text(json.dumps(pid))
    return home


def _truncate(path: Path, outside: Path) -> None:
    data = path.read_bytes() if path.exists() and path.stat().st_size > 2 else b'{"pid": 1, "create_time'
    path.write_bytes(data[: max(1, len(data) // 2)])


def _empty(path: Path, outside: Path) -> None:
    path.write_bytes(b"")


def _binary(path: Path, outside: Path) -> None:
    path.write_bytes(bytes(range(256)) * 16 + b"\xff\xfe\x00")


def _huge(path: Path, outside: Path) -> None:
    # Sparse: costs no disk, but a reader that slurps it whole would take 200 MB of memory.
    with open(path, "wb") as f:
        f.truncate(200 * 1024 * 1024)


def _directory(path: Path, outside: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


def _symlink(path: Path, outside: Path) -> None:
    outside.write_text("precious: must not be read as a record, written or truncated\n")
    path.unlink(missing_ok=True)
    path.symlink_to(outside)


CORRUPTIONS: dict[str, Callable[[Path, Path], None]] = {
    "truncated": _truncate, "empty": _empty, "binary": _binary, "huge": _huge, "directory": _directory,
    "symlink": _symlink,
}


@pytest.mark.parametrize("how", [h for h in CORRUPTIONS if h != "directory"])
def test_corrupt_runtime_files_are_reported_then_healed(sandbox: Sandbox, how: str) -> None:
    """All four runtime files corrupted the same way at once (keeps the lane short)."""
    home = _prepare(sandbox, "c")
    outsides = {}
    for filename in RUNTIME:
        outsides[filename] = sandbox.work / f"precious-{filename}"
        CORRUPTIONS[how](home / filename, outsides[filename])
    before = {f: o.read_bytes() for f, o in outsides.items() if o.exists()}

    status = sandbox.cli("status", "c")
    assert status.returncode == 3, status.stdout + status.stderr
    assert "Traceback" not in status.stderr
    sandbox.status("c")  # --json parses

    start = sandbox.cli("start", "c")
    assert "Traceback" not in start.stderr, start.stderr
    assert start.returncode == 0, start.stdout + start.stderr
    report = sandbox.status("c")
    assert report["running"] and report["programs"][0]["state"] == "running", report
    assert sandbox.cli("stop", "c").returncode == 0
    sandbox.assert_nothing_running()
    # Never read, written or truncated through a planted link; every record is a real file again.
    assert {f: o.read_bytes() for f, o in outsides.items() if o.exists()} == before
    for filename in ("state.json", "events.jsonl", "supervisor.lock"):
        assert (home / filename).is_file() and not (home / filename).is_symlink(), filename
    assert json.loads((home / "state.json").read_text())["programs"]["app"]["state"] == "stopped"
    events = [e["event"] for e in sandbox.events("c")]
    assert events[-1] == "supervisor-stop" and "supervisor-start" in events


@pytest.mark.parametrize("filename", RUNTIME)
def test_directory_in_place_of_a_runtime_file(sandbox: Sandbox, filename: str) -> None:
    """Nothing to heal safely without deleting someone's directory: start works around it, or
    refuses with a message that names the file and says what to do."""
    home = _prepare(sandbox, "d")
    _directory(home / filename, sandbox.work / "unused")
    assert "Traceback" not in sandbox.cli("status", "d").stderr
    start = sandbox.cli("start", "d")
    assert "Traceback" not in start.stderr, start.stderr
    if start.returncode != 0:
        assert filename in start.stderr and "remove" in start.stderr, start.stderr
        sandbox.assert_nothing_running()
    else:
        assert sandbox.status("d")["running"]
        assert sandbox.cli("stop", "d").returncode == 0
        sandbox.assert_nothing_running()


@pytest.mark.parametrize("how", ["truncated", "empty", "binary", "huge", "directory"])
def test_corrupt_spec_is_refused_with_a_clear_error(sandbox: Sandbox, how: str) -> None:
    home = _prepare(sandbox, "s")
    CORRUPTIONS[how](home / "spec.toml", sandbox.work / "unused")
    for command in ("start", "status", "stop"):
        result = sandbox.cli(command, "s", timeout=60)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode in (1, 2, 4), (command, result.returncode, result.stderr)
        assert "spec.toml" in result.stderr, result.stderr
    sandbox.assert_nothing_running()


def test_symlinked_spec_is_refused(sandbox: Sandbox) -> None:
    home = _prepare(sandbox, "l")
    elsewhere = sandbox.work / "other.toml"
    elsewhere.write_text((home / "spec.toml").read_text())
    os.chmod(elsewhere, 0o666)  # what makes following it dangerous: anyone could edit what runs
    (home / "spec.toml").unlink()
    (home / "spec.toml").symlink_to(elsewhere)
    _start_is_refused(sandbox, "l", "spec.toml", "link")


def test_world_writable_spec_is_refused(sandbox: Sandbox) -> None:
    home = _prepare(sandbox, "w")
    os.chmod(home / "spec.toml", 0o666)
    _start_is_refused(sandbox, "w", "spec.toml", "writable", "chmod")  # chmod: says what to do


def test_spec_owned_by_another_user_is_refused(sandbox: Sandbox) -> None:
    uid, gid = need_second_user()
    home = _prepare(sandbox, "o")
    os.chown(home / "spec.toml", uid, gid)
    _start_is_refused(sandbox, "o", "spec.toml", "owned by")


def test_world_writable_home_is_tightened(sandbox: Sandbox) -> None:
    home = _prepare(sandbox, "h")
    os.chmod(home, 0o777)
    assert sandbox.cli("start", "h").returncode == 0
    assert home.stat().st_mode & 0o777 == 0o700
    assert sandbox.cli("stop", "h").returncode == 0


def test_home_owned_by_another_user_is_refused(sandbox: Sandbox) -> None:
    uid, gid = need_second_user()
    home = _prepare(sandbox, "x")
    os.chown(home, uid, gid)
    _start_is_refused(sandbox, "x", "owned by uid")


def _start_is_refused(sandbox: Sandbox, name: str, *needles: str) -> None:
    """``start`` fails cleanly (no traceback), says each of ``needles``, and nothing runs."""
    result = sandbox.cli("start", name)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    sandbox.assert_nothing_running()
