"""The Windows Service backend for real under Wine's SCM: install, start, stop, remove; the venv
interpreter mapping (error 1053) and the recovery actions as data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from daemonkit.backends.winservice import (WinServiceBackend, binary_path, interpreter_and_sites,
                                           recovery_actions, service_name)
from .helpers import wait_until
from daemonkit import api
from daemonkit.paths import Home
from daemonkit.proc import winjob
from daemonkit.spec import Backoff, Program, Spec, dump_spec


def _spec(name: str, restart: str = "on-failure") -> Spec:
    return Spec(name=name, scope="system", programs=(
        Program("web", (sys.executable, "-c", "import time; time.sleep(120)"), restart=restart,
                backoff=Backoff(initial=0.5, max=20.0)),))


def test_service_install_start_stop_remove(tmp_path):
    win32service = pytest.importorskip("win32service")
    spec = _spec(f"svc{tmp_path.name[-6:].replace('_', '')}")
    home = Home(tmp_path / "home").ensure()
    dump_spec(spec, home.spec_file)
    backend = WinServiceBackend()
    assert backend.available("system").ok, backend.available("system").reason
    name = service_name(spec)
    try:
        assert "created the Windows Service" in backend.install(spec, home)[0]
        status = backend.status(spec, home)
        assert status.installed and status.enabled and status.drift == [] and status.active is False
        assert "updated" in backend.install(spec, home)[0]  # idempotent
        backend.start(spec, home)
        assert backend._state(name) == win32service.SERVICE_RUNNING
        # The daemon is up under SCM: the host's supervisor answers on its control pipe, program running.
        assert wait_until(lambda: api.status_of(spec, home).running, 60), _service_log(home)
        assert wait_until(lambda: api.status_of(spec, home).programs[0].state == "running", 30)
        status = api.status_of(spec, home)
        program = status.programs[0].pid
        assert status.backend == "winservice" and winjob.is_running(program)
        backend.stop(spec, home)
        assert backend._state(name) == win32service.SERVICE_STOPPED
        assert wait_until(lambda: not winjob.is_running(program), 20), "the program outlived its service"
    finally:
        lines = backend.uninstall(spec, home)
    assert lines[-1] == f"removed the Windows Service {name}"
    assert backend._state(name) is None
    assert not backend.status(spec, home).installed
    assert backend.uninstall(spec, home) == [f"no Windows Service {name}: nothing to remove"]


def _service_log(home: Home) -> str:
    path = home.logs_dir / "service.log"
    return path.read_text(errors="replace")[-2000:] if path.exists() else "no service.log"


def test_venv_services_run_the_base_interpreter_with_the_venv_site():
    python, sites = interpreter_and_sites(prefix="C:\\proj\\.venv", base_prefix="C:\\Python312",
                                          executable="C:\\proj\\.venv\\Scripts\\python.exe")
    assert python == "C:\\Python312\\python.exe"  # not the venv launcher: SCM would wait on the wrong process
    assert sites[0] == "C:\\proj\\.venv\\Lib\\site-packages"
    assert Path(sites[-1], "daemonkit").is_dir()
    same, _ = interpreter_and_sites(prefix="C:\\Python312", base_prefix="C:\\Python312",
                                    executable="C:\\Python312\\python.exe")
    assert same == "C:\\Python312\\python.exe"


def test_binary_path_quotes_every_part(tmp_path):
    home = Home(tmp_path / "a b & c")
    line = binary_path(_spec("x"), home, "C:\\Program Files\\Python\\python.exe", ["C:\\s p"], 12)
    assert line.startswith('"C:\\Program Files\\Python\\python.exe" ')
    assert f'--home "{home.path}"' in line and '--site "C:\\s p"' in line and "--grace 12" in line


def test_recovery_actions_follow_the_restart_policy():
    import win32service

    actions = recovery_actions(_spec("x"))
    assert [a for a, _ in actions] == [win32service.SC_ACTION_RESTART] * 3
    assert [d for _, d in actions] == [1000, 5000, 20000]
    assert recovery_actions(_spec("x", restart="never")) == [(win32service.SC_ACTION_NONE, 0)]


def _restricted(name: str, access: int):  # type: ignore[no-untyped-def]
    """A real SCM handle to the service that may not change its configuration."""
    import win32service

    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_CONNECT)
    try:
        return win32service.OpenService(scm, name, access)
    finally:
        win32service.CloseServiceHandle(scm)


def test_recovery_actions_refused_by_scm_are_a_warning_naming_what_it_means(tmp_path, monkeypatch):
    """SCM refuses the recovery actions for real (a handle without SERVICE_CHANGE_CONFIG: access denied):
    the answer names what failed, what it means and how to set them by hand; install prints that line
    instead of claiming SCM restarts the service."""
    win32service = pytest.importorskip("win32service")
    from daemonkit.backends import winservice

    spec = _spec(f"rec{tmp_path.name[-6:].replace('_', '')}")
    never = _spec(spec.name, restart="never")
    home = Home(tmp_path / "home").ensure()
    dump_spec(spec, home.spec_file)
    backend = WinServiceBackend()
    name = service_name(spec)
    real = winservice.set_recovery_actions
    try:
        lines = backend.install(spec, home)  # SCM takes them here: no warning, and the claim stands
        assert lines == [f"created the Windows Service {name} (starts at boot, restarted by SCM on failure)",
                         f"start it now with 'daemonkit start {spec.name}'"]
        handle = _restricted(name, win32service.SERVICE_QUERY_CONFIG)
        try:
            assert real(handle, spec, name) == [
                f"warning: could not set the recovery actions of the Windows Service {name} (restart after 1 s, "
                "5 s, 20 s): ChangeServiceConfig2: Access denied (error 5); SCM will not restart the supervisor "
                "if it crashes (the supervisor still restarts its programs while it runs). To set them by hand, "
                f"from an elevated prompt: sc failure {name} reset= 86400 actions= restart/1000/restart/5000/restart/20000"]
            (line,) = real(handle, never, name)
            assert '(no restart (every program is restart = "never"))' in line
            assert "SCM keeps whatever recovery actions the service had before" in line and "actions= none/0" in line
        finally:
            win32service.CloseServiceHandle(handle)

        def through_a_read_only_handle(_handle, spec_, name_):  # type: ignore[no-untyped-def]
            restricted = _restricted(name_, win32service.SERVICE_QUERY_CONFIG)
            try:
                return real(restricted, spec_, name_)
            finally:
                win32service.CloseServiceHandle(restricted)

        monkeypatch.setattr(winservice, "set_recovery_actions", through_a_read_only_handle)
        lines = backend.install(spec, home)
        assert lines[0] == f"updated the Windows Service {name} (starts at boot)"
        assert lines[1].startswith(f"warning: could not set the recovery actions of the Windows Service {name}")
        assert "Access denied" in lines[1] and lines[2] == f"start it now with 'daemonkit start {spec.name}'"
    finally:
        monkeypatch.undo()
        backend.uninstall(spec, home)
    assert backend._state(name) is None
