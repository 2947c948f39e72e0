"""Pid reuse: records that point at a live, unrelated process (its pid, a different create time) must
never get it signalled; they are reported as stale and replaced.

Anchor: systemd tracks services by cgroup and pidfd rather than PID files for exactly this reason, and
warns that a PIDFile= read from an unsafe place is not trusted; s6 never uses pid files at all (the
supervisor is the parent). daemonkit's stand-in is (pid, create time), re-checked before any signal.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from .conftest import PY, SLEEP, Sandbox


@pytest.fixture
def bystander() -> Iterator[psutil.Process]:
    """An unrelated process (not of the sandbox) that a pid-reuse bug would kill."""
    proc = subprocess.Popen([PY, "-c", "import time; time.sleep(600)"], start_new_session=True)
    yield psutil.Process(proc.pid)
    proc.kill()
    proc.wait()


def _forge(home: Path, victim: psutil.Process) -> None:
    """Records left by a dead supervisor whose pids now belong to ``victim`` (older create time)."""
    wrong = victim.create_time() - 3600.0
    home.mkdir(parents=True, exist_ok=True)
    (home / "supervisor.pid").write_text(json.dumps({"pid": victim.pid, "create_time": wrong, "argv": [],
                                                     "started_at": wrong, "version": "0"}))
    state = {"schema": 1, "name": home.name,
             "supervisor": {"pid": victim.pid, "create_time": wrong, "state": "running"},
             "programs": {"app": {"state": "running", "pid": victim.pid, "create_time": wrong, "pgid": victim.pid}}}
    (home / "state.json").write_text(json.dumps(state))
    (home / "supervisor.lock").write_text(json.dumps({"pid": victim.pid, "create_time": wrong}) + "\n")


def test_recycled_pids_are_never_signalled_and_are_healed(sandbox: Sandbox, bystander: psutil.Process) -> None:
    spec = sandbox.write_spec("reuse", {"app": {"argv": [PY, "-c", SLEEP], "restart": "always"}})
    assert sandbox.cli("add", "reuse", "--", PY, "-c", SLEEP).returncode == 0
    home = sandbox.home("reuse")
    _forge(home, bystander)

    status = sandbox.cli("status", "reuse")
    assert status.returncode == 3, status.stdout + status.stderr
    report = sandbox.status("reuse")
    assert any("stale" in p and "recycled" in p for p in report["problems"]), report["problems"]
    assert not any(p["state"] == "orphaned" for p in report["programs"]), report
    assert all(p["pid"] != bystander.pid for p in report["programs"]), report

    stop = sandbox.cli("stop", "reuse")
    assert stop.returncode == 0, stop.stderr
    assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE

    start = sandbox.cli("start", "reuse", "--spec", str(spec))
    assert start.returncode == 0, start.stderr
    assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE
    # Healed: the records now describe the real supervisor and program.
    (supervisor,) = sandbox.supervisors()
    pid_record = json.loads((home / "supervisor.pid").read_text())
    assert pid_record["pid"] == supervisor.pid
    assert abs(pid_record["create_time"] - supervisor.create_time()) < 0.05
    report = sandbox.status("reuse")
    assert report["running"] and not report["problems"], report
    assert report["programs"][0]["pid"] == sandbox.programs()[0].pid
    events = [e["event"] for e in sandbox.events("reuse")]
    assert "orphan-ended" not in events  # the bystander was recognised as somebody else
    assert sandbox.cli("stop", "reuse").returncode == 0
    assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE
    sandbox.assert_nothing_running()


def test_program_pid_recycled_while_supervisor_was_down(sandbox: Sandbox, bystander: psutil.Process) -> None:
    """The real sequence: a supervisor is killed, its program exits, the pid is taken by another process."""
    sandbox.start_spec("cycle", {"app": {"argv": [PY, "-c", SLEEP], "restart": "always"}})
    home = sandbox.home("cycle")
    (supervisor,) = sandbox.supervisors()
    supervisor.kill()
    supervisor.wait(10)
    for program in sandbox.programs():
        program.kill()
    time.sleep(0.2)
    # Rewrite the dead program's record to the bystander's pid (what a recycled pid looks like).
    state = json.loads((home / "state.json").read_text())
    for entry in state["programs"].values():
        entry["pid"] = bystander.pid
    (home / "state.json").write_text(json.dumps(state))
    assert sandbox.cli("stop", "cycle").returncode == 0
    assert sandbox.cli("start", "cycle").returncode == 0
    assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE
    assert sandbox.cli("stop", "cycle").returncode == 0
    assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE
