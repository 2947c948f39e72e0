"""LaunchdBackend: the plist as data (plistlib.loads) and the launchctl conversation through a modelled
launchctl (launchd cannot run here; the command lines are what a Mac would receive)."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from daemonkit.backends.base import Backend, BackendContext
from daemonkit.backends.launchd import LaunchdBackend, parse_print
from daemonkit.errors import DaemonkitError, NotInstalledError
from daemonkit.paths import Home

from .fakes import PRINT_SAMPLE, FakeLaunchd, make_spec

LABEL = "daemonkit.demo"
TARGET = f"gui/501/{LABEL}"


@pytest.fixture
def launchd() -> FakeLaunchd:
    return FakeLaunchd()


@pytest.fixture
def agents(tmp_path: Path) -> Path:
    return tmp_path / "Library" / "LaunchAgents"


@pytest.fixture
def backend(launchd: FakeLaunchd, agents: Path, tmp_path: Path) -> LaunchdBackend:
    ctx = BackendContext(runner=launchd.runner, python="/usr/local/bin/python3",
                         dirs={"launch_agents_dir": agents, "launch_daemons_dir": tmp_path / "LaunchDaemons"},
                         env={"HOME": str(tmp_path)})
    return LaunchdBackend(ctx, uid=501, euid=501, sleep=launchd.sleeps.append, bootout_wait=2.0)


def load(backend: LaunchdBackend, home: Home, **kw: object) -> dict:
    (artifact,) = backend.render(make_spec(**kw), home)  # type: ignore[arg-type]
    return plistlib.loads(artifact.content)


def test_implements_the_protocol(backend: LaunchdBackend) -> None:
    assert isinstance(backend, Backend)


def test_plist_keys(backend: LaunchdBackend, home: Home) -> None:
    job = load(backend, home, grace=20.2)
    assert job["Label"] == LABEL
    assert job["ProgramArguments"] == ["/usr/local/bin/python3", "-m", "daemonkit", "supervise", "--home",
                                       str(home.path)]
    assert job["RunAtLoad"] is True
    assert job["KeepAlive"] == {"SuccessfulExit": False}
    assert job["ThrottleInterval"] == 5
    assert job["ExitTimeOut"] == 21 + 15  # never SIGKILL mid-drain
    assert job["SoftResourceLimits"] == {"NumberOfFiles": 10240}
    assert job["StandardOutPath"] == str(home.logs_dir / "launchd.out.log")
    assert job["StandardErrorPath"] == str(home.logs_dir / "launchd.err.log")
    assert job["Umask"] == 0o077
    assert job["EnvironmentVariables"] == {"PYTHONUNBUFFERED": "1", "DAEMONKIT_BACKEND": "launchd"}
    assert "UserName" not in job
    # Also under "always": the supervisor restarts programs itself, and its exit 0 (stop requested, or a
    # configuration error under launchd) must not be undone.
    assert load(backend, home, restart="always")["KeepAlive"] == {"SuccessfulExit": False}


def test_plist_carries_the_marker_and_escapes_odd_paths(backend: LaunchdBackend, tmp_path: Path) -> None:
    home = Home(tmp_path / "a & <b> \"c\" 'd' 100% $e")
    (artifact,) = backend.render(make_spec(), home)
    assert b"<!-- Managed by daemonkit" in artifact.content[:300]
    assert plistlib.loads(artifact.content)["ProgramArguments"][-1] == str(home.path)
    assert artifact.path == backend.ctx.dirs["launch_agents_dir"] / f"{LABEL}.plist"


def test_fresh_install(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home, agents: Path) -> None:
    lines = backend.install(make_spec(), home)
    path = agents / f"{LABEL}.plist"
    assert launchd.calls == [("launchctl", "enable", TARGET), ("launchctl", "print", TARGET),
                             ("launchctl", "bootstrap", "gui/501", str(path))]
    assert plistlib.loads(path.read_bytes())["Label"] == LABEL
    assert home.logs_dir.is_dir()  # launchd needs it to open StandardOutPath
    assert any("RunAtLoad starts it now" in line for line in lines)


def test_reinstall_unchanged_only_kickstarts(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home) -> None:
    backend.install(make_spec(), home)
    launchd.runner.calls.clear()
    lines = backend.install(make_spec(), home)
    assert launchd.verbs() == ["enable", "print", "kickstart"]
    assert ("launchctl", "kickstart", TARGET) in launchd.calls  # no -k: a running job is left alone
    assert any("up to date" in line for line in lines)


def test_changed_plist_is_booted_out_and_in_again(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home,
                                                  agents: Path) -> None:
    backend.install(make_spec(), home)
    launchd.settle = 3  # bootout returns before launchd lets go
    launchd.runner.calls.clear()
    lines = backend.install(make_spec(grace=50), home)
    verbs = launchd.verbs()
    assert verbs[:3] == ["enable", "print", "bootout"] and verbs[-1] == "bootstrap"
    assert verbs.count("print") >= 4 and len(launchd.sleeps) >= 3  # waited for the bootout to settle
    assert plistlib.loads((agents / f"{LABEL}.plist").read_bytes())["ExitTimeOut"] == 65
    assert any("ExitTimeOut" in line for line in lines)


def test_hand_edited_plist_is_reported_and_repaired(backend: LaunchdBackend, home: Home, agents: Path) -> None:
    backend.install(make_spec(), home)
    path = agents / f"{LABEL}.plist"
    job = plistlib.loads(path.read_bytes())
    job["KeepAlive"] = False
    job["Nice"] = 5
    path.write_bytes(plistlib.dumps(job))
    drift = backend.status(make_spec(), home).drift
    assert any("no 'Managed by daemonkit' comment" in d for d in drift)  # plistlib dropped our comment
    assert any(d.startswith("KeepAlive is False") for d in drift) and any("Nice=5" in d for d in drift)
    lines = backend.install(make_spec(), home)
    assert any(line.startswith("repaired") and "KeepAlive" in line for line in lines)
    assert backend.status(make_spec(), home).drift == []


def test_exit_5_when_already_bootstrapped(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home) -> None:
    # print missed it (a race with another install), bootstrap says 5, a second print finds it loaded.
    launchd.bootstrap_errors = [(5, "Bootstrap failed: 5: Input/output error")]
    original = launchd.respond
    prints = iter([113])

    def respond(call):  # type: ignore[no-untyped-def]
        if call[1] == "print" and next(prints, None) == 113:
            return original(call[:1] + ("print", "nothing"))
        if call[1] == "bootstrap" and launchd.bootstrap_errors:
            launchd.loaded[TARGET] = "x"
        return original(call)

    launchd.runner.responder = respond
    lines = backend.install(make_spec(), home)
    assert any("was already loaded" in line for line in lines)


def test_exit_5_while_settling_is_retried(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home) -> None:
    launchd.bootstrap_errors = [(5, "Bootstrap failed: 5: Input/output error")]
    backend.install(make_spec(), home)
    assert launchd.verbs().count("bootstrap") == 2 and launchd.sleeps == [0.5]
    assert TARGET in launchd.loaded


def test_persistent_exit_5_is_explained(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home) -> None:
    launchd.bootstrap_errors = [(5, "Bootstrap failed: 5: Input/output error")] * 3
    with pytest.raises(DaemonkitError, match="could not load") as info:
        backend.install(make_spec(), home)
    assert "plutil -lint" in str(info.value) and "exit 5" in str(info.value)


def test_no_gui_session(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home) -> None:
    launchd.bootstrap_errors = [(125, "Bootstrap failed: 125: Domain does not support specified action")]
    with pytest.raises(DaemonkitError, match="no GUI login session") as info:
        backend.install(make_spec(), home)
    assert 'scope = "system"' in str(info.value)


def test_foreign_plist(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home, agents: Path) -> None:
    agents.mkdir(parents=True)
    path = agents / f"{LABEL}.plist"
    path.write_bytes(plistlib.dumps({"Label": LABEL, "Program": "/bin/sleep"}))
    with pytest.raises(DaemonkitError, match="refusing to overwrite"):
        backend.install(make_spec(), home)
    with pytest.raises(DaemonkitError, match="refusing to remove"):
        backend.uninstall(make_spec(), home)
    assert launchd.calls == [] and plistlib.loads(path.read_bytes())["Program"] == "/bin/sleep"
    backend.ctx.force = True
    assert any("replaced the foreign plist" in line for line in backend.install(make_spec(), home))


def test_uninstall(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home, agents: Path) -> None:
    backend.install(make_spec(), home)
    (agents / f".{LABEL}.plist.zz.tmp").write_text("half")
    launchd.runner.calls.clear()
    lines = backend.uninstall(make_spec(), home)
    assert launchd.calls[0] == ("launchctl", "bootout", TARGET)
    assert list(agents.iterdir()) == [] and TARGET not in launchd.loaded
    assert any("unloaded" in line for line in lines)
    assert backend.uninstall(make_spec(), home) == [f"{LABEL} was not installed; nothing to remove"]


def test_interrupted_install_is_completed(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home,
                                          agents: Path) -> None:
    (artifact,) = backend.render(make_spec(), home)
    agents.mkdir(parents=True)
    artifact.path.write_bytes(artifact.content)  # written, never bootstrapped
    (agents / f".{LABEL}.plist.q.tmp").write_text("half")
    lines = backend.install(make_spec(), home)
    assert TARGET in launchd.loaded and sorted(p.name for p in agents.iterdir()) == [f"{LABEL}.plist"]
    assert any("interrupted install" in line for line in lines)


def test_start_stop(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home) -> None:
    with pytest.raises(NotInstalledError):
        backend.start(make_spec(), home)
    backend.install(make_spec(), home)
    backend.stop(make_spec(), home)  # bootout: KeepAlive would undo a plain kill
    assert TARGET not in launchd.loaded
    backend.start(make_spec(), home)
    assert TARGET in launchd.loaded and launchd.verbs()[-1] == "bootstrap"
    backend.start(make_spec(), home)
    assert launchd.verbs()[-1] == "kickstart"


def test_status(backend: LaunchdBackend, launchd: FakeLaunchd, home: Home) -> None:
    assert not backend.status(make_spec(), home).installed
    backend.install(make_spec(), home)
    status = backend.status(make_spec(), home)
    assert status.installed and status.active and status.enabled and status.drift == []
    assert "pid 4242" in status.detail and "runs 3" in status.detail
    launchd.disabled.add(TARGET)
    launchd.loaded.clear()
    status = backend.status(make_spec(), home)
    assert status.active is False and status.enabled is False and status.detail == "not loaded"


def test_parse_print_ignores_nested_blocks() -> None:
    fields = parse_print(PRINT_SAMPLE.format(target=TARGET, path="/p"))
    assert fields["state"] == "running" and fields["pid"] == "4242"
    assert fields["last exit code"] == "(never exited)"


def test_system_scope(launchd: FakeLaunchd, tmp_path: Path, home: Home) -> None:
    daemons = tmp_path / "LaunchDaemons"
    ctx = BackendContext(runner=launchd.runner, python="/usr/bin/python3", dirs={"launch_daemons_dir": daemons})
    spec = make_spec(scope="system")
    with pytest.raises(DaemonkitError, match="needs root"):
        LaunchdBackend(ctx, uid=501, euid=501).install(spec, home)
    backend = LaunchdBackend(ctx, run_as="_demo", uid=0, euid=0, sleep=lambda s: None)
    backend.install(spec, home)
    job = plistlib.loads((daemons / f"{LABEL}.plist").read_bytes())
    assert job["UserName"] == "_demo" and job["InitGroups"] is True
    assert ("launchctl", "bootstrap", "system", str(daemons / f"{LABEL}.plist")) in launchd.calls
