"""Kill -9 at every step: of the CLI in the middle of start / install / uninstall / stop, and of the
supervisor while its programs run, while one is in backoff, and while it is stopping. The next command
must complete or undo the step; no program may outlive its supervisor unnoticed; never two of anything.

Anchors: systemd's KillMode=control-group (nothing of a unit survives its stop), s6-supervise's
guarantee that a service is either up under its supervisor or down, and the SCM's rule that a service
process that dies is seen (recovery actions) rather than silently lost.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from .conftest import PY, SLEEP, Sandbox, wait_for

TERM_IGNORER = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('up', flush=True); time.sleep(3600)")


def _ready_late(flag: Path) -> str:
    # Ready after 0.8 s: long enough for the CLI to be killed while it waits for readiness.
    return (f"import time, pathlib; time.sleep(0.8); pathlib.Path({str(flag)!r}).touch(); "
            "print('ready', flush=True); time.sleep(3600)")


def _late_spec(sandbox: Sandbox, name: str) -> Path:
    flag = sandbox.work / f"{name}.ready"
    return sandbox.write_spec(name, {"app": {"argv": [PY, "-c", _ready_late(flag)], "restart": "always",
                                             "ready": {"file": str(flag), "timeout": 30.0}}})


def _kill_cli_after(sandbox: Sandbox, delay: float, *args: str) -> None:
    proc = sandbox.popen(*args)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def _settled_one(sandbox: Sandbox, name: str) -> None:
    """Exactly one supervisor and one program, and status agrees with the process table."""
    wait_for(lambda: len(sandbox.supervisors()) == 1 and len(sandbox.programs()) == 1, 20,
             what="one supervisor and one program")
    status = sandbox.status(name)
    assert status["running"] and status["supervisor_pid"] == sandbox.supervisors()[0].pid
    assert status["programs"][0]["pid"] == sandbox.programs()[0].pid


@pytest.mark.parametrize("delay", [0.15, 0.5, 1.0])
def test_cli_killed_mid_start(sandbox: Sandbox, delay: float) -> None:
    spec = _late_spec(sandbox, "s")
    _kill_cli_after(sandbox, delay, "start", "s", "--spec", str(spec))
    # The same command again completes the step: it starts it, or finds it already running.
    again = sandbox.cli("start", "s", "--spec", str(spec))
    assert again.returncode == 0 or "already running" in again.stderr, again.stderr
    _settled_one(sandbox, "s")
    assert sandbox.cli("stop", "s").returncode == 0
    sandbox.assert_nothing_running()


@pytest.mark.parametrize("delay", [0.15, 0.6])
def test_cli_killed_mid_install_then_uninstall(sandbox: Sandbox, delay: float) -> None:
    spec = _late_spec(sandbox, "i")
    before = _inventory(sandbox.root)
    _kill_cli_after(sandbox, delay, "install", "i", "--spec", str(spec), "--backend", "detached")
    again = sandbox.cli("install", "i", "--spec", str(spec), "--backend", "detached")
    assert again.returncode == 0, again.stderr
    _settled_one(sandbox, "i")
    # And an uninstall killed half-way is completed by the next one.
    _kill_cli_after(sandbox, 0.2, "uninstall", "i")
    last = sandbox.cli("uninstall", "i")
    assert last.returncode in (0, 4), last.stderr  # 4: the killed one had finished
    sandbox.assert_nothing_running()
    assert not (sandbox.home("i") / "install.json").exists(), (last.stdout, last.stderr)
    removed = sandbox.cli("remove", "i")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert _inventory(sandbox.root) == before


def test_cli_killed_mid_stop(sandbox: Sandbox) -> None:
    spec = sandbox.write_spec("t", {"app": {"argv": [PY, "-c", TERM_IGNORER], "restart": "always",
                                            "stop_grace": 2.0}})
    assert sandbox.cli("start", "t", "--spec", str(spec)).returncode == 0
    _settled_one(sandbox, "t")
    _kill_cli_after(sandbox, 0.4, "stop", "t")  # mid-grace: the program is still there
    done = sandbox.cli("stop", "t")
    assert done.returncode == 0, done.stderr
    sandbox.assert_nothing_running()
    assert not sandbox.status("t")["running"]


def _kill_supervisor(sandbox: Sandbox) -> int:
    (supervisor,) = sandbox.supervisors()
    supervisor.send_signal(signal.SIGKILL)
    wait_for(lambda: not sandbox.supervisors(), 10, what="the supervisor is gone")
    return supervisor.pid


def _assert_not_unnoticed(sandbox: Sandbox, name: str, old_pids: set[int]) -> None:
    """After the supervisor's death a program is either ended with it, or reported as orphaned."""
    time.sleep(0.5)
    left = {p.pid for p in sandbox.programs()} & old_pids
    status = sandbox.status(name)
    assert not status["running"]
    if left:
        orphaned = {p["pid"] for p in status["programs"] if p["state"] == "orphaned"}
        assert left <= orphaned, (left, status)
        assert any("without a supervisor" in problem for problem in status["problems"]), status


def test_supervisor_killed_while_programs_run(sandbox: Sandbox) -> None:
    sandbox.start_spec("r", {"a": {"argv": [PY, "-c", SLEEP], "restart": "always"},
                             "b": {"argv": [PY, "-c", SLEEP], "restart": "always"}})
    old = {p.pid for p in sandbox.programs()}
    assert len(old) == 2
    _kill_supervisor(sandbox)
    _assert_not_unnoticed(sandbox, "r", old)
    again = sandbox.cli("start", "r")
    assert again.returncode == 0, again.stderr
    wait_for(lambda: len(sandbox.programs()) == 2 and len(sandbox.supervisors()) == 1, 20)
    assert not ({p.pid for p in sandbox.programs()} & old), "an old program survived into the new supervisor"
    assert sandbox.cli("stop", "r").returncode == 0
    sandbox.assert_nothing_running()


def test_supervisor_killed_while_a_program_is_in_backoff(sandbox: Sandbox) -> None:
    # Healthy until the flag exists, then it dies at once: start succeeds, a later death backs off.
    flag = sandbox.work / "crash-now"
    crasher = (f"import os, sys, time; time.sleep(0.1); os.path.exists({str(flag)!r}) and sys.exit(1); "
               "time.sleep(3600)")
    sandbox.start_spec("b", {"ok": {"argv": [PY, "-c", SLEEP], "restart": "always"},
                             "bad": {"argv": [PY, "-c", crasher], "restart": "always",
                                     "backoff": {"initial": 3.0, "max": 3.0, "min_uptime": 1.0}}})
    flag.touch()
    os.kill(sandbox.program("b", "bad")["pid"], signal.SIGKILL)
    wait_for(lambda: sandbox.program("b", "bad")["state"] == "backoff", 20, what="bad in backoff")
    old = {p.pid for p in sandbox.programs()}
    _kill_supervisor(sandbox)
    _assert_not_unnoticed(sandbox, "b", old)
    # No timer of the dead supervisor fires later: nothing restarts "bad" behind our back.
    time.sleep(3.5)
    assert not sandbox.supervisors()
    assert not sandbox.programs("bad")
    assert sandbox.cli("stop", "b").returncode == 0
    sandbox.assert_nothing_running()


def test_supervisor_killed_while_stopping(sandbox: Sandbox) -> None:
    sandbox.start_spec("k", {"stubborn": {"argv": [PY, "-c", TERM_IGNORER], "restart": "always",
                                          "stop_grace": 3.0}})
    (program,) = sandbox.programs()
    stopper = sandbox.popen("stop", "k")
    wait_for(lambda: sandbox.program("k", "stubborn")["state"] == "stopping", 10, what="stopping")
    _kill_supervisor(sandbox)
    out, err = stopper.communicate(timeout=60)
    # The stop that was in progress finishes the job itself: the program is ended by identity.
    assert stopper.returncode == 0, err
    sandbox.assert_nothing_running()
    assert not program.is_running() or program.status() == psutil.STATUS_ZOMBIE
    assert sandbox.cli("stop", "k").returncode == 0


def _inventory(root: Path) -> dict[str, int]:
    """Every file under ``root`` (and in the short socket dir, if any) with its mode."""
    files: dict[str, int] = {}
    if root.exists():
        for dirpath, dirnames, filenames in os.walk(root):
            for entry in dirnames + filenames:
                full = Path(dirpath) / entry
                files[str(full.relative_to(root))] = full.lstat().st_mode
    return files
