"""Embedding daemonkit in a host app: the Daemon facade, argparse mounting, the click adapter, and the
worked example's own test suite — with real supervisors and programs."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from daemonkit import Daemon, Program
from daemonkit.cli import dispatch, run_command
from daemonkit.errors import DaemonkitError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "chatgateway"
TALKER = [sys.executable, "-c", "import sys, time\nprint('hello out', flush=True)\n"
          "print('hello err', file=sys.stderr, flush=True)\ntime.sleep(600)"]


@pytest.fixture
def daemon(dk_env: dict[str, str]) -> Daemon:
    return Daemon("myapp", Program("worker", TALKER), name="worker", prog="myapp worker")


def test_facade_lifecycle_returns_results_and_prints_nothing(daemon: Daemon,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert not daemon.is_running() and daemon.status().source == "none"
    started = daemon.start()
    assert started.supervisor_pid and started.status is not None and started.status.healthy
    assert daemon.is_running()
    logs = daemon.logs(lines=5)
    assert [(line.program, line.stream, line.text) for line in logs.lines] == [
        ("worker", "out", "hello out"), ("worker", "err", "hello err")]
    assert any(event.get("event") for event in logs.events)
    restarted = daemon.restart()
    assert restarted.supervisor_pid not in (None, started.supervisor_pid)
    stopped = daemon.stop()
    assert stopped.was_running and not daemon.is_running()
    assert capsys.readouterr() == ("", "")  # the library layer never prints


def test_home_lives_under_the_apps_own_name(daemonkit_sandbox, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DAEMONKIT_HOME")
    d = Daemon("myapp", Program("worker", TALKER))
    assert d.name == "myapp" and d.spec.app == "myapp"
    assert d.home.path == Path(platformdirs.user_state_dir("myapp", appauthor=False)) / "daemonkit" / "myapp"
    assert d.home.path.is_relative_to(daemonkit_sandbox.home)


def test_facade_argument_errors() -> None:
    with pytest.raises(TypeError, match="at least one Program"):
        Daemon("myapp")
    spec = Daemon("other", Program("p", ("x",))).spec
    assert Daemon.from_spec(spec).spec.app == "other"
    assert Daemon("myapp", spec=spec).spec.app == "myapp"
    with pytest.raises(TypeError, match="not both"):
        Daemon("myapp", Program("p", ("x",)), spec=spec)


def test_argparse_mounting_under_a_host_parser(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="myapp")
    sub = parser.add_subparsers(dest="app_command")
    mounted = sub.add_parser("worker")
    daemon.add_commands(mounted.add_subparsers(metavar="ACTION"))
    sub.add_parser("version")
    assert dispatch(parser.parse_args(["worker", "status"])) == 3  # not running (LSB)
    assert "worker" in capsys.readouterr().out
    args = parser.parse_args(["version"])
    assert not hasattr(args, "_daemonkit_func") and args.app_command == "version"
    assert dispatch(parser.parse_args(["worker", "start"])) == 0
    out = capsys.readouterr().out
    assert "started worker" in out
    assert run_command(["status", "--json"], daemon.spec, prog="myapp worker") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["running"] and status["name"] == "worker"
    assert daemon.main(["stop"]) == 0 and "stopped worker" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["worker", "add", "x"])  # operator-only commands are not mounted
    assert "invalid choice" in capsys.readouterr().err


def test_mounted_commands_take_no_name_and_hint_with_the_apps_command(daemon: Daemon,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.main(["uninstall"]) == 4  # not installed
    err = capsys.readouterr().err
    assert "worker is not installed" in err
    with pytest.raises(SystemExit):
        daemon.main(["status", "worker"])  # NAME is implied by the app
    assert "unrecognized arguments: worker" in capsys.readouterr().err


def test_click_group(daemon: Daemon) -> None:
    pytest.importorskip("click", reason="click is not installed: run tests/envs/setup-hostapps.sh")
    import click
    from click.testing import CliRunner

    @click.group()
    def myapp() -> None:
        """An app with its own click CLI."""

    myapp.add_command(daemon.click_group("worker"))
    runner = CliRunner()
    listing = runner.invoke(myapp, ["worker", "--help"])
    assert listing.exit_code == 0
    for command in ("install", "start", "stop", "restart", "status", "logs", "uninstall"):
        assert command in listing.output
    helped = runner.invoke(myapp, ["worker", "status", "--help"])
    assert helped.exit_code == 0 and "usage: myapp worker status" in helped.output
    assert runner.invoke(myapp, ["worker", "status"]).exit_code == 3
    started = runner.invoke(myapp, ["worker", "start"])
    assert started.exit_code == 0 and "started worker" in started.output
    status = runner.invoke(myapp, ["worker", "status", "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["running"]
    assert runner.invoke(myapp, ["worker", "status", "--bogus"]).exit_code == 2
    stopped = runner.invoke(myapp, ["worker", "stop"])
    assert stopped.exit_code == 0 and "stopped worker" in stopped.output


def test_click_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from daemonkit.integrations import click as adapter

    monkeypatch.setitem(sys.modules, "click", None)  # makes `import click` fail
    with pytest.raises(DaemonkitError, match="needs click.*pip install click"):
        adapter.group(Daemon("myapp", Program("p", ("x",))).spec)


def test_a_very_long_home_path_uses_the_short_socket_fallback(dk_env: dict[str, str], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 6)
    monkeypatch.setenv("DAEMONKIT_HOME", str(deep))
    d = Daemon("myapp", Program("worker", TALKER), name="worker")
    assert len(os.fsencode(str(d.home.path / "control.sock"))) > 108  # too long for sun_path
    assert d.home.control_socket.parent != d.home.path
    try:
        started = d.start()
        assert started.status is not None and started.status.healthy
        assert d.status().source == "live"  # the control socket answers
    finally:
        d.stop()
    assert not d.is_running()


def test_the_worked_example_passes_its_own_tests() -> None:
    """examples/chatgateway runs its suite the way an app would: its own pytest config, the plugin in
    auto mode, end to end through its CLI."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(EXAMPLE)]))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-c", str(EXAMPLE / "pyproject.toml"),
                           "--rootdir", str(EXAMPLE), str(EXAMPLE / "tests"), "-p", "no:daemonkit",
                           "-p", "daemonkit.testing", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=EXAMPLE)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout


def test_the_example_stays_small() -> None:
    lines = sum(len([ln for ln in path.read_text().splitlines() if ln.strip()])
                for path in (EXAMPLE / "chatgateway").glob("*.py"))
    assert lines <= 80, f"the worked example grew to {lines} lines"


def test_error_hints_use_the_apps_command(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.main(["stop", "--program", "worker"]) == 3  # not running: the hint says how to start it
    err = capsys.readouterr().err
    assert "try: myapp worker start" in err and "daemonkit start" not in err


def test_facade_errors_name_the_apps_commands(daemon: Daemon) -> None:
    with pytest.raises(DaemonkitError) as caught:
        daemon.stop(program="worker")
    assert "myapp worker start" in str(caught.value) and "daemonkit start" not in str(caught.value)
