"""The backend chain, --backend forcing and the system->user fallback, with fake backends where the
real one cannot run here, and the real chain on this host."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemonkit.backends.base import Availability, BackendContext, RecordingRunner
from daemonkit.backends.chooser import chain, choose
from daemonkit.backends.detached import DetachedBackend
from daemonkit.backends.wsl import WslInfo, WslInputs, detect
from daemonkit.errors import EXIT_USAGE, DaemonkitError

from .fakes import make_spec

NOT_WSL = WslInfo(is_wsl=False)


class Fake:
    def __init__(self, name: str, ok: bool, why: str = "") -> None:
        self.name, self.ok, self.why = name, ok, why
        self.scopes: list[str] = []

    def available(self, scope: str = "user") -> Availability:
        self.scopes.append(scope)
        return Availability(self.ok, self.why or ("works" if self.ok else "does not work"))


def factories(**available: bool):  # type: ignore[no-untyped-def]
    made: dict[str, Fake] = {}

    def factory(name: str):  # type: ignore[no-untyped-def]
        def build(ctx: BackendContext):  # type: ignore[no-untyped-def]
            made[name] = Fake(name, available[name], f"{name} says {'yes' if available[name] else 'no'}")
            return made[name]
        return build

    table = {name: factory(name) for name in available}
    table["detached"] = lambda ctx: DetachedBackend(ctx)
    return table, made


def test_chains() -> None:
    assert chain("linux", "user") == ["systemd", "detached"]
    assert chain("darwin", "system") == ["launchd", "detached"]
    assert chain("win32", "user") == ["schtasks", "startup", "detached"]
    assert chain("win32", "system") == ["winservice", "detached"]


def test_first_available_wins() -> None:
    table, made = factories(systemd=True)
    choice = choose(make_spec(), platform="linux", admin=False, wsl_info=NOT_WSL, factories=table)
    assert choice.name == "systemd" and choice.backend is made["systemd"]
    assert choice.reason == "systemd: systemd says yes" and choice.scope == "user"


def test_falls_through_to_detached_with_the_reason() -> None:
    table, _ = factories(systemd=False)
    choice = choose(make_spec(), platform="linux", admin=False, wsl_info=NOT_WSL, factories=table)
    assert choice.name == "detached" and choice.skipped == (("systemd", "systemd says no"),)
    assert "skipped systemd: systemd says no" in choice.reason
    assert isinstance(choice.backend, DetachedBackend) and choice.backend.reason == "systemd: systemd says no"


def test_forced_backend() -> None:
    table, _ = factories(systemd=True)
    choice = choose(make_spec(), platform="linux", admin=False, wsl_info=NOT_WSL, factories=table, backend="detached")
    assert choice.name == "detached" and "forced with --backend" in choice.reason
    table, _ = factories(systemd=False)
    with pytest.raises(DaemonkitError, match="cannot use the systemd backend here: systemd says no"):
        choose(make_spec(), platform="linux", admin=False, wsl_info=NOT_WSL, factories=table, backend="systemd")


def test_unknown_backend_is_a_usage_error() -> None:
    with pytest.raises(DaemonkitError, match="unknown backend 'upstart'") as info:
        choose(make_spec(), platform="linux", admin=False, wsl_info=NOT_WSL, backend="upstart")
    assert info.value.exit_code == EXIT_USAGE and "systemd" in str(info.value)


def test_system_scope_without_root_is_refused_unless_fallback() -> None:
    table, made = factories(systemd=True)
    with pytest.raises(DaemonkitError, match="for the whole machine") as info:
        choose(make_spec(scope="system"), platform="linux", admin=False, wsl_info=NOT_WSL, factories=table)
    assert "--fallback user" in str(info.value)
    choice = choose(make_spec(scope="system"), platform="linux", admin=False, wsl_info=NOT_WSL,
                    factories=table, fallback="user")
    assert choice.scope == "user" and made["systemd"].scopes == ["user"]
    assert "--fallback user" in choice.notes[0] and "not at boot" in choice.notes[0]
    assert choice.apply(make_spec(scope="system")).scope == "user"


def test_system_scope_as_root_stays_system() -> None:
    table, made = factories(systemd=True)
    choice = choose(make_spec(scope="system"), platform="linux", admin=True, wsl_info=NOT_WSL, factories=table)
    assert choice.scope == "system" and made["systemd"].scopes == ["system"]
    assert choice.apply(make_spec(scope="system")).scope == "system"


def test_wsl_without_systemd_gets_detached_with_guidance() -> None:
    wsl = detect(WslInputs(osrelease="5.15.1-microsoft-standard-WSL2", pid1_comm="init"))
    table, _ = factories(systemd=False)
    choice = choose(make_spec(), platform="linux", admin=False, wsl_info=wsl, factories=table)
    assert choice.name == "detached"
    assert any("systemd=true" in note for note in choice.notes)
    assert "\n".join(choice.backend.install(make_spec(), None)).count("wsl --shutdown") == 1  # type: ignore[arg-type]


def test_missing_windows_module_is_skipped_not_fatal() -> None:
    choice = choose(make_spec(), platform="win32", admin=False, wsl_info=NOT_WSL,
                    factories={"detached": lambda ctx: DetachedBackend(ctx)})
    # schtasks/startup are provided by the Windows modules; on a build without them, or off Windows,
    # the chain moves on and says why.
    assert choice.name == "detached" and [name for name, _ in choice.skipped] == ["schtasks", "startup"]


def test_default_factories_without_systemd(tmp_path: Path) -> None:
    """The built-in factories (no fakes) on a Linux without systemd as init: systemd is skipped, and why."""
    ctx = BackendContext(runner=RecordingRunner(), env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                         dirs={"sd_booted": tmp_path / "no-run-systemd"})
    choice = choose(make_spec(), ctx, platform="linux", admin=False)
    assert choice.name == "detached"
    assert choice.skipped[0][0] == "systemd" and "not the init system" in choice.skipped[0][1]


def _systemd_host(tmp_path: Path, env: dict[str, str]) -> BackendContext:
    """A Linux host where systemd is PID 1 (the sd_booted marker) and systemctl is on PATH."""
    (tmp_path / "run-systemd").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "systemctl").chmod(0o755)
    return BackendContext(runner=RecordingRunner(), dirs={"sd_booted": tmp_path / "run-systemd"},
                          env={"HOME": str(tmp_path), "PATH": str(bin_dir), **env})


def test_unreachable_user_manager_is_reported_not_fallen_back(tmp_path: Path) -> None:
    # 'sudo su - user': systemd runs the machine but this shell has no user bus. A quiet fallback to
    # detached would install a daemon that never starts at login.
    ctx = _systemd_host(tmp_path, {"USER": "someone"})
    with pytest.raises(DaemonkitError) as info:
        choose(make_spec(), ctx, platform="linux", admin=False, wsl_info=NOT_WSL)
    message = info.value.message
    assert "cannot reach your systemd user manager" in message and "sudo su -" in message
    assert "--backend detached" in message
    # Asked for explicitly, detached still works.
    assert choose(make_spec(), ctx, backend="detached", platform="linux", admin=False, wsl_info=NOT_WSL).name == "detached"


def test_reachable_user_manager_is_chosen(tmp_path: Path) -> None:
    ctx = _systemd_host(tmp_path, {"XDG_RUNTIME_DIR": str(tmp_path)})
    choice = choose(make_spec(), ctx, platform="linux", admin=False, wsl_info=NOT_WSL)
    assert choice.name == "systemd" and choice.skipped == ()


def test_wsl_with_systemd_uses_it_and_explains_the_idle_shutdown() -> None:
    wsl = detect(WslInputs(osrelease="5.15.1-microsoft-standard-WSL2", pid1_comm="systemd", sd_booted=True))
    table, _ = factories(systemd=True)
    choice = choose(make_spec(), platform="linux", admin=False, wsl_info=wsl, factories=table)
    assert choice.name == "systemd"
    assert any("last" in note and "terminal" in note for note in choice.notes), choice.notes
