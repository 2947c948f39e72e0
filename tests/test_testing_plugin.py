"""The pytest sandbox plugin (daemonkit.testing), run for real in inner pytest sessions (pytester).

Every inner session gets a *fake real home* (a tmp dir posing as the user's home): the guard protects
it like the real one, so a guard that failed would write there, never into the machine's real home.
Tools the inner tests try to run are called with harmless arguments (``--version``) for the same reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from daemonkit.sandbox import guard
from daemonkit.sandbox.guard import Policy

pytest_plugins = ["pytester"]

SRC = Path(__file__).resolve().parent.parent / "src"
# Load the plugin by module name, never twice (the entry point may or may not be installed here).
PLUGIN_ARGS = ("-p", "no:daemonkit", "-p", "daemonkit.testing", "-p", "no:cacheprovider")


@pytest.fixture
def inner(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run an inner session whose 'real' home is tmp_path/realhome; returns (run, realhome)."""
    realhome = tmp_path / "realhome"
    (realhome / ".config").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(realhome))
    monkeypatch.setenv("USERPROFILE", str(realhome))
    monkeypatch.setenv("REALHOME", str(realhome))
    for key in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "DAEMONKIT_HOME",
                "DAEMONKIT_SANDBOX"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))

    def run(source: str, *args: str, mode: str | None = "auto") -> pytest.RunResult:
        if mode is not None:
            pytester.makeini(f"[pytest]\ndaemonkit_sandbox = {mode}\n")
        pytester.makepyfile(test_inner=textwrap.dedent(source))
        return pytester.runpytest(*PLUGIN_ARGS, *args)

    return run, realhome


def test_relocates_every_user_location_and_restores_them(inner) -> None:  # type: ignore[no-untyped-def]
    run, realhome = inner
    result = run("""
        import os, sys
        from pathlib import Path
        import platformdirs

        def test_inside(daemonkit_sandbox):
            sb = daemonkit_sandbox
            assert os.environ["REALHOME"] != os.environ["HOME"]
            assert Path.home() == sb.home and os.environ["USERPROFILE"] == str(sb.home)
            for key in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR",
                        "APPDATA", "LOCALAPPDATA", "PROGRAMDATA", "DAEMONKIT_HOME"):
                assert Path(os.environ[key]).is_relative_to(sb.root), key
            assert "DBUS_SESSION_BUS_ADDRESS" not in os.environ
            assert Path(platformdirs.user_state_dir("chatgateway")).is_relative_to(sb.root)
            assert sb.startup_dir.is_relative_to(Path(os.environ["APPDATA"]))
            from daemonkit import api
            from daemonkit.spec import Program, Spec
            home = api.home_for_spec(Spec("g", (Program("p", ("x",)),)))
            assert home.path.is_relative_to(sb.daemonkit_home)

        def test_after():
            assert os.environ["HOME"] == os.environ["REALHOME"]
            assert "DAEMONKIT_SANDBOX" not in os.environ
    """, mode="opt-in")
    result.assert_outcomes(passed=2)
    assert sorted(p.name for p in realhome.iterdir()) == [".config"]


def test_opt_in_mode_sandboxes_only_marked_tests(inner) -> None:  # type: ignore[no-untyped-def]
    run, _ = inner
    result = run("""
        import os, pytest

        def test_plain():
            assert os.environ["HOME"] == os.environ["REALHOME"]

        @pytest.mark.daemonkit_sandbox
        def test_marked():
            assert os.environ["HOME"] != os.environ["REALHOME"] and "DAEMONKIT_SANDBOX" in os.environ
    """, mode=None)  # no ini: the default is opt-in
    result.assert_outcomes(passed=2)


def test_write_into_the_real_home_fails_the_test_even_if_swallowed(inner) -> None:  # type: ignore[no-untyped-def]
    run, realhome = inner
    result = run("""
        import os
        from pathlib import Path
        REAL = Path(os.environ["REALHOME"])

        def test_startup_entry():
            # A test that "forgot to stub is_windows()" and wrote an autostart entry into the real home.
            (REAL / ".config" / "autostart").mkdir()

        def test_swallowed():
            try:
                (REAL / "notes.txt").write_text("x")
            except Exception:
                pass

        def test_sandboxed_paths_are_fine(daemonkit_sandbox):
            daemonkit_sandbox.startup_dir.mkdir(parents=True)
            (daemonkit_sandbox.startup_dir / "app.cmd").write_text("@echo off")
            (Path.home() / ".config" / "autostart").mkdir(parents=True)
    """)
    result.assert_outcomes(passed=2, failed=1, errors=2)  # the refused mkdir fails, and both fail at teardown
    text = result.stdout.str()
    assert "SandboxViolation" in text and "refused: write to" in text and "autostart" in text
    assert "test_swallowed" in text and "tried to touch the real machine" in text and "notes.txt" in text
    assert sorted(p.name for p in realhome.iterdir()) == [".config"]
    assert list((realhome / ".config").iterdir()) == []


def test_real_service_manager_tools_are_refused_in_process_and_in_subprocesses(inner) -> None:  # type: ignore[no-untyped-def]
    run, _ = inner
    result = run("""
        import subprocess, sys
        import pytest
        from daemonkit.sandbox import SandboxViolation

        @pytest.mark.parametrize("argv", [["systemctl", "--version"], ["/usr/bin/launchctl", "version"],
                                          ["SCHTASKS.EXE", "/?"], ["sh", "-c", "loginctl --version"]])
        def test_in_process(argv, daemonkit_sandbox):
            with daemonkit_sandbox.expect_refusal() as refused:
                with pytest.raises(SandboxViolation, match="ran the real"):
                    subprocess.run(argv)
            assert len(refused) == 1 and "ran the real" in refused[0]

        def test_nothing_refused_is_an_error(daemonkit_sandbox):
            with daemonkit_sandbox.expect_refusal():
                subprocess.run([sys.executable, "-c", "pass"])

        def test_runner_catches_oserror_but_not_this():
            from daemonkit.backends.base import SubprocessRunner
            SubprocessRunner().run(["systemctl", "--user", "--version"])

        @pytest.mark.skipif(sys.platform == "win32", reason="PATH shims are POSIX only")
        def test_subprocess(daemonkit_sandbox):
            code = "import subprocess, sys; sys.exit(subprocess.run(['systemctl', '--version']).returncode)"
            child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            assert child.returncode == 1 and "daemonkit sandbox: refused" in child.stderr
            assert daemonkit_sandbox.refused_commands()[0]["argv"] == ["systemctl", "--version"]

        @pytest.mark.skipif(sys.platform == "win32", reason="PATH shims are POSIX only")
        def test_subprocess_expected(daemonkit_sandbox):
            with daemonkit_sandbox.expect_refusal() as refused:
                subprocess.run([sys.executable, "-c", "import subprocess; subprocess.run(['launchctl', '--version'])"])
            assert refused == ["a subprocess ran the real 'launchctl' (launchctl --version)"]

        def test_other_tools_run(tmp_path):
            assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
    """)
    text = result.stdout.str()
    # failed: the runner test (the violation passes through SubprocessRunner's OSError handler) and the
    # expect_refusal block where nothing was refused; errors at teardown: that runner test and the
    # subprocess that ran the shimmed systemctl.
    result.assert_outcomes(passed=7, failed=2, errors=2)
    assert "FAILED test_inner.py::test_runner_catches_oserror_but_not_this - daemonkit.sa" in text
    assert "ERROR test_inner.py::test_subprocess -" in text and "a subprocess (pid" in text
    assert "nothing was" in text


def test_backends_get_a_recording_runner_and_sandbox_dirs(inner) -> None:  # type: ignore[no-untyped-def]
    run, realhome = inner
    result = run("""
        from daemonkit.backends import default_context  # imported before any sandbox: must still work
        from daemonkit.backends.chooser import choose
        from daemonkit.backends.systemd import SystemdBackend
        from daemonkit.paths import Home
        from daemonkit.spec import Program, Spec

        def test_systemd_install_is_recorded(daemonkit_sandbox):
            sb = daemonkit_sandbox
            spec = Spec("gw", (Program("p", ("python3", "-m", "gw")),))
            sb.runner.responses[("systemctl", "--user", "show")] = (0, "LoadState=loaded\\nActiveState=active\\n")
            ctx = default_context()
            assert ctx.runner is sb.runner and ctx.dirs["startup_dir"] == sb.startup_dir
            SystemdBackend(ctx).install(spec, Home(sb.daemonkit_home / "gw"))
            unit = sb.home / ".config" / "systemd" / "user" / "daemonkit-gw.service"
            assert unit.exists()
            assert any(call[:2] == ("systemctl", "--user") for call in sb.commands)

        def test_chooser_falls_back_to_detached(daemonkit_sandbox):
            choice = choose(Spec("gw", (Program("p", ("x",)),)), default_context(), platform="linux")
            assert choice.name == "detached" and "systemd" in choice.reason
    """)
    result.assert_outcomes(passed=2)
    assert not (realhome / ".config" / "systemd").exists()


def test_session_guard_and_real_marker(inner) -> None:  # type: ignore[no-untyped-def]
    run, realhome = inner
    result = run("""
        import os
        from pathlib import Path
        import pytest
        REAL = Path(os.environ["REALHOME"])

        @pytest.fixture(scope="module")
        def module_writer():
            (REAL / "from-module-fixture").write_text("x")

        def test_module_fixture_is_guarded(module_writer):
            pass

        @pytest.mark.daemonkit_real("talks to the real machine on purpose")
        def test_real():
            assert os.environ["HOME"] == str(REAL)
            (REAL / "real-lane-marker").write_text("ok")
    """)
    result.assert_outcomes(passed=1, errors=1)
    assert "refused: write to" in result.stdout.str() and "daemonkit sandbox" in result.stdout.str()
    assert (realhome / "real-lane-marker").read_text() == "ok"
    assert not (realhome / "from-module-fixture").exists()


def test_daemons_started_in_a_sandbox_are_stopped_at_teardown(inner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run, _ = inner
    pidfile = tmp_path / "pids"
    result = run(f"""
        import sys
        from daemonkit import api
        from daemonkit.spec import Program, Spec

        def test_leaves_a_daemon_running(daemonkit_sandbox):
            spec = Spec("leaky", (Program("sleeper", (sys.executable, "-c", "import time; time.sleep(600)")),))
            started = api.start(spec)
            program = started.status.programs[0]
            with open({str(pidfile)!r}, "w") as f:
                f.write(f"{{started.supervisor_pid}} {{program.pid}}")
    """)
    result.assert_outcomes(passed=1)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_bad_mode_is_a_usage_error(inner) -> None:  # type: ignore[no-untyped-def]
    run, _ = inner
    result = run("def test_x(): pass", mode="always")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "daemonkit_sandbox = 'always' is not one of auto, opt-in, off" in result.stderr.str()


# ------------------------------------------------------------------------------------------ the guard itself


def test_longest_matching_root_decides(tmp_path: Path) -> None:
    home = tmp_path / "home"
    policy = Policy(forbidden=[home, home / "code" / "app" / ".config" / "systemd"],
                    allowed=[home / "code" / "app", home / ".pyenv"])
    assert policy.why_write_refused(str(home / "notes"))
    assert policy.why_write_refused(str(home / "code" / "other" / "x"))
    assert policy.why_write_refused(str(home / "code" / "app" / "src" / "x.pyc")) is None
    assert policy.why_write_refused(str(home / "code" / "app" / ".config" / "systemd" / "u.service"))
    assert policy.why_write_refused(str(tmp_path / "elsewhere")) is None
    assert policy.why_write_refused(str(home) + "-sibling") is None  # a prefix of the name is not inside
    tie = Policy(forbidden=[home], allowed=[home])
    assert tie.why_write_refused(str(home / "x"))


def test_a_symlink_into_the_home_is_seen_through(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "link").symlink_to(home)
    policy = Policy(forbidden=[home])
    assert policy.why_write_refused(str(tmp_path / "link" / "file"))


@pytest.mark.parametrize("argv,tool", [
    (["systemctl", "start", "x"], "systemctl"), (["/bin/systemctl"], "systemctl"),
    ([r"C:\Windows\System32\schtasks.exe", "/Create"], "schtasks"), (["SC.EXE", "query"], "sc"),
    (["reg", "add", "HKCU"], "reg"), (["bash", "-c", "echo hi; launchctl bootout gui/1"], "launchctl"),
    (["systemctl --user enable x"], "systemctl"), (["cmd", "/c", "schtasks /Run /TN x"], "schtasks"),
    (["python3", "-m", "systemctl"], None), (["echo", "systemctl"], None), (["journalctl", "-u", "x"], None),
])
def test_blocked_tools_are_recognised(argv: list[str], tool: str | None) -> None:
    assert guard._blocked_tool(argv, guard.BLOCKED_TOOLS) == tool


def test_guard_without_pytest(tmp_path: Path) -> None:
    """The sandbox works as a plain context manager (unittest, scripts)."""
    from daemonkit.sandbox import Sandbox, SandboxViolation

    outer_home = os.environ["HOME"]
    real = tmp_path / "real"
    real.mkdir()
    sandbox = Sandbox.create(tmp_path / "sb", protect=[real])
    with sandbox:
        assert os.environ["HOME"] == str(sandbox.home)
        with pytest.raises(SandboxViolation):
            (real / "x").write_text("no")
        (sandbox.home / "ok").write_text("yes")
    assert os.environ["HOME"] == outer_home
    assert not (real / "x").exists()
    with pytest.raises(SandboxViolation, match="write to"):
        sandbox.check()
    assert guard.active() is not sandbox.policy


def test_entry_point_is_declared() -> None:
    import tomllib

    data = tomllib.loads((SRC.parent / "pyproject.toml").read_text())
    assert data["project"]["entry-points"]["pytest11"] == {"daemonkit": "daemonkit.testing"}
    assert data["tool"]["pytest"]["ini_options"]["daemonkit_sandbox"] == "auto"


def test_this_suite_runs_sandboxed() -> None:
    assert "DAEMONKIT_SANDBOX" in os.environ
    assert Path.home().is_relative_to(Path(os.environ["DAEMONKIT_SANDBOX"]))
    with guard.expect_refusal() as refused:
        subprocess.run(["systemctl", "--version"])
    assert "ran the real 'systemctl'" in refused[0]
    assert sys.modules["daemonkit.testing"].__file__.startswith(str(SRC))
