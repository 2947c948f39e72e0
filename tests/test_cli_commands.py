"""The CLI commands not covered by test_cli.py's scenarios: restart, run (foreground), list/status JSON
and the exit-code table, with real supervisors and programs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _supervisor_util import cli_status, gone, program_of
from _wait import wait_for

PY = sys.executable
SLEEPER = [PY, "-c", "import time; print('up', flush=True); time.sleep(600)"]
STATUS_KEYS = {"schema", "version", "name", "home", "running", "source", "supervisor_pid", "supervisor_started_at",
               "backend", "programs", "problems", "healthy"}
PROGRAM_KEYS = {"name", "state", "reason", "pid", "ready", "restarts", "since", "last_exit", "status_text"}


def _two_programs(tmp_path: Path) -> Path:
    spec = tmp_path / "pair.toml"
    spec.write_text(f'name = "pair"\n[programs.a]\nargv = {json.dumps(SLEEPER)}\n'
                    f'[programs.b]\nargv = {json.dumps(SLEEPER)}\n')
    return spec


def test_restart_the_daemon_and_one_program(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("start", "--spec", str(_two_programs(tmp_path))).returncode == 0
    before = cli_status(cli, "pair")
    one = cli("restart", "pair", "--program", "a")
    assert one.returncode == 0 and "restarted a" in one.stdout
    after_one = cli_status(cli, "pair")
    assert after_one["supervisor_pid"] == before["supervisor_pid"]
    assert program_of(after_one, "a")["pid"] != program_of(before, "a")["pid"] and gone(program_of(before, "a")["pid"])
    assert program_of(after_one, "b")["pid"] == program_of(before, "b")["pid"]
    whole = cli("restart", "pair")
    assert whole.returncode == 0 and "restarted pair" in whole.stdout
    after = cli_status(cli, "pair")
    assert after["running"] and after["supervisor_pid"] != before["supervisor_pid"]
    assert gone(before["supervisor_pid"]) and gone(program_of(after_one, "b")["pid"])
    assert all(p["state"] == "running" for p in after["programs"])


def test_restart_of_a_stopped_daemon_starts_it(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "cold", "--", *SLEEPER).returncode == 0
    result = cli("restart", "cold")
    assert result.returncode == 0, result.stderr
    assert cli_status(cli, "cold")["running"]


def test_run_in_the_foreground_until_interrupted(dk_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        # Not 'from conftest import run_cli': in a full run 'conftest' is tests/windows/conftest.py.
        return subprocess.run([PY, "-m", "daemonkit", *args], capture_output=True, text=True, env=env, timeout=60)

    assert run_cli("add", "fg", "--", *SLEEPER, env=dk_env).returncode == 0
    proc = subprocess.Popen([PY, "-m", "daemonkit", "run", "fg"], env=dk_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        status = wait_for(lambda: (s := json.loads(run_cli("status", "fg", "--json", env=dk_env).stdout))["running"]
                           and program_of(s, "fg")["state"] == "running" and s)
        assert status["supervisor_pid"] == proc.pid and status["backend"] == "foreground"
        program = program_of(status, "fg")["pid"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "running fg in the foreground" in err
    assert gone(program)
    assert run_cli("status", "fg", env=dk_env).returncode == 3


def test_status_and_list_json_are_stable(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "js", "--", *SLEEPER).returncode == 0
    stopped = cli_status(cli, "js")
    assert set(stopped) == STATUS_KEYS and stopped["schema"] == "daemonkit.status/1"
    assert stopped["running"] is False and stopped["source"] == "none"
    assert cli("start", "js").returncode == 0
    live = cli_status(cli, "js")
    assert set(live) == STATUS_KEYS and live["running"] and live["source"] == "live" and live["healthy"]
    assert set(program_of(live, "js")) == PROGRAM_KEYS
    listed = cli("list", "--json")
    assert listed.returncode == 0
    entries = json.loads(listed.stdout)
    assert [e["name"] for e in entries] == ["js"] and set(entries[0]) == STATUS_KEYS
    assert entries[0]["home"] == str(Path(dk_env["DAEMONKIT_HOME"]) / "js")


def test_exit_codes(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("status", "ghost").returncode == 4  # not installed
    assert cli("add", "ec", "--", *SLEEPER).returncode == 0
    assert cli("status", "ec").returncode == 3  # not running
    assert cli("start", "ec").returncode == 0
    assert cli("status", "ec").returncode == 0
    assert cli("stop", "ec", "--bogus-flag").returncode == 2  # usage
    assert cli().returncode == 2  # no command: help, usage exit
    assert cli("logs", "ec", "-n", "5").returncode == 0
    assert cli("stop", "ec").returncode == 0


@pytest.mark.parametrize("name", ["my bot", "x@y", "ünï", "a/b", "_x", "dot.", "n" * 65])
def test_odd_daemon_names_are_refused_with_one_line(cli, name: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("add", name, "--", *SLEEPER)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "letters, digits" in result.stderr and "pick a name like" in result.stderr


def test_help_lists_every_command_and_the_exit_codes(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--help")
    assert result.returncode == 0
    assert "exit codes: 0 ok, 1 error, 2 usage, 3 not running, 4 not installed" in result.stdout
    for command in ("add", "remove", "run", "start", "stop", "restart", "status", "logs", "list", "demo", "install",
                    "uninstall"):
        assert f"    {command}" in result.stdout, command
