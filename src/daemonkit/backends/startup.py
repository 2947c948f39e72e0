"""Startup-folder backend (Windows, user scope): the fallback when no logon task can be registered.

A ``.cmd`` launcher in the user's Startup folder (found with ``SHGetKnownFolderPath``, never by
building ``%APPDATA%\\...`` strings: the folder can be redirected) starts the supervisor with the
console-less ``pythonw.exe`` at each logon. Lessons built in:

- the launcher first checks that its interpreter and the daemon's spec still exist and exits 0 quietly
  when not (``if not exist ... exit /b 0``): an uninstalled app must not leave a failing window behind;
- every path in it is quoted with ``cmdline.batch_file_line`` (``%``, ``^``, ``&``... in user names and
  paths), delayed expansion is off and the code page is UTF-8, so non-ASCII profile paths work;
- it is written atomically through a temp file OUTSIDE the Startup folder: every file there runs at
  logon (a stray ``.tmp`` once opened an editor);
- exactly one autostart: installing it removes the daemon's logon task, and the schtasks backend
  removes this item when its task registers.

The ``.cmd`` shows a console for a moment at logon (cmd.exe is a console program); the supervisor it
starts has none. Nothing restarts the supervisor if it dies (Task Scheduler's RestartOnFailure is what
the preferred backend adds); its programs are still restarted by the supervisor.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import DaemonkitError
from . import _files
from .base import Artifact, Availability, BackendContext, BackendStatus, supervisor_argv

if TYPE_CHECKING:
    from ..paths import Home
    from ..spec import Spec

# FOLDERID_Startup
_FOLDERID_STARTUP = "{B97D20BB-F46A-4C97-BA10-5E3608430854}"


def known_startup_folder() -> Path:
    """The current user's Startup folder from the shell (honours folder redirection)."""
    import ctypes
    from ctypes import wintypes

    class GUID(ctypes.Structure):
        _fields_ = [("Data1", wintypes.DWORD), ("Data2", wintypes.WORD), ("Data3", wintypes.WORD),
                    ("Data4", ctypes.c_ubyte * 8)]

    guid = GUID()
    ole32 = ctypes.WinDLL("ole32")
    if ole32.CLSIDFromString(ctypes.c_wchar_p(_FOLDERID_STARTUP), ctypes.byref(guid)) != 0:
        raise DaemonkitError("cannot parse FOLDERID_Startup", "CLSIDFromString failed", "a daemonkit bug")
    shell32 = ctypes.WinDLL("shell32")
    shell32.SHGetKnownFolderPath.argtypes = [ctypes.POINTER(GUID), wintypes.DWORD, wintypes.HANDLE,
                                             ctypes.POINTER(ctypes.c_wchar_p)]
    out = ctypes.c_wchar_p()
    hr = shell32.SHGetKnownFolderPath(ctypes.byref(guid), 0, None, ctypes.byref(out))
    if hr != 0:
        raise DaemonkitError("cannot find your Startup folder", f"SHGetKnownFolderPath returned 0x{hr & 0xFFFFFFFF:08x}",
                             "use --backend detached, or check your user profile")
    try:
        return Path(out.value or "")
    finally:
        ole32.CoTaskMemFree(out)


def launcher_name(spec: "Spec") -> str:
    return f"{spec.app}-{spec.name}.cmd" if spec.app != "daemonkit" else f"daemonkit-{spec.name}.cmd"


def windowless(python: str) -> str:
    """``pythonw.exe`` beside ``python`` when there is one: no console for the supervisor."""
    from ..proc.spawn import windowless_python

    return windowless_python(python)


def render_launcher(spec: "Spec", home: "Home", python: str) -> bytes:
    from ..proc.cmdline import batch_file_line

    argv = supervisor_argv(home, python) + ["--backend", "startup"]
    lines = [
        "@echo off",
        f"rem {_files.MARKER}: 'daemonkit install' rewrites this file and 'daemonkit uninstall' removes it.",
        "setlocal DisableDelayedExpansion",
        "chcp 65001 >nul",
        # Uninstalled (or moved) without 'daemonkit uninstall': do nothing, quietly.
        f"if not exist {batch_file_line([python])} exit /b 0",
        f"if not exist {batch_file_line([str(home.spec_file)])} exit /b 0",
        # start: do not keep this console open while the (console-less) supervisor runs.
        f'start "" /b {batch_file_line(argv)}',
        "exit /b 0",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


Spawner = Callable[["Home", str, str], None]


class StartupBackend:
    name = "startup"

    def __init__(self, ctx: BackendContext | None = None, *, spawner: "Spawner | None" = None) -> None:
        """``spawner(home, python, backend)`` starts the supervisor now (tests record it instead)."""
        self.ctx = ctx if ctx is not None else BackendContext()
        self.spawner = spawner or spawn_supervisor

    # ------------------------------------------------------------------ where
    def folder(self) -> Path:
        override = self.ctx.dirs.get("startup_dir")
        if override is not None:
            return Path(override)
        if sys.platform != "win32":
            raise DaemonkitError("no Startup folder here", "the Startup folder exists on Windows only",
                                 "use --backend detached")
        return known_startup_folder()

    def launcher_path(self, spec: "Spec") -> Path:
        return self.folder() / launcher_name(spec)

    def python(self) -> str:
        return windowless(self.ctx.python)

    # ------------------------------------------------------------------ protocol
    def available(self, scope: str = "user") -> Availability:
        if scope != "user":
            return Availability(False, "the Startup folder starts programs at a user's logon, not at boot")
        if sys.platform != "win32" and "startup_dir" not in self.ctx.dirs:
            return Availability(False, "not Windows")
        try:
            folder = self.folder()
        except DaemonkitError as exc:
            return Availability(False, exc.message)
        return Availability(True, f"an item in your Startup folder ({folder}) starts it at logon")

    def render(self, spec: "Spec", home: "Home") -> list[Artifact]:
        return [Artifact(self.launcher_path(spec), render_launcher(spec, home, self.python()), 0o644)]

    def install(self, spec: "Spec", home: "Home") -> list[str]:
        if spec.scope != "user":
            raise DaemonkitError(f"cannot install {spec.name} in the Startup folder", "it is a system-scope daemon",
                                 "use --backend winservice (elevated) for system scope")
        lines = []
        for artifact in self.render(spec, home):
            write_outside_then_move(artifact, home.path)
            lines.append(f"wrote {artifact.path}")
        lines += remove_logon_task(spec, home, self.ctx)  # exactly one autostart
        self.start(spec, home)  # like a logon would, now (the caller waits until it is ready)
        lines.append(f"{spec.name} starts at each logon from your Startup folder; started it now")
        return lines

    def uninstall(self, spec: "Spec", home: "Home") -> list[str]:
        path = self.launcher_path(spec)
        removed = _files.remove_file(path)
        return [f"removed {path}" if removed else f"no Startup item {path}"]

    def start(self, spec: "Spec", home: "Home") -> None:
        """Spawn the supervisor detached, as the launcher would (the caller waits for readiness)."""
        from ..store.lock import probe_lock

        if not probe_lock(home.lock_file).held:
            self.spawner(home, self.ctx.python, "startup")

    def stop(self, spec: "Spec", home: "Home") -> None:
        from .. import api

        api.stop_supervisor(spec, home)

    def status(self, spec: "Spec", home: "Home") -> BackendStatus:
        from ..store.lock import probe_lock

        path = self.launcher_path(spec)
        content = _files.read_file(path)
        drift = []
        if content is not None:
            expected = render_launcher(spec, home, self.python())
            if content != expected:
                drift.append(f"{path} differs from what daemonkit writes (edited, or installed by another "
                             "version or Python): 'daemonkit install' rewrites it")
        return BackendStatus(self.name, installed=content is not None, active=probe_lock(home.lock_file).held,
                             enabled=content is not None, drift=drift,
                             detail=f"Startup item {path}" if content is not None else f"no Startup item at {path}",
                             evidence=[str(path)])


def spawn_supervisor(home: "Home", python: str, backend: str) -> None:
    """Start ``supervise --backend BACKEND`` detached (hidden console, breakaway with fallback); a denied
    breakaway is recorded for ``status --deep``: that supervisor dies with its starter's job."""
    from ..proc.spawn import spawn_detached
    from ..store.events import EventLog

    spawned = spawn_detached(supervisor_argv(home, python) + ["--backend", backend], log_path=home.supervisor_log,
                             cwd=home.path)
    if spawned.breakaway is False:
        ledger = EventLog(home.events_file)
        ledger.emit("breakaway-denied", None, spawned.identity.pid, note=spawned.note)
        ledger.close()


def write_outside_then_move(artifact: Artifact, staging_dir: Path) -> None:
    """Atomic replace without ever leaving a temp file in the target folder: the temp file is made in
    ``staging_dir`` (the daemon's home) and moved in. Across volumes a move cannot be atomic; then the
    file is written in place (a torn write of a .cmd is harmless next to a stray temp that runs)."""
    target = artifact.path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".startup-", suffix=".tmp", dir=staging_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(artifact.content)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.replace(tmp, target)
            except OSError as exc:
                if getattr(exc, "winerror", None) != 17 and exc.errno != 18:  # not same device
                    raise
                target.write_bytes(artifact.content)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise DaemonkitError(f"cannot write {target}", exc.strerror or str(exc),
                             "check that your Startup folder is writable") from None


def remove_logon_task(spec: "Spec", home: "Home", ctx: BackendContext) -> list[str]:
    """Delete the daemon's scheduled task if it exists (the other autostart)."""
    from .schtasks import SCHTASKS_TIMEOUT, schtasks_exe, task_name

    name = task_name(spec, ctx)
    exe = schtasks_exe(ctx)
    query = ctx.runner.run([exe, "/Query", "/TN", name], timeout=SCHTASKS_TIMEOUT)
    if not query.ok:
        return []
    deleted = ctx.runner.run([exe, "/Delete", "/TN", name, "/F"], timeout=SCHTASKS_TIMEOUT)
    if deleted.ok:
        return [f"removed the scheduled task {name} (one autostart only)"]
    return [f"could not remove the scheduled task {name} ({deleted.summary()}): remove it in Task Scheduler, "
            "or the daemon may start twice at logon"]
