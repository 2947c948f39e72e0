"""Respawn after an update, for real: a real supervisor runs a small HTTP app whose code file is
rewritten on disk ("the update"); after the respawn the new code must answer /health, the app must have
been restarted exactly once, and the new instance must start only after the old one stopped."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

import _wait

from daemonkit import api
from daemonkit.demo import free_port
from daemonkit.paths import Home
from daemonkit.spec import Program, Readiness, Spec
from daemonkit.update import manager_restart, respawn_after_update

# The app does not answer (URLError, an OSError) while it restarts: that is "not yet".
wait_for = functools.partial(_wait.wait_for, ignore=(OSError,))

APP = '''
import json, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

VERSION = "{version}"
PORT, LEDGER, HOME = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def note(what):
    with open(LEDGER, "a") as f:
        f.write(json.dumps({{"event": what, "version": VERSION, "pid": os.getpid(), "t": time.time()}}) + "\\n")


def on_term(*_):
    note("stop")
    os._exit(0)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = {{"version": VERSION, "pid": os.getpid(), "flavor": os.environ.get("FLAVOR", "")}}
        if self.path == "/update":  # the app updating itself from inside the daemon
            from daemonkit.paths import Home
            from daemonkit.spec import load_spec
            from daemonkit.update import respawn_after_update
            home = Home(HOME)
            body["respawn"] = respawn_after_update(load_spec(home.spec_file), home).action
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


signal.signal(signal.SIGTERM, on_term)
server = HTTPServer(("127.0.0.1", PORT), Handler)  # a second instance could not bind: no overlap possible
note("start")
server.serve_forever()
'''


class App:
    def __init__(self, tmp: Path, name: str) -> None:
        self.port = free_port()
        self.code = tmp / "app.py"
        self.ledger = tmp / "ledger.jsonl"
        self.write(1)
        self.home = Home(api.home_for_spec(Spec(name, (Program("web", ("x",)),))).path)
        self.spec = Spec(name, (Program(
            "web", (sys.executable, str(self.code), str(self.port), str(self.ledger), str(self.home.path)),
            stop_grace=5.0, ready=Readiness("http", f"http://127.0.0.1:{self.port}/health", 20.0)),))

    def write(self, version: int) -> None:
        self.code.write_text(textwrap.dedent(APP.format(version=version)))

    def get(self, path: str = "/health", timeout: float = 5.0) -> dict[str, Any]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
            return json.loads(response.read())

    def events(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines()]

    def supervisor_pid(self) -> int | None:
        return api.status_of(self.spec, self.home).supervisor_pid

    def respawn_log(self) -> str:
        path = self.home.logs_dir / "respawn.log"
        return path.read_text() if path.exists() else ""




def assert_restarted_once_without_overlap(app: App) -> None:
    events = [(e["event"], e["version"]) for e in app.events()]
    assert events == [("start", "1"), ("stop", "1"), ("start", "2")], events
    old_stop, new_start = app.events()[1]["t"], app.events()[2]["t"]
    assert new_start >= old_stop, "the new instance started before the old one stopped"


@pytest.fixture
def app(dk_env: dict[str, str], tmp_path: Path) -> App:
    return App(tmp_path, "updatable")


def test_updater_outside_the_daemon_respawns_in_process(app: App) -> None:
    started = api.start(app.spec, app.home)
    assert app.get()["version"] == "1"
    app.write(2)  # the update replaces the code on disk; the running instance still answers 1
    assert app.get()["version"] == "1"
    # The new version also changes the spec (an environment variable); the respawn must use it.
    new_spec = app.spec.replace(programs=(app.spec.programs[0].replace(env={"FLAVOR": "new"}),))
    result = respawn_after_update(new_spec, app.home)
    assert result.action == "restarted", result
    assert result.old_supervisor_pid == started.supervisor_pid
    assert result.new_supervisor_pid not in (None, started.supervisor_pid)
    assert app.get()["version"] == "2" and app.get()["flavor"] == "new"
    assert not psutil.pid_exists(started.supervisor_pid) or \
        psutil.Process(started.supervisor_pid).status() == psutil.STATUS_ZOMBIE
    assert_restarted_once_without_overlap(app)


def test_the_app_updates_itself_from_inside_the_daemon(app: App) -> None:
    started = api.start(app.spec, app.home)
    app.write(2)
    answer = app.get("/update")  # the program asks for its own respawn: a watcher must do it
    assert answer == {"version": "1", "pid": answer["pid"], "flavor": "", "respawn": "scheduled"}
    wait_for(lambda: app.get()["version"] == "2", what="the new code answering")
    wait_for(lambda: "restarted" in app.respawn_log(), what="the watcher's log")
    assert app.supervisor_pid() not in (None, started.supervisor_pid)
    assert_restarted_once_without_overlap(app)
    assert "restarted onto the new code" in app.respawn_log()


def test_restart_after_exit_waits_for_the_updater(app: App, cli: Callable[..., Any]) -> None:
    started = api.start(app.spec, app.home)
    updater = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    try:
        result = cli("restart", app.spec.name, "--after-exit", str(updater.pid))
        assert result.returncode == 0, result.stderr
        assert "a watcher (pid" in result.stdout and "after that process exits" in result.stdout
        app.write(2)  # the updater replaces the files while it still runs
        assert app.supervisor_pid() == started.supervisor_pid and app.get()["version"] == "1"
    finally:
        updater.wait()
    wait_for(lambda: app.get()["version"] == "2", what="the new code answering")
    wait_for(lambda: "restarted" in app.respawn_log(), what="the watcher's log")  # written once start returns
    assert_restarted_once_without_overlap(app)
    assert "waiting up to" in app.respawn_log()


def test_a_daemon_stopped_on_purpose_is_not_restarted(app: App) -> None:
    api.start(app.spec, app.home)
    updater = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.0)"])
    try:
        result = respawn_after_update(app.spec, app.home, after_exit=updater.pid)
        assert result.action == "scheduled"
        api.stop(app.spec, app.home)  # the user stops it while the update runs
    finally:
        updater.wait()
    wait_for(lambda: "not restarting it" in app.respawn_log(), what="the watcher giving up")
    assert not api.status_of(app.spec, app.home).running
    assert [e["event"] for e in app.events()] == ["start", "stop"]


def test_a_stopped_daemon_is_left_alone(app: App) -> None:
    result = respawn_after_update(app.spec, app.home)
    assert result.action == "not-running" and "next start uses the new code" in result.detail
    assert app.events() == [] and not api.status_of(app.spec, app.home).running


def test_an_updater_that_never_exits_leaves_the_daemon_as_it_is(app: App) -> None:
    started = api.start(app.spec, app.home)
    updater = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        result = respawn_after_update(app.spec, app.home, after_exit=updater.pid, timeout=0.5)
        assert result.action == "scheduled"
        wait_for(lambda: "did not exit within" in app.respawn_log(), what="the watcher's bounded wait")
    finally:
        updater.kill()
        updater.wait()
    assert app.supervisor_pid() == started.supervisor_pid
    assert [e["event"] for e in app.events()] == ["start"]


def test_detach_false_from_inside_is_refused(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    import daemonkit.update as update

    api.start(app.spec, app.home)
    monkeypatch.setattr(update, "caller_inside", lambda spec, supervisor: True)
    with pytest.raises(update.DaemonkitError, match="runs inside the daemon"):
        respawn_after_update(app.spec, app.home, detach=False)


def test_service_managers_get_one_restart_job(daemonkit_sandbox) -> None:  # type: ignore[no-untyped-def]
    from daemonkit.backends.launchd import LaunchdBackend
    from daemonkit.backends.systemd import SystemdBackend

    spec = Spec("gw", (Program("p", ("x",)),))
    home = Home(daemonkit_sandbox.daemonkit_home / "gw")
    manager_restart(SystemdBackend(daemonkit_sandbox.context()), spec, home, block=False)
    manager_restart(LaunchdBackend(daemonkit_sandbox.context(), uid=501), spec, home)
    calls = daemonkit_sandbox.commands
    assert calls[0] == ("systemctl", "--user", "restart", "--no-block", "daemonkit-gw.service")
    assert calls[1][:3] == ("launchctl", "kickstart", "-k") and calls[1][3].startswith("gui/501/")
    daemonkit_sandbox.runner.responses[("systemctl",)] = (1, "", "Unit daemonkit-gw.service not found.")
    with pytest.raises(api.DaemonkitError, match="systemd could not restart daemonkit-gw.service"):
        manager_restart(SystemdBackend(daemonkit_sandbox.context()), spec, home)

