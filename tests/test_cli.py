"""The foundation end to end, through the CLI a user types: real supervisors, real programs."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from _supervisor_util import cli_status, program_of
from _wait import wait_for

PY = sys.executable
SLEEPER = [PY, "-c", "import time; print('up', flush=True); time.sleep(600)"]


def test_demo_end_to_end(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    result = cli("demo")
    assert result.returncode == 0, result.stderr
    assert "demo is up" in result.stdout and "daemonkit stop demo" in result.stdout
    status = cli_status(cli, "demo")
    assert status["schema"] == "daemonkit.status/1" and status["running"] and status["healthy"]
    gateway = program_of(status, "gateway")
    assert gateway["state"] == "ready" and gateway["ready"]
    spec_text = (Path(dk_env["DAEMONKIT_HOME"]) / "demo" / "spec.toml").read_text()
    port = int(spec_text.split('"--port",')[1].split('"')[1])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        health = json.loads(response.read())
    assert health["pid"] == gateway["pid"] and health["status"] == "ok"
    again = cli("demo")
    assert again.returncode == 0 and "already running" in again.stdout
    supervisor_pid = status["supervisor_pid"]
    stop = cli("stop", "demo")
    assert stop.returncode == 0 and "stopped demo" in stop.stdout
    assert not psutil.pid_exists(gateway["pid"]) or psutil.Process(gateway["pid"]).status() == psutil.STATUS_ZOMBIE
    assert not psutil.pid_exists(supervisor_pid) or psutil.Process(supervisor_pid).status() == psutil.STATUS_ZOMBIE
    assert cli("status", "demo").returncode == 3


def test_add_start_status_logs_list_remove(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    added = cli("add", "sleepy", "--", *SLEEPER)
    assert added.returncode == 0, added.stderr
    assert cli("add", "sleepy", "--", *SLEEPER).returncode == 1  # exists: refused without --force
    assert cli("status", "sleepy").returncode == 3
    started = cli("start", "sleepy")
    assert started.returncode == 0, started.stderr
    assert "started sleepy" in started.stdout
    status = cli_status(cli, "sleepy")
    assert program_of(status, "sleepy")["state"] == "running"
    listed = cli("list")
    assert "sleepy" in listed.stdout and "running" in listed.stdout
    logs = cli("logs", "sleepy")
    assert "sleepy| up" in logs.stdout
    events = cli("logs", "sleepy", "--events")
    assert "supervisor-start" in events.stdout and "spawn" in events.stdout
    removed = cli("remove", "sleepy")
    assert removed.returncode == 0, removed.stderr
    assert not (Path(dk_env["DAEMONKIT_HOME"]) / "sleepy").exists()
    pid = program_of(status, "sleepy")["pid"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_kill_9_program_is_restarted(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "k", "--restart", "always", "--", *SLEEPER).returncode == 0
    assert cli("start", "k").returncode == 0
    first = program_of(cli_status(cli, "k"), "k")["pid"]
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (p := program_of(cli_status(cli, "k"), "k"))["pid"] not in (None, first) and p)
    assert second["restarts"] == 1
    assert psutil.Process(second["pid"]).cmdline()[-1].startswith("import time")


def test_exit_code_contract(cli) -> None:  # type: ignore[no-untyped-def]
    # 78: config error -> no restart until an explicit start.
    assert cli("add", "cfg", "--", PY, "-c", "import time,sys; time.sleep(1.5); sys.exit(78)").returncode == 0
    assert cli("start", "cfg").returncode == 0
    prog = wait_for(lambda: (p := program_of(cli_status(cli, "cfg"), "cfg"))["state"] == "config-error" and p)
    time.sleep(0.5)
    prog = program_of(cli_status(cli, "cfg"), "cfg")
    assert prog["state"] == "config-error" and prog["restarts"] == 0 and prog["last_exit"]["code"] == 78
    # 0 under on-failure: done, not restarted.
    assert cli("add", "done", "--", PY, "-c", "import time; time.sleep(1.2)").returncode == 0
    assert cli("start", "done").returncode == 0
    prog = wait_for(lambda: (p := program_of(cli_status(cli, "done"), "done"))["state"] == "exited" and p)
    assert prog["last_exit"]["code"] == 0 and prog["restarts"] == 0 and "exited 0" in prog["reason"]
    # 0 under always: restarted.
    assert cli("add", "again", "--restart", "always", "--", PY, "-c", "import time; time.sleep(1.2)").returncode == 0
    assert cli("start", "again").returncode == 0
    wait_for(lambda: program_of(cli_status(cli, "again"), "again")["restarts"] >= 1)


def test_exit_75_restarts_without_backoff(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    counter = tmp_path / "count"
    code = (f"import sys, time, pathlib; p = pathlib.Path({str(counter)!r});"
            "n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1));"
            "time.sleep(1.2) if n == 0 else None; sys.exit(75) if n < 4 else time.sleep(600)")
    assert cli("add", "t75", "--", PY, "-c", code).returncode == 0
    assert cli("start", "t75").returncode == 0
    prog = wait_for(lambda: (p := program_of(cli_status(cli, "t75"), "t75"))["restarts"] >= 4 and p["state"] == "running" and p)
    assert prog["restarts"] == 4
    events = cli("logs", "t75", "--events", "-n", "100").stdout
    assert "backoff" not in events and "crashloop" not in events


def test_crash_loop_backs_off_then_crashloop(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    home = Path(dk_env["DAEMONKIT_HOME"]) / "crashy"
    assert cli("add", "crashy", "--restart", "always", "--", PY, "-c", "import sys; sys.exit(3)").returncode == 0
    spec = (home / "spec.toml").read_text()  # defaults are not written out: add the table
    spec += "[programs.crashy.backoff]\ncrashloop_restarts = 4\ncrashloop_cooldown = 1.0\n"
    (home / "spec.toml").write_text(spec)
    started = cli("start", "crashy")
    assert started.returncode == 1
    assert "crashy failed to start" in started.stderr
    assert cli_status(cli, "crashy")["running"] is False  # nothing half-started is left behind


def test_bad_input_gets_one_clear_line(cli, dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    unknown = cli("start", "nosuch")
    assert unknown.returncode == 4 and "no daemon named 'nosuch'" in unknown.stderr
    assert "daemonkit add" in unknown.stderr
    bad_name = cli("add", "../evil", "--", "true")
    assert bad_name.returncode == 2 and "letters, digits" in bad_name.stderr
    spec = tmp_path / "s.toml"
    spec.write_text('name = "x"\n[programs.a]\ncwd = "/"\n')
    missing_argv = cli("start", "--spec", str(spec))
    assert missing_argv.returncode == 2 and "programs.a.argv" in missing_argv.stderr
    assert cli("add", "ghost", "--", "/nonexistent/bin/daemon", "--flag").returncode == 0
    ghost = cli("start", "ghost")
    assert ghost.returncode == 1
    assert "executable not found" in ghost.stderr and "/nonexistent/bin/daemon" in ghost.stderr
    assert cli_status(cli, "ghost")["running"] is False
    usage = cli("start")
    assert usage.returncode == 1 and "no NAME given" in usage.stderr
    assert cli("frobnicate").returncode == 2


def test_second_start_while_running(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "one", "--", *SLEEPER).returncode == 0
    assert cli("start", "one").returncode == 0
    again = cli("start", "one")
    assert again.returncode == 1 and "already running" in again.stderr and "daemonkit restart one" in again.stderr
    # This test's home only: other test runs on the machine may have a daemon named "one" too.
    home = os.path.join(dk_env["DAEMONKIT_HOME"], "one")
    supervisors = [p for p in psutil.process_iter(["cmdline"]) if "supervise" in (p.info["cmdline"] or [])
                   and home in (p.info["cmdline"] or [])]
    assert len(supervisors) == 1


def test_port_in_use_fails_start_with_reason(cli) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("demo", "--port", str(port))
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "config-error" in result.stderr
    assert cli_status(cli, "demo")["running"] is False


def test_unwritable_home(cli, dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A regular file where the home's parent should be: mkdir fails even for root.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    env = dict(dk_env, DAEMONKIT_HOME=str(blocker / "sub"))
    # Not 'from conftest import run_cli': once tests/windows/conftest.py is collected, the module
    # named 'conftest' is that one, and the import fails in a full run.
    import subprocess

    result = subprocess.run([sys.executable, "-m", "daemonkit", "add", "x", "--", "true"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "cannot create daemon home" in result.stderr and "DAEMONKIT_HOME" in result.stderr


def _kill_supervisor_and_its_guard(pid: int) -> None:
    """SIGKILL the supervisor *and* its orphan-guard sentinel (as a crash of the whole service would),
    so its programs really are left behind. The supervisor is frozen first: it would fork a new
    sentinel when it sees the old one die."""
    supervisor = psutil.Process(pid)
    supervisor.suspend()
    for child in supervisor.children():
        if any("sentinel_main" in arg for arg in child.cmdline()):
            child.kill()
    supervisor.kill()


def test_supervisor_killed_then_stop_and_start_end_orphans(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "orph", "--", *SLEEPER).returncode == 0
    assert cli("start", "orph").returncode == 0
    status = cli_status(cli, "orph")
    supervisor, program = status["supervisor_pid"], program_of(status, "orph")["pid"]
    _kill_supervisor_and_its_guard(supervisor)
    wait_for(lambda: cli_status(cli, "orph")["running"] is False)
    after = cli_status(cli, "orph")
    assert program_of(after, "orph")["state"] == "orphaned"
    assert any("supervisor.pid is stale" in p for p in after["problems"])
    assert any("still running without a supervisor" in p for p in after["problems"])
    # A new supervisor ends the old program (by identity) before starting a fresh one.
    assert cli("start", "orph").returncode == 0
    assert not psutil.pid_exists(program) or psutil.Process(program).status() == psutil.STATUS_ZOMBIE
    new = program_of(cli_status(cli, "orph"), "orph")["pid"]
    assert new != program
    events = cli("logs", "orph", "--events", "-n", "50").stdout
    assert "orphan-ended" in events
    # Kill the supervisor again: now `stop` ends the leftover.
    _kill_supervisor_and_its_guard(cli_status(cli, "orph")["supervisor_pid"])
    wait_for(lambda: cli_status(cli, "orph")["running"] is False)
    stopped = cli("stop", "orph")
    assert stopped.returncode == 0 and "left behind by a dead supervisor" in stopped.stdout
    assert not psutil.pid_exists(new) or psutil.Process(new).status() == psutil.STATUS_ZOMBIE


def test_corrupt_files_are_reported_and_healed(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    home = Path(dk_env["DAEMONKIT_HOME"]) / "c"
    assert cli("add", "c", "--", *SLEEPER).returncode == 0
    home.joinpath("state.json").write_bytes(b"\x00\x01garbage")
    home.joinpath("supervisor.pid").write_text('{"pid": 1, "create_')
    home.joinpath("supervisor.lock").write_text("not json")
    status = cli("status", "c")
    assert status.returncode == 3
    assert "state.json unusable" in status.stdout and "supervisor.pid unusable" in status.stdout
    assert cli("start", "c").returncode == 0  # healed by the new supervisor
    live = cli_status(cli, "c")
    assert live["running"] and live["problems"] == []
    assert json.loads(home.joinpath("state.json").read_text())["programs"]["c"]["state"] == "running"


def test_graceful_stop_then_kill_after_grace(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    assert cli("add", "stubborn", "--stop-grace", "0.5", "--", PY, "-c", code).returncode == 0
    assert cli("start", "stubborn").returncode == 0
    pid = program_of(cli_status(cli, "stubborn"), "stubborn")["pid"]
    started = time.monotonic()
    assert cli("stop", "stubborn").returncode == 0
    assert time.monotonic() - started >= 0.5
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    events = cli("logs", "stubborn", "--events", "-n", "50").stdout
    assert "kill" in events


def test_start_and_stop_one_program(cli, dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "two.toml"
    spec.write_text(
        'name = "two"\n'
        f'[programs.a]\nargv = {json.dumps(SLEEPER)}\n'
        f'[programs.b]\nargv = {json.dumps(SLEEPER)}\nautostart = false\n')
    started = cli("start", "--spec", str(spec))
    assert started.returncode == 0, started.stderr
    status = cli_status(cli, "two")
    assert program_of(status, "a")["state"] == "running" and program_of(status, "b")["state"] == "stopped"
    assert cli("start", "two", "--program", "b").returncode == 0
    assert program_of(cli_status(cli, "two"), "b")["state"] == "running"
    assert cli("stop", "two", "--program", "a").returncode == 0
    status = cli_status(cli, "two")
    assert program_of(status, "a")["state"] == "stopped" and program_of(status, "b")["state"] == "running"
    wrong = cli("stop", "two", "--program", "zzz")
    assert wrong.returncode == 2 and "known: a, b" in wrong.stderr


def test_python_dash_m_and_version(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("daemonkit ")


def test_install_detached_when_no_manager_is_honest_and_uninstall_undoes(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    home = Path(dk_env["DAEMONKIT_HOME"]) / "inst"
    assert cli("add", "inst", "--", *SLEEPER).returncode == 0
    result = cli("install", "inst", "--backend", "detached")
    assert result.returncode == 0, result.stderr
    assert "cannot start inst at login" in result.stdout and "started inst (detached)" in result.stdout
    record = json.loads((home / "install.json").read_text())
    assert record["backend"] == "detached" and record["argv"][-1] == str(home)
    assert cli_status(cli, "inst")["running"]
    again = cli("install", "inst", "--backend", "detached")
    assert again.returncode == 0 and "started" not in again.stdout  # idempotent: no second supervisor
    wrong = cli("install", "inst", "--backend", "nosuch")
    assert wrong.returncode == 2 and "unknown backend" in wrong.stderr
    removed = cli("uninstall", "inst")
    assert removed.returncode == 0 and "stopped inst" in removed.stdout
    assert not (home / "install.json").exists() and (home / "spec.toml").exists()
    assert cli_status(cli, "inst")["running"] is False
    assert cli("uninstall", "inst").returncode == 4  # not installed: says so
