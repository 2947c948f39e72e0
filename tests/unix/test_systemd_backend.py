"""SystemdBackend against a modelled systemctl (RecordingRunner): what it writes, which commands it
runs in which order, and how it recovers from drift, foreign units and interrupted runs. The same
lifecycle runs against a real systemd user manager in tests/systemd/."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from daemonkit.backends.base import Backend, BackendContext
from daemonkit.backends.systemd import SystemdBackend
from daemonkit.errors import DaemonkitError, NotInstalledError
from daemonkit.paths import Home

from .fakes import FakeSystemd, make_spec

UNIT = "daemonkit-demo.service"


def test_implements_the_protocol(ctx: BackendContext) -> None:
    assert isinstance(SystemdBackend(ctx), Backend)


def test_fresh_install(ctx: BackendContext, fake: FakeSystemd, home: Home, user_dir: Path) -> None:
    backend = SystemdBackend(ctx)
    spec = make_spec()
    lines = backend.install(spec, home)
    path = user_dir / UNIT
    assert path.read_bytes() == backend.render(spec, home)[0].content
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert fake.verbs() == ["show", "show", "daemon-reload", "show", f"enable {UNIT}", f"start {UNIT}",
                            "show-user " + backend._user_name(), "--no-ask-password enable-linger"]
    assert all(call[:2] == ("systemctl", "--user") for call in fake.calls if call[0] == "systemctl")
    assert (user_dir / "default.target.wants" / UNIT).is_symlink()
    text = "\n".join(lines)
    assert f"wrote {path}" in text and "enabled" in text and f"started {UNIT}" in text
    assert "linger is off" in text and "sudo loginctl enable-linger" in text and "Access denied" in text


def test_reinstall_unchanged_is_a_no_op(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    backend = SystemdBackend(ctx, manage_linger=False)
    backend.install(make_spec(), home)
    fake.runner.calls.clear()
    lines = backend.install(make_spec(), home)
    assert [v for v in fake.verbs() if not v.startswith("show")] == []
    assert any("already running and up to date" in line for line in lines)


def test_reinstall_repairs_drift_and_restarts(ctx: BackendContext, fake: FakeSystemd, home: Home,
                                             user_dir: Path) -> None:
    backend = SystemdBackend(ctx, manage_linger=False)
    backend.install(make_spec(), home)
    path = user_dir / UNIT
    path.write_text(path.read_text().replace("KillMode=mixed", "KillMode=process"))
    assert any("KillMode" in d for d in backend.status(make_spec(), home).drift)
    fake.runner.calls.clear()
    lines = backend.install(make_spec(), home)
    assert "KillMode=mixed" in path.read_text()
    assert "daemon-reload" in fake.verbs() and f"restart {UNIT}" in fake.verbs()
    assert any("repaired" in line and "KillMode" in line for line in lines)
    assert backend.status(make_spec(), home).drift == []


def test_spec_change_rewrites_and_restarts(ctx: BackendContext, fake: FakeSystemd, home: Home,
                                           user_dir: Path) -> None:
    backend = SystemdBackend(ctx, manage_linger=False)
    backend.install(make_spec(grace=10), home)
    fake.runner.calls.clear()
    backend.install(make_spec(grace=100), home)
    assert "TimeoutStopSec=115" in (user_dir / UNIT).read_text()
    assert fake.verbs().index("daemon-reload") < fake.verbs().index(f"restart {UNIT}")


def test_foreign_unit_is_refused_unless_forced(ctx: BackendContext, fake: FakeSystemd, home: Home,
                                               user_dir: Path) -> None:
    user_dir.mkdir(parents=True)
    path = user_dir / UNIT
    path.write_text("[Service]\nExecStart=/usr/bin/sleep infinity\n")
    with pytest.raises(DaemonkitError, match="refusing to overwrite") as info:
        SystemdBackend(ctx).install(make_spec(), home)
    assert "--force" in str(info.value)
    assert path.read_text() == "[Service]\nExecStart=/usr/bin/sleep infinity\n"
    with pytest.raises(DaemonkitError, match="refusing to remove"):
        SystemdBackend(ctx).uninstall(make_spec(), home)
    assert path.exists()
    status = SystemdBackend(ctx).status(make_spec(), home)
    assert not status.installed and "not written by daemonkit" in status.detail
    ctx.force = True
    lines = SystemdBackend(ctx, manage_linger=False).install(make_spec(), home)
    assert path.read_text().startswith("# Managed by daemonkit")
    assert any("replaced the foreign unit" in line for line in lines)


def test_interrupted_install_is_completed(ctx: BackendContext, fake: FakeSystemd, home: Home,
                                          user_dir: Path) -> None:
    """Killed after writing (temp file left, no daemon-reload, not enabled): the next install finishes."""
    backend = SystemdBackend(ctx, manage_linger=False)
    (artifact,) = backend.render(make_spec(), home)
    user_dir.mkdir(parents=True)
    artifact.path.write_bytes(artifact.content)
    stale = user_dir / f".{UNIT}.abc123.tmp"
    stale.write_text("half")
    lines = backend.install(make_spec(), home)
    assert not stale.exists()
    assert fake.verbs()[2:6] == ["daemon-reload", "show", f"enable {UNIT}", f"start {UNIT}"]
    assert UNIT in fake.active and any("interrupted install" in line for line in lines)


def test_interrupted_install_is_undone_by_uninstall(ctx: BackendContext, fake: FakeSystemd, home: Home,
                                                    user_dir: Path) -> None:
    backend = SystemdBackend(ctx)
    (artifact,) = backend.render(make_spec(), home)
    user_dir.mkdir(parents=True)
    artifact.path.write_bytes(artifact.content)
    (user_dir / f".{UNIT}.x.tmp").write_text("half")
    backend.uninstall(make_spec(), home)
    assert list(user_dir.iterdir()) == []


def test_uninstall_removes_every_trace(ctx: BackendContext, fake: FakeSystemd, home: Home, user_dir: Path) -> None:
    backend = SystemdBackend(ctx, manage_linger=False)
    user_dir.mkdir(parents=True)
    (user_dir / "other.service").write_text("[Service]\nExecStart=/bin/true\n")  # not ours: must stay
    backend.install(make_spec(), home)
    fake.runner.calls.clear()
    lines = backend.uninstall(make_spec(), home)
    assert fake.verbs() == ["show", "show", f"stop {UNIT}", f"disable {UNIT}", "daemon-reload", f"reset-failed {UNIT}"]
    assert sorted(p.name for p in user_dir.iterdir()) == ["other.service"]  # wants/ dir pruned too
    assert UNIT not in fake.active and any("removed" in line for line in lines)
    assert backend.uninstall(make_spec(), home) == [f"{UNIT} was not installed; nothing to remove"]


def test_uninstall_removes_a_dangling_enable_link(ctx: BackendContext, fake: FakeSystemd, home: Home,
                                                  user_dir: Path) -> None:
    wants = user_dir / "default.target.wants"
    wants.mkdir(parents=True)
    os.symlink(user_dir / UNIT, wants / UNIT)  # the unit file itself is already gone
    lines = SystemdBackend(ctx).uninstall(make_spec(), home)
    assert not wants.exists() and any("leftover link" in line for line in lines)


def test_default_user_dir_and_pruning_up_to_home(fake: FakeSystemd, home: Home, tmp_path: Path) -> None:
    """Without overrides the unit goes to $HOME/.config/systemd/user, and uninstall leaves $HOME as it was."""
    user_home = tmp_path / "userhome"
    user_home.mkdir()
    fake.unit_dir = user_home / ".config" / "systemd" / "user"
    ctx = BackendContext(runner=fake.runner, python="/usr/bin/python3",
                         dirs={"linger_dir": tmp_path / "linger"},
                         env={"HOME": str(user_home), "XDG_RUNTIME_DIR": "/run/user/1"})
    backend = SystemdBackend(ctx, manage_linger=False)
    backend.install(make_spec(), home)
    assert (fake.unit_dir / UNIT).is_file()
    backend.uninstall(make_spec(), home)
    assert list(user_home.iterdir()) == []


def test_xdg_config_home_is_respected(fake: FakeSystemd, tmp_path: Path) -> None:
    ctx = BackendContext(runner=fake.runner, env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert SystemdBackend(ctx).unit_dir("user") == tmp_path / "cfg" / "systemd" / "user"
    assert SystemdBackend(ctx).unit_dir("system") == Path("/etc/systemd/system")


def test_missing_user_bus_is_a_clear_error(fake: FakeSystemd, home: Home, tmp_path: Path) -> None:
    ctx = BackendContext(runner=fake.runner, python="/usr/bin/python3", env={"HOME": str(tmp_path)},
                         dirs={"systemd_user_dir": tmp_path / "u"})
    for action in (SystemdBackend(ctx).install, SystemdBackend(ctx).uninstall):
        with pytest.raises(DaemonkitError, match="cannot reach your systemd user manager") as info:
            action(make_spec(), home)
        assert "sudo su -" in str(info.value) and 'scope = "system"' in str(info.value)
    assert fake.calls == []  # decided from the environment, before running anything


def test_bus_refusal_from_systemctl_is_a_clear_error(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    fake.bus_missing = True
    with pytest.raises(DaemonkitError, match="cannot reach your systemd user manager") as info:
        SystemdBackend(ctx).install(make_spec(), home)
    assert "No medium found" in str(info.value)
    fake.bus_missing = False
    SystemdBackend(ctx, manage_linger=False).install(make_spec(), home)
    fake.bus_missing = True
    status = SystemdBackend(ctx).status(make_spec(), home)  # reports, never raises
    assert status.installed and status.active is None
    assert any("cannot reach your systemd user manager" in note for note in status.notes)


def test_failed_start_reports_the_journal(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    fake.start_fails = "Job for daemonkit-demo.service failed because the control process exited with error code."
    with pytest.raises(DaemonkitError, match="did not start") as info:
        SystemdBackend(ctx, manage_linger=False).install(make_spec(), home)
    assert "journalctl --user -u daemonkit-demo.service" in str(info.value)
    assert "supervisor: boom" in info.value.details
    # Only this start's lines: the query is bounded by the time the start began.
    (journal,) = [c for c in fake.calls if c[0] == "journalctl"]
    since = [w for w in journal if w.startswith("--since=@")]
    assert since and abs(int(since[0].removeprefix("--since=@")) - time.time()) < 60


def test_failed_start_leads_with_the_supervisors_reason(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    fake.start_fails = "Job for daemonkit-demo.service failed because the control process exited with error code."
    fake.journal = ("Dec 01 22:39:07.698459 vm systemd[20]: Starting daemonkit-demo.service...\n"
                    "Dec 01 22:39:07.853407 vm daemonkit-demo[219]: daemonkit supervise: invalid spec /h/spec.toml: "
                    "programs.web.argv: expected a list\n"
                    "Dec 01 22:39:07.882398 vm systemd[20]: daemonkit-demo.service: Main process exited, status=78/CONFIG\n")
    with pytest.raises(DaemonkitError) as info:
        SystemdBackend(ctx, manage_linger=False).install(make_spec(), home)
    assert info.value.message.startswith(
        "daemonkit-demo.service did not start: invalid spec /h/spec.toml: programs.web.argv: expected a list")
    assert "status=78/CONFIG" in info.value.details


def test_recent_log_is_headed_and_bounded(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    text = SystemdBackend(ctx).recent_log(make_spec(), home, since=1700000000.7)
    assert text == "--- journalctl --user -u daemonkit-demo.service:\nsupervisor: boom"
    assert fake.calls[-1][-1] == "--since=@1700000000"


def test_unwritable_unit_dir(fake: FakeSystemd, home: Home, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")  # fails even for root, unlike chmod
    ctx = BackendContext(runner=fake.runner, python="/usr/bin/python3",
                         dirs={"systemd_user_dir": blocker / "systemd" / "user"},
                         env={"HOME": str(tmp_path), "XDG_RUNTIME_DIR": "/run/user/1"})
    with pytest.raises(DaemonkitError, match="cannot write .*blocker") as info:
        SystemdBackend(ctx).install(make_spec(), home)
    assert "Not a directory" in str(info.value)


def test_linger_on_from_the_linger_file(ctx: BackendContext, fake: FakeSystemd, home: Home, tmp_path: Path) -> None:
    backend = SystemdBackend(ctx)
    (tmp_path / "linger").mkdir()
    (tmp_path / "linger" / backend._user_name()).touch()
    lines = backend.install(make_spec(), home)
    assert any("linger is on" in line for line in lines)
    assert not any(call[0] == "loginctl" for call in fake.calls)


def test_linger_enabled_where_allowed(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    fake.linger_allowed = True
    lines = SystemdBackend(ctx).install(make_spec(), home)
    assert any(line.startswith("enabled linger for") for line in lines)


def test_linger_unknown_says_what_to_do(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    fake.linger = None
    lines = SystemdBackend(ctx).install(make_spec(), home)
    assert any("could not tell whether linger is on" in line and "enable-linger" in line for line in lines)
    assert not any("enable-linger" in call for call in fake.calls)


def test_status(ctx: BackendContext, fake: FakeSystemd, home: Home, user_dir: Path) -> None:
    backend = SystemdBackend(ctx, manage_linger=False)
    status = backend.status(make_spec(), home)
    assert not status.installed and "no unit file" in status.detail
    backend.install(make_spec(), home)
    status = backend.status(make_spec(), home)
    assert status.installed and status.active and status.enabled and status.drift == []
    assert "main pid 1234" in status.detail and any("linger is off" in n for n in status.notes)
    (user_dir / UNIT).write_text((user_dir / UNIT).read_text() + "[Service]\nNice=5\n")
    drift = backend.status(make_spec(), home).drift
    assert any("Nice='5' was added by hand" in d for d in drift)
    assert any("has not loaded the current unit file" in d for d in drift)


def test_status_changes_nothing(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    backend = SystemdBackend(ctx)
    backend.install(make_spec(), home)
    fake.runner.calls.clear()
    backend.status(make_spec(), home)
    assert {call[1] if call[0] == "loginctl" else call[2] for call in fake.calls} <= {"show", "show-user"}


def test_start_and_stop(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    backend = SystemdBackend(ctx, manage_linger=False)
    with pytest.raises(NotInstalledError):
        backend.start(make_spec(), home)
    with pytest.raises(NotInstalledError):
        backend.stop(make_spec(), home)
    backend.install(make_spec(), home)
    backend.stop(make_spec(), home)
    assert UNIT not in fake.active
    backend.start(make_spec(), home)
    assert UNIT in fake.active


def test_timeouts_follow_the_spec(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    seen: dict[str, float] = {}
    run = fake.runner.run

    def timed(argv, *, timeout=30.0, input=None, env=None):  # type: ignore[no-untyped-def]
        seen[" ".join(argv[2:3])] = timeout
        return run(argv, timeout=timeout, input=input, env=env)

    fake.runner.run = timed  # type: ignore[method-assign]
    backend = SystemdBackend(ctx, manage_linger=False)
    backend.install(make_spec(grace=60, ready_timeout=100), home)
    backend.stop(make_spec(grace=60, ready_timeout=100), home)
    assert seen["start"] == 100 + 30 + 15 and seen["stop"] == 60 + 15 + 15
    assert all(t <= 30 for verb, t in seen.items() if verb not in ("start", "stop"))


def test_system_scope(fake: FakeSystemd, home: Home, tmp_path: Path) -> None:
    system_dir = tmp_path / "etc-systemd-system"
    fake.unit_dir = system_dir
    fake.wants = "multi-user.target.wants"
    ctx = BackendContext(runner=fake.runner, python="/usr/bin/python3", dirs={"systemd_system_dir": system_dir},
                         env={})
    spec = make_spec(scope="system")
    with pytest.raises(DaemonkitError, match="system scope needs root"):
        SystemdBackend(ctx, euid=1000).install(spec, home)
    SystemdBackend(ctx, euid=0).install(spec, home)
    assert "WantedBy=multi-user.target" in (system_dir / UNIT).read_text()
    assert all("--user" not in call for call in fake.calls)
    assert not any(call[0] == "loginctl" for call in fake.calls)  # linger is a user-scope matter
    SystemdBackend(ctx, euid=0).uninstall(spec, home)
    assert list(system_dir.iterdir()) == []


def test_run_as_unknown_user(ctx: BackendContext, home: Home) -> None:
    with pytest.raises(DaemonkitError, match="no such user"):
        SystemdBackend(ctx, run_as="no-such-user-dk", euid=0).render(make_spec(scope="system"), home)


def test_masked_unit_is_explained(ctx: BackendContext, fake: FakeSystemd, home: Home) -> None:
    original = fake.respond

    def respond(call):  # type: ignore[no-untyped-def]
        result = original(call)
        if "show" in call and UNIT in call:
            return type(result)(result.argv, 0, result.stdout.replace("LoadState=loaded", "LoadState=masked")
                                .replace("LoadState=not-found", "LoadState=masked"))
        return result

    fake.runner.responder = respond
    with pytest.raises(DaemonkitError, match="LoadState=masked") as info:
        SystemdBackend(ctx).install(make_spec(), home)
    assert f"systemctl --user unmask {UNIT}" in str(info.value)
