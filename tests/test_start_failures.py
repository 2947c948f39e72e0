"""What a failed start tells the user, and that it leaves nothing running: real supervisors, real programs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil

PY = sys.executable


def _status(cli: Any, name: str) -> dict[str, Any]:
    result = cli("status", name, "--json")
    assert result.returncode in (0, 3), result.stderr
    return json.loads(result.stdout)


def _alive_with(marker: str) -> list[psutil.Process]:
    """Processes whose command line carries ``marker`` (a per-test tmp path, so other tests don't count)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(marker in a for a in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_failure_shows_only_this_starts_output(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    counter = tmp_path / "attempt"
    code = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); n = int(p.read_text()) + 1 if p.exists() else 1;"
            "p.write_text(str(n)); print(f'broken config, attempt {n}', file=sys.stderr); sys.exit(78)")
    assert cli("add", "cfgbad", "--", PY, "-c", code).returncode == 0
    first = cli("start", "cfgbad")
    assert first.returncode == 1
    assert "cfgbad failed to start: program cfgbad" in first.stderr and "config-error" in first.stderr
    assert "broken config, attempt 1" in first.stderr
    second = cli("start", "cfgbad")
    assert second.returncode == 1
    assert "broken config, attempt 2" in second.stderr
    assert "attempt 1" not in second.stderr  # the old run's lines would mislead
    assert _status(cli, "cfgbad")["running"] is False
    assert not _alive_with(str(counter))


def test_readiness_timeout_counts_as_a_quick_death(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Never listens: each readiness timeout must back off (not "stable run ended" -> instant respawn),
    # so start fails after the first timeout instead of spinning until its own deadline.
    marker = str(tmp_path / "never-ready")
    code = "import sys, time; print('warming up', file=sys.stderr, flush=True); time.sleep(600)"
    assert cli("add", "slow", "--ready-tcp", "127.0.0.1:1", "--ready-timeout", "1", "--",
               PY, "-c", code, marker).returncode == 0
    started = time.monotonic()
    result = cli("start", "slow")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "not ready within 1s" in result.stderr and "backoff" in result.stderr
    assert "warming up" in result.stderr
    assert elapsed < 8.0, f"start spun for {elapsed:.1f}s instead of failing after the first timeout"
    events = cli("logs", "slow", "--events", "-n", "50").stdout
    assert "stable run ended" not in events and "backoff" in events
    assert not _alive_with(marker)


def test_blocked_control_socket_is_a_clear_error_and_exit_78(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    home = Path(dk_env["DAEMONKIT_HOME"]) / "blocked"
    assert cli("add", "blocked", "--", PY, "-c", "import time; time.sleep(600)").returncode == 0
    (home / "control.sock" / "in-the-way").mkdir(parents=True)
    result = cli("start", "blocked")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot create the control socket {home / 'control.sock'}: Is a directory" in result.stderr
    assert result.stderr.count("cannot create the control socket") == 2  # the line, and the log below it
    direct = cli("supervise", "--home", str(home))
    # 78 = configuration error: a service manager must not restart the supervisor in a loop.
    assert direct.returncode == 78 and "Traceback" not in direct.stderr
    assert _status(cli, "blocked")["running"] is False


def test_stop_and_remove_say_what_happened(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "quiet", "--", PY, "-c", "import time; time.sleep(600)").returncode == 0
    idle = cli("stop", "quiet")
    assert idle.returncode == 0 and idle.stdout.strip() == "quiet was not running"
    assert cli("start", "quiet").returncode == 0
    stopped = cli("stop", "quiet")
    assert stopped.returncode == 0 and "stopped quiet" in stopped.stdout
    removed = cli("remove", "quiet")
    assert removed.returncode == 0
    assert "stopped quiet" not in removed.stdout and "removed " in removed.stdout
    assert cli("add", "busy", "--", PY, "-c", "import time; time.sleep(600)").returncode == 0
    assert cli("start", "busy").returncode == 0
    removed = cli("remove", "busy")
    assert removed.returncode == 0 and "stopped busy" in removed.stdout


def test_supervisor_config_error_exit_code_per_manager(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    """78 keeps systemd from restarting (RestartPreventExitStatus=78); launchd only spares exit 0
    (KeepAlive SuccessfulExit=false), so under launchd the same decision is exit 0."""
    home = Path(dk_env["DAEMONKIT_HOME"]) / "broken"
    assert cli("add", "broken", "--", PY, "-c", "pass").returncode == 0
    (home / "spec.toml").write_text("this is [ not toml")
    plain = cli("supervise", "--home", str(home))
    assert plain.returncode == 78 and "daemonkit supervise: invalid spec" in plain.stderr
    launchd = cli("supervise", "--home", str(home), "--backend", "launchd")
    assert launchd.returncode == 0 and "daemonkit supervise: invalid spec" in launchd.stderr
    assert "Traceback" not in plain.stderr + launchd.stderr


def test_supervisor_refusing_its_home_exits_78(cli, dk_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "real-home"
    target.mkdir()
    link = tmp_path / "linked-home"
    link.symlink_to(target)
    result = cli("supervise", "--home", str(link))
    assert result.returncode == 78 and "symbolic link" in result.stderr and "Traceback" not in result.stderr


def test_start_timeout_under_a_manager_shows_the_managers_log(dk_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """When the manager says "started" but no supervisor ever answers, the error carries what the
    manager logged since the start (for systemd: journalctl --user -u UNIT --since=@START)."""
    from daemonkit import api
    from daemonkit.errors import DaemonkitError
    from daemonkit.paths import Home
    from daemonkit.spec import Program, Spec

    class SilentManager:
        name = "fakemanager"
        since: float | None = None

        def recent_log(self, spec: Spec, home: Home, *, since: float, lines: int = 20) -> str:
            self.since = since
            return "--- fakemanager log:\nsupervisor: could not import daemonkit"

    spec = Spec(name="silent", programs=(Program("p", (PY, "-c", "pass")),))
    home = api.save_spec(spec)
    manager = SilentManager()
    before = time.time()
    try:
        api._await_ready(spec, home, 0.5, backend=manager)
    except DaemonkitError as exc:
        error = exc
    else:
        raise AssertionError("no error")
    assert "silent did not start in time" in error.message and "(started by fakemanager)" in error.message
    assert "supervisor: could not import daemonkit" in error.details
    assert manager.since is not None and before - 1 <= manager.since <= time.time()
