"""daemonkit start / status / stop of a real program, end to end under Windows CPython: the supervisor
spawned detached (hidden console, breakaway), its program in a kill-on-close job, exits seen through
process handles, the control channel over a named pipe, stop through the program's stop event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from .helpers import wait_until
from daemonkit.proc import winjob

WORKER = """
import os, sys, time
from daemonkit.worker import wait_for_stop
print("worker up", os.getpid(), flush=True)
marker = sys.argv[1]
if wait_for_stop():
    open(marker, "a").write(f"drained {os.getpid()}\\n")
"""


def _cli(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemonkit", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAEMONKIT_HOME", str(tmp_path / "dk"))
    env = dict(os.environ)
    yield env
    from daemonkit.store.lock import probe_lock

    if probe_lock(tmp_path / "dk" / "web" / "supervisor.lock").held:
        _cli("stop", "web", env=env)  # a failed test leaves nothing running


def _status(env: dict[str, str]) -> dict:
    """In this process, through the same api and control pipe the CLI uses (a CLI start costs ~0.5 s)."""
    from daemonkit import api

    return api.status("web").to_json()


def test_start_status_restart_stop_end_to_end(tmp_path, env):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER, encoding="utf-8")
    marker = tmp_path / "drained.txt"
    added = _cli("add", "web", "--restart", "always", "--", sys.executable, str(worker), str(marker), env=env)
    assert added.returncode == 0, added.stderr
    started = _cli("start", "web", env=env)
    assert started.returncode == 0, started.stdout + started.stderr

    status = json.loads(_cli("status", "web", "--json", env=env).stdout)
    assert status["running"] and status["source"] == "live"
    (program,) = status["programs"]
    assert program["state"] == "running"
    first = program["pid"]
    supervisor = status["supervisor_pid"]
    assert winjob.is_running(first) and winjob.is_running(supervisor)
    assert winjob.process_in_job(first), "the program runs in the supervisor's job object"
    assert wait_until(lambda: "worker up" in (Path(env["DAEMONKIT_HOME"]) / "web" / "logs" / "web.out.log")
                      .read_text(errors="replace") if (Path(env["DAEMONKIT_HOME"]) / "web" / "logs" / "web.out.log").exists() else False, 20)

    deep = _cli("status", "web", "--deep", env=env)
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert "PASS  platform notes: Windows" in deep.stdout

    psutil.Process(first).kill()  # TerminateProcess: a crash
    assert wait_until(lambda: _status(env)["programs"][0]["pid"] not in (None, first), 30), "not restarted"
    second = _status(env)["programs"][0]
    assert second["restarts"] >= 1 and winjob.is_running(second["pid"])

    stopped = _cli("stop", "web", env=env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert wait_until(lambda: not winjob.is_running(second["pid"]), 20)
    assert wait_until(lambda: not winjob.is_running(supervisor), 20)
    # The program honoured the stop event (a graceful drain), not a TerminateJobObject after the grace.
    assert marker.read_text().strip() == f"drained {second['pid']}"
    after = _status(env)
    assert not after["running"] and after["programs"][0]["state"] == "stopped"
    assert not (Path(env["DAEMONKIT_HOME"]) / "web" / "control.sock").exists()


def test_killed_supervisor_takes_its_program_and_stop_cleans_up(tmp_path, env):
    added = _cli("add", "web", "--", sys.executable, "-c", "import time; time.sleep(120)", env=env)
    assert added.returncode == 0, added.stderr
    assert _cli("start", "web", env=env).returncode == 0
    status = _status(env)
    program, supervisor = status["programs"][0]["pid"], status["supervisor_pid"]
    psutil.Process(supervisor).kill()
    assert wait_until(lambda: not winjob.is_running(program), 20), "the program outlived its killed supervisor"
    stopped = _cli("stop", "web", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "did not exit cleanly" in stopped.stdout + stopped.stderr
    assert not _status(env)["running"]


def test_a_program_deaf_to_its_stop_event_is_ended_with_its_job_after_the_grace(tmp_path, env):
    from daemonkit import api
    from daemonkit.spec import Program, Spec

    grand = tmp_path / "grand.pid"
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
            f" open({str(grand)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    spec = Spec(name="web", programs=(Program("web", (sys.executable, "-c", code), stop_grace=1.0),))
    home = api.save_spec(spec)
    api.start(spec, home)
    assert wait_until(lambda: grand.exists() and grand.read_text(), 30)
    child, grandchild = api.status_of(spec, home).programs[0].pid, int(grand.read_text())
    result = api.stop(spec, home)
    assert result.was_running
    assert not winjob.is_running(child) and wait_until(lambda: not winjob.is_running(grandchild), 10)
    events = [json.loads(line) for line in home.events_file.read_text().splitlines()]
    kinds = [e["event"] for e in events if e.get("program") == "web"]
    assert "stop" in kinds and "kill" in kinds, kinds  # asked first, then the job ended after 1 s


BREAKAWAY_PARENT = """
import os, subprocess, sys
from daemonkit.proc import winjob
job = winjob.Job(kill_on_close=True, breakaway_ok=False)  # like a terminal or Electron app's job
job.assign_pid(os.getpid())
cli = lambda *a: subprocess.run([sys.executable, "-m", "daemonkit", *a], capture_output=True, text=True)
started = cli("start", "web")
deep = cli("status", "web", "--deep")
print(started.returncode, started.stdout + started.stderr)
print("=====")
print(deep.stdout)
"""


def test_denied_breakaway_is_recorded_and_shown_by_status_deep(tmp_path, env):
    """Started from inside a job that forbids breakaway: the supervisor starts anyway (inside the job),
    the denial is an event, ``status --deep`` warns, and the warning is right: it dies with the job."""
    assert _cli("add", "web", "--", sys.executable, "-c", "import time; time.sleep(120)", env=env).returncode == 0
    parent = tmp_path / "parent.py"
    parent.write_text(BREAKAWAY_PARENT, encoding="utf-8")
    out = subprocess.run([sys.executable, str(parent)], capture_output=True, text=True, env=env, timeout=120)
    started, deep = out.stdout.split("=====", 1)
    assert started.startswith("0 "), out.stdout + out.stderr
    assert "breakaway" in started  # the start command says so
    assert "WARN  platform notes" in deep and "breakaway was denied" in deep, deep
    events = (Path(env["DAEMONKIT_HOME"]) / "web" / "events.jsonl").read_text()
    assert '"breakaway-denied"' in events
    from daemonkit.store.lock import probe_lock

    # The parent has exited, its job closed, and the supervisor inside it was ended with it.
    assert wait_until(lambda: not probe_lock(Path(env["DAEMONKIT_HOME"]) / "web" / "supervisor.lock").held, 20)



def test_notify_readiness_is_refused_on_windows_with_what_to_use_instead():
    """sd_notify needs Unix datagram sockets: a spec asking for it fails to load, naming the key and
    the alternatives, instead of a supervisor that dies creating the socket."""
    from daemonkit.spec import SpecError, loads_spec

    text = 'name = "w"\n[programs.p]\nargv = ["python.exe"]\n[programs.p.ready]\nnotify = true\n'
    with pytest.raises(SpecError) as caught:
        loads_spec(text, source="w.toml")
    message = str(caught.value)
    assert "programs.p.ready.notify" in message and "not available on Windows" in message, message
    assert "ready.tcp" in str(getattr(caught.value, "hint", "")) + message
    # The same spec with a file check loads.
    assert loads_spec(text.replace("notify = true", 'file = "C:/ready"'), source="w.toml").programs[0].ready.kind == "file"
