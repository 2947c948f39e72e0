"""Windows Service backend (system scope; the ``windows-service`` extra: pywin32; needs elevation).

The service runs ``winservice_host`` under the base interpreter (see that module for why: error 1053
in venvs), starts at boot (``SERVICE_AUTO_START``) as LocalSystem in session 0 (no console, no window
can flash), and its recovery actions are mapped from the spec's restart policy and backoff: restart the
host after the first, second and later failures unless every program is ``restart = "never"``. A
supervisor exiting 78 (configuration error) is reported as a non-crash stop, which SCM does not
recover from, matching the contract on the other managers. Where SCM refuses the recovery actions,
``install`` says so in a warning line (the service still runs; only SCM's restart of a crashed
supervisor is missing).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DaemonkitError
from .base import Artifact, Availability, BackendContext, BackendStatus

if TYPE_CHECKING:
    from ..paths import Home
    from ..spec import Spec

WAIT_STATE = 30.0  # seconds for SCM to report RUNNING / STOPPED
RESET_PERIOD = 24 * 3600  # the failure count resets after a day without failure
HOST_FILE = Path(__file__).with_name("winservice_host.py")


def service_name(spec: "Spec") -> str:
    return f"{spec.app}-{spec.name}" if spec.app != "daemonkit" else f"daemonkit-{spec.name}"


def interpreter_and_sites(prefix: str | None = None, base_prefix: str | None = None,
                          executable: str | None = None) -> tuple[str, list[str]]:
    """The base interpreter (never a venv launcher) and the site dirs the host must add: the venv's
    site-packages when running in one, and the directory daemonkit itself is imported from."""
    prefix = sys.prefix if prefix is None else prefix
    base_prefix = getattr(sys, "base_prefix", prefix) if base_prefix is None else base_prefix
    executable = sys.executable if executable is None else executable
    sites: list[str] = []
    python = executable
    if os.path.normcase(prefix) != os.path.normcase(base_prefix):
        python = os.path.join(base_prefix, "python.exe")
        sites.append(os.path.join(prefix, "Lib", "site-packages"))
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    if package_root not in sites:
        sites.append(package_root)
    return python, sites


def binary_path(spec: "Spec", home: "Home", python: str, sites: list[str], grace: float) -> str:
    from ..proc.cmdline import command_line

    argv = [python, str(HOST_FILE), "--service", service_name(spec), "--home", str(home.path),
            "--grace", f"{grace:g}"]
    for directory in sites:
        argv += ["--site", directory]
    return command_line(argv).line


def recovery_actions(spec: "Spec") -> list[tuple[int, int]]:
    """(action, delay ms) triples for SCM. No restart when every program is restart = "never"."""
    import win32service

    if all(p.restart == "never" for p in spec.programs):
        return [(win32service.SC_ACTION_NONE, 0)]
    backoff = spec.programs[0].backoff
    first = max(1000, int(backoff.initial * 1000))
    later = max(first, int(min(backoff.max, 60.0) * 1000))
    return [(win32service.SC_ACTION_RESTART, first), (win32service.SC_ACTION_RESTART, first * 5),
            (win32service.SC_ACTION_RESTART, later)]


def set_recovery_actions(handle: Any, spec: "Spec", name: str) -> list[str]:
    """Give the service SCM's recovery actions (``recovery_actions``); ``[]`` when SCM took them, else
    one warning line: what failed, what it means, and the ``sc failure`` command that sets them by
    hand. Not an install error: the service itself is registered and runs; only SCM's restart of a
    crashed supervisor is missing (a handle or a policy that may not change them, an SCM that does not
    implement them)."""
    import win32service

    actions = recovery_actions(spec)
    try:
        win32service.ChangeServiceConfig2(handle, win32service.SERVICE_CONFIG_FAILURE_ACTIONS, {
            "ResetPeriod": RESET_PERIOD, "RebootMsg": None, "Command": None, "Actions": actions})
        return []
    except (win32service.error, AttributeError) as exc:  # AttributeError: a pywin32 without the constants
        why = _error_text(exc)
    restarts = [delay for action, delay in actions if action == win32service.SC_ACTION_RESTART]
    if restarts:
        wanted = "restart after " + ", ".join(f"{d / 1000:g} s" for d in restarts)
        meaning = ("SCM will not restart the supervisor if it crashes (the supervisor still restarts its "
                   "programs while it runs)")
    else:
        wanted = "no restart (every program is restart = \"never\")"
        meaning = "SCM keeps whatever recovery actions the service had before"
    sc_actions = "/".join(f"{'restart' if a == win32service.SC_ACTION_RESTART else 'none'}/{d}" for a, d in actions)
    return [f"warning: could not set the recovery actions of the Windows Service {name} ({wanted}): {why}; "
            f"{meaning}. To set them by hand, from an elevated prompt: "
            f"sc failure {name} reset= {RESET_PERIOD} actions= {sc_actions}"]


def _error_text(exc: BaseException) -> str:
    strerror, winerror = getattr(exc, "strerror", None), getattr(exc, "winerror", None)
    if strerror and winerror is not None:
        return f"{getattr(exc, 'funcname', None) or 'ChangeServiceConfig2'}: {strerror.rstrip('.')} (error {winerror})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class WinServiceBackend:
    name = "winservice"

    def __init__(self, ctx: BackendContext | None = None) -> None:
        self.ctx = ctx if ctx is not None else BackendContext()

    def available(self, scope: str = "system") -> Availability:
        if scope != "system":
            return Availability(False, "a Windows Service runs at boot for the whole machine (system scope)")
        if sys.platform != "win32":
            return Availability(False, "not Windows")
        try:
            import win32service  # noqa: F401
        except ImportError:
            return Availability(False, "pywin32 is not installed: pip install daemonkit[windows-service]")
        from .chooser import is_admin

        if not is_admin():
            return Availability(False, "installing a service needs an elevated (administrator) prompt")
        return Availability(True, "a Windows Service starts it at boot and SCM restarts it on failure")

    def render(self, spec: "Spec", home: "Home") -> list[Artifact]:
        return []  # the registration lives in SCM's database, not in a file

    def _binary(self, spec: "Spec", home: "Home") -> str:
        python, sites = interpreter_and_sites()
        return binary_path(spec, home, python, sites, spec.max_stop_grace + 5)

    def install(self, spec: "Spec", home: "Home") -> list[str]:
        import win32service

        name = service_name(spec)
        binary = self._binary(spec, home)
        with _scm() as scm:
            try:
                handle = win32service.OpenService(scm, name, win32service.SERVICE_ALL_ACCESS)
                win32service.ChangeServiceConfig(
                    handle, win32service.SERVICE_WIN32_OWN_PROCESS, win32service.SERVICE_AUTO_START,
                    win32service.SERVICE_ERROR_NORMAL, binary, None, 0, None, None, None, name)
                verb = "updated"
            except win32service.error as exc:
                if exc.winerror != 1060:  # ERROR_SERVICE_DOES_NOT_EXIST
                    raise _scm_error(f"cannot open the service {name}", exc) from None
                try:
                    handle = win32service.CreateService(
                        scm, name, f"{spec.name} (daemonkit)", win32service.SERVICE_ALL_ACCESS,
                        win32service.SERVICE_WIN32_OWN_PROCESS, win32service.SERVICE_AUTO_START,
                        win32service.SERVICE_ERROR_NORMAL, binary, None, 0, None, None, None)
                except win32service.error as exc2:
                    raise _scm_error(f"cannot create the service {name}", exc2) from None
                verb = "created"
            try:
                try:
                    win32service.ChangeServiceConfig2(handle, win32service.SERVICE_CONFIG_DESCRIPTION,
                                                      f"Managed by daemonkit: supervisor of {spec.name}")
                except win32service.error:
                    pass  # the description is only what services.msc shows: nothing depends on it
                unset = set_recovery_actions(handle, spec, name)
            finally:
                win32service.CloseServiceHandle(handle)
        recovery = "" if unset else ", restarted by SCM on failure"
        return [f"{verb} the Windows Service {name} (starts at boot{recovery})", *unset,
                f"start it now with 'daemonkit start {spec.name}'"]

    def uninstall(self, spec: "Spec", home: "Home") -> list[str]:
        import win32service

        name = service_name(spec)
        if self._state(name) is None:
            return [f"no Windows Service {name}: nothing to remove"]
        lines = []
        try:
            self.stop(spec, home)
        except DaemonkitError as exc:
            lines.append(f"could not stop it cleanly first ({exc.message}); removing it anyway")
        with _scm() as scm:
            handle = win32service.OpenService(scm, name, win32service.SERVICE_ALL_ACCESS)
            try:
                win32service.DeleteService(handle)
            except win32service.error as exc:
                raise _scm_error(f"cannot remove the service {name}", exc) from None
            finally:
                win32service.CloseServiceHandle(handle)
        # SCM only marks it for deletion while handles to it are open; wait until it is really gone.
        deadline = time.monotonic() + WAIT_STATE
        while self._state(name) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        return lines + [f"removed the Windows Service {name}"]

    def start(self, spec: "Spec", home: "Home") -> None:
        import win32service
        import win32serviceutil

        name = service_name(spec)
        if self._state(name) == win32service.SERVICE_RUNNING:
            return
        try:
            win32serviceutil.StartService(name)
        except win32service.error as exc:
            if exc.winerror != 1056:  # ERROR_SERVICE_ALREADY_RUNNING
                raise _scm_error(f"cannot start the service {name}", exc) from None
        self._wait(name, win32service.SERVICE_RUNNING)

    def stop(self, spec: "Spec", home: "Home") -> None:
        import win32service
        import win32serviceutil

        name = service_name(spec)
        if self._state(name) in (None, win32service.SERVICE_STOPPED):
            return
        try:
            win32serviceutil.StopService(name)
        except win32service.error as exc:
            # NOT_ACTIVE; CANNOT_ACCEPT_CTRL / pipe closed: the host is ending on its own right now.
            if exc.winerror not in (1062, 1061, 232, 109):
                raise _scm_error(f"cannot stop the service {name}", exc) from None
        self._wait(name, win32service.SERVICE_STOPPED, spec.max_stop_grace + WAIT_STATE)

    def status(self, spec: "Spec", home: "Home") -> BackendStatus:
        import win32service

        name = service_name(spec)
        state = self._state(name)
        if state is None:
            return BackendStatus(self.name, installed=False, active=False, enabled=False,
                                 detail=f"no Windows Service {name}")
        drift = []
        with _scm() as scm:
            handle = win32service.OpenService(scm, name, win32service.SERVICE_QUERY_CONFIG)
            try:
                config = win32service.QueryServiceConfig(handle)
            finally:
                win32service.CloseServiceHandle(handle)
        if config[3] != self._binary(spec, home):
            drift.append(f"the service runs {config[3]!r}; daemonkit would run {self._binary(spec, home)!r}")
        if config[1] != win32service.SERVICE_AUTO_START:
            drift.append("the service does not start at boot (start type changed)")
        return BackendStatus(self.name, installed=True, active=state == win32service.SERVICE_RUNNING,
                             enabled=config[1] == win32service.SERVICE_AUTO_START, drift=drift,
                             detail=f"Windows Service {name}: {_STATE_NAMES.get(state, state)}")

    # ------------------------------------------------------------------ helpers
    def _state(self, name: str) -> int | None:
        import win32service

        with _scm() as scm:
            try:
                handle = win32service.OpenService(scm, name, win32service.SERVICE_QUERY_STATUS)
            except win32service.error as exc:
                if exc.winerror == 1060:
                    return None
                raise _scm_error(f"cannot query the service {name}", exc) from None
            try:
                return int(win32service.QueryServiceStatus(handle)[1])
            finally:
                win32service.CloseServiceHandle(handle)

    def _wait(self, name: str, wanted: int, timeout: float = WAIT_STATE) -> None:
        deadline = time.monotonic() + timeout
        state = self._state(name)
        while state != wanted and time.monotonic() < deadline:
            time.sleep(0.1)
            state = self._state(name)
        if state != wanted:
            raise DaemonkitError(f"the service {name} did not reach {_STATE_NAMES.get(wanted, wanted)}",
                                 f"it is {_STATE_NAMES.get(state, state)} after {timeout:g}s",
                                 "see logs\\service.log in the daemon's home, and the Event Viewer")


_STATE_NAMES: dict[Any, str] = {1: "stopped", 2: "start pending", 3: "stop pending", 4: "running",
                                5: "continue pending", 6: "pause pending", 7: "paused", None: "not installed"}


class _scm:
    def __enter__(self) -> Any:
        import win32service

        try:
            self.handle = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)
        except win32service.error as exc:
            raise _scm_error("cannot open the Service Control Manager", exc) from None
        return self.handle

    def __exit__(self, *exc: object) -> None:
        import win32service

        win32service.CloseServiceHandle(self.handle)


def _scm_error(what: str, exc: Any) -> DaemonkitError:
    hint = ("run from an elevated (administrator) prompt" if getattr(exc, "winerror", 0) == 5
            else "see the Event Viewer (System log)")
    return DaemonkitError(what, f"winerror {getattr(exc, 'winerror', '?')}: {getattr(exc, 'strerror', exc)}", hint)
