"""Respawn after an update: put a running daemon onto the new code, once, never two at a time.

The protocol, for an app that upgrades itself:

1. the updater replaces the files (the app's package, maybe daemonkit too);
2. it calls ``respawn_after_update(spec)``; then the supervisor restarts, and with it every program,
   **exactly once**: the old supervisor (and its programs) is stopped and gone, by identity, before the
   new one starts, so no moment has two instances bound to the same port or files;
3. the new supervisor imports the new code and starts the programs from the new files; readiness is
   verified as on every ``start``.

Who does step 2 depends on the caller:

* an updater *outside* the daemon (``myapp update`` in a terminal) respawns in-process and gets the
  result back;
* a caller *inside* the daemon (the gateway updating itself through its own API), or an updater that
  must exit before files can be replaced (``--after-exit PID``), cannot do it itself: the stop would kill
  it. It starts a detached **watcher** (a new session; breakaway from the job on Windows, with the
  fallback recorded) that leaves the caller's process tree, waits for the caller to exit when asked
  (by identity, bounded), then does the respawn and writes what it did to ``logs/respawn.log``;
* under a service manager the manager is asked (``systemctl restart``, ``launchctl kickstart -k``), so
  its own bookkeeping and restart policy stay right; from inside the unit the request does not block,
  because the manager's restart ends the caller too.

A daemon that is not running is never started by a respawn: it was stopped on purpose, and will start
on the new code next time anyway. The watcher re-checks this right before it acts: if the supervisor it
was sent for is gone, or another one took its place, it does nothing.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from .errors import DaemonkitError

if TYPE_CHECKING:
    from .paths import Home
    from .proc.identity import ProcessIdentity
    from .spec import Spec

RESPAWN_LOG = "respawn.log"
DEFAULT_AFTER_EXIT_TIMEOUT = 120.0  # how long a watcher waits for the updater to exit


@dataclass
class RespawnResult:
    """What ``respawn_after_update`` did. ``action`` is one of:

    ``restarted`` (done in this process; ``new_supervisor_pid`` is ready), ``restarted-by-manager``
    (the service manager restarted it), ``requested-from-manager`` (asked without waiting, from inside
    the unit), ``scheduled`` (a watcher will do it; see ``watcher_pid`` and ``log``), ``not-running``
    (nothing to do), ``skipped`` (the watcher found the situation changed; ``detail`` says how)."""

    name: str
    action: str
    detail: str
    old_supervisor_pid: int | None = None
    new_supervisor_pid: int | None = None
    backend: str = "detached"
    watcher_pid: int | None = None
    log: str = ""
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ entry points


def respawn_after_update(spec: "Spec", home: "Home | None" = None, *, after_exit: int | None = None,
                         detach: bool | None = None, timeout: float | None = None) -> RespawnResult:
    """Restart the running daemon onto the code now on disk; see the module docstring.

    ``after_exit``: a pid (usually the caller's own) that must exit before the restart; implies a watcher.
    ``detach``: force (True) or forbid (False) the watcher; by default it is used when the caller runs
    inside the daemon (a program, or a process of the unit) or ``after_exit`` is given.
    ``timeout``: how long to wait for readiness (default: from the spec), and for ``after_exit``.
    """
    from . import api
    from .store.lock import probe_lock

    home = home or api.home_for_spec(spec)
    lock = probe_lock(home.lock_file)
    if not lock.held:
        return RespawnResult(spec.name, "not-running",
                             f"{spec.name} is not running, so nothing was restarted; its next start uses the new code")
    # The update may have changed the spec too (a new argv, a new readiness check): the new supervisor
    # reads it from the home, so it is saved before anything restarts (the running one keeps its copy).
    api.save_spec(spec, home)
    supervisor = _identity_of(lock.record)
    inside = supervisor is not None and caller_inside(spec, supervisor)
    if detach is False and (inside or after_exit is not None):
        raise DaemonkitError(f"cannot respawn {spec.name} from this process",
                             "it runs inside the daemon (or must exit first), and stopping the daemon would end it",
                             "leave detach at its default so that a detached watcher does it")
    if detach or inside or after_exit is not None:
        waited = None
        if after_exit is not None:
            from .proc.identity import ProcessIdentity

            waited = ProcessIdentity.of(after_exit)
            if waited is None:
                waited_note = f"pid {after_exit} has exited already"
            else:
                waited_note = f"waits for {waited.describe()} to exit"
        else:
            waited_note = ""
        return schedule_watcher(spec, home, expect=supervisor, after_exit=waited, timeout=timeout,
                                note=waited_note)
    return respawn_now(spec, home, expect=supervisor, timeout=timeout)


def respawn_now(spec: "Spec", home: "Home", *, expect: "ProcessIdentity | None" = None,
                timeout: float | None = None, from_inside: bool = False) -> RespawnResult:
    """Restart now, in this process: stop the supervisor that holds the lock (only if it is ``expect``,
    when given), wait until it is gone, start the new one and wait for readiness."""
    from . import api
    from .store.lock import probe_lock

    lock = probe_lock(home.lock_file)
    current = _identity_of(lock.record) if lock.held else None
    if not lock.held:
        return RespawnResult(spec.name, "skipped", f"{spec.name} is not running any more (stopped on purpose, or it "
                             "died): not restarting it")
    if expect is not None and current is not None and current != expect:
        return RespawnResult(spec.name, "skipped", f"another supervisor (pid {current.pid}) replaced pid {expect.pid} "
                             "meanwhile; it runs the new code already", old_supervisor_pid=expect.pid,
                             new_supervisor_pid=current.pid)
    old_pid = current.pid if current else None
    record = api.read_install_record(home)
    backend_name = str(record.get("backend")) if record else "detached"
    if backend_name != "detached":
        return _respawn_with_manager(spec, home, backend_name, old_pid, timeout, wait=not from_inside)
    stopped = api.stop_supervisor(spec, home)
    if current is not None and current.is_alive():
        raise DaemonkitError(f"{spec.name} did not stop for the respawn",
                             f"supervisor {current.describe()} is still alive",
                             f"stop it ({_cmd(spec, 'stop')}) and start it again")
    started = api.start_supervisor(spec, home, timeout)
    return RespawnResult(spec.name, "restarted", f"{spec.name} restarted onto the new code "
                         f"(supervisor pid {old_pid} -> {started.supervisor_pid})", old_supervisor_pid=old_pid,
                         new_supervisor_pid=started.supervisor_pid, notes=[*stopped.notes, *started.notes])


def schedule_watcher(spec: "Spec", home: "Home", *, expect: "ProcessIdentity | None",
                     after_exit: "ProcessIdentity | None" = None, timeout: float | None = None,
                     note: str = "") -> RespawnResult:
    """Start the detached watcher that respawns ``spec`` (see ``run_watcher``) and return at once."""
    import subprocess

    from .proc.identity import ProcessIdentity

    home.ensure()
    log = home.logs_dir / RESPAWN_LOG
    argv = [sys.executable, "-m", "daemonkit", "respawn", "--home", str(home.path), "--detach"]
    if expect is not None:
        argv += ["--expect", _fmt(expect)]
    if after_exit is not None:
        argv += ["--after-exit", _fmt(after_exit)]
    if timeout is not None:
        argv += ["--timeout", repr(float(timeout))]
    # The launcher re-spawns the watcher detached and exits, so the watcher leaves our process tree
    # (a supervisor stopping the program that called us ends that program's tree, not the watcher).
    launched = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                              env=watcher_env())
    if launched.returncode != 0:
        raise DaemonkitError(f"could not start the respawn watcher for {spec.name}",
                             (launched.stderr.strip() or launched.stdout.strip()
                              or f"exit {launched.returncode}")[-500:],
                             f"run '{_cmd(spec, 'restart')}' by hand")
    watcher_pid, _, extra = launched.stdout.strip().partition(" ")
    watcher = ProcessIdentity.of(int(watcher_pid)) if watcher_pid.isdigit() else None
    notes = [n for n in (note, extra.strip()) if n]
    return RespawnResult(spec.name, "scheduled", f"a watcher (pid {watcher_pid}) restarts {spec.name} "
                         + ("after that process exits" if after_exit is not None else "now")
                         + f"; it logs to {log}", old_supervisor_pid=expect.pid if expect else None,
                         watcher_pid=watcher.pid if watcher else None, log=str(log), notes=notes)


# ------------------------------------------------------------------------------------------ the watcher


def launch_watcher(argv_tail: Sequence[str], home: "Home") -> int:
    """``daemonkit respawn --detach ...``: spawn the real watcher detached and print its pid."""
    from .proc.spawn import spawn_detached

    argv = [sys.executable, "-m", "daemonkit", "respawn", *argv_tail]
    spawned = spawn_detached(argv, log_path=home.logs_dir / RESPAWN_LOG, cwd=home.path, env=watcher_env())
    if spawned.breakaway is False:
        from .store.events import EventLog

        ledger = EventLog(home.events_file)
        ledger.emit("breakaway-denied", None, spawned.identity.pid, note=f"respawn watcher: {spawned.note}")
        ledger.close()
    print(spawned.identity.pid, spawned.note)
    return 0


def run_watcher(spec: "Spec", home: "Home", *, expect: "ProcessIdentity | None",
                after_exit: "ProcessIdentity | None", timeout: float | None) -> int:
    """The watcher's body. Its stdout/stderr are ``logs/respawn.log``; returns 0 unless the respawn failed."""
    from .store.events import EventLog

    say(f"respawn watcher for {spec.name} (pid {os.getpid()})")
    ledger = EventLog(home.events_file)
    try:
        if after_exit is not None:
            bound = timeout if timeout is not None else DEFAULT_AFTER_EXIT_TIMEOUT
            say(f"waiting up to {bound:g}s for {after_exit.describe()} to exit")
            if not wait_gone(after_exit, bound):
                say(f"pid {after_exit.pid} did not exit within {bound:g}s: not restarting (the update may still "
                    f"be running); restart by hand with '{_cmd(spec, 'restart')}'")
                ledger.emit("respawn-abandoned", None, os.getpid(), reason=f"pid {after_exit.pid} still running")
                return 1
        try:
            result = respawn_now(spec, home, expect=expect, timeout=timeout, from_inside=_inside_unit(spec))
        except DaemonkitError as exc:
            say(f"respawn failed: {exc.message}")
            if exc.details:
                say(exc.details)
            ledger.emit("respawn-failed", None, os.getpid(), reason=exc.message)
            return 1
        say(f"{result.action}: {result.detail}")
        ledger.emit(f"respawn-{result.action}", None, result.new_supervisor_pid, detail=result.detail)
        return 0
    finally:
        ledger.close()


# What a supervisor gives each program: a process carrying these belongs to that program, and is ended
# with it (the supervisor kills adopted orphans named by DAEMONKIT_PROGRAM when the program exits).
_PROGRAM_ENV = ("DAEMONKIT_PROGRAM", "NOTIFY_SOCKET", "DAEMONKIT_STOP_EVENT")


def watcher_env() -> dict[str, str]:
    """The caller's environment without the marks of a program: the watcher is nobody's child."""
    return {k: v for k, v in os.environ.items() if k not in _PROGRAM_ENV}


def wait_gone(identity: "ProcessIdentity", timeout: float) -> bool:
    """Wait until the process with this identity has exited (a recycled pid counts as exited)."""
    import psutil

    proc = identity.process()
    if proc is None:
        return True
    try:
        proc.wait(timeout=timeout)
        return True
    except psutil.TimeoutExpired:
        return not identity.is_alive()
    except psutil.NoSuchProcess:
        return True


def say(text: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)


# ------------------------------------------------------------------------------------------ managers


def _respawn_with_manager(spec: "Spec", home: "Home", backend_name: str, old_pid: int | None,
                          timeout: float | None, *, wait: bool) -> RespawnResult:
    from . import api
    from .backends import get_backend

    backend = get_backend(backend_name)
    if wait:
        # Stop (and wait for the old supervisor to be gone), then start through the manager and wait for
        # readiness: api.restart does both through the manager, which keeps its own state right.
        started = api.restart(spec, home, timeout=timeout)
        return RespawnResult(spec.name, "restarted-by-manager", f"{backend_name} restarted {spec.name} onto the new "
                             f"code (supervisor pid {old_pid} -> {started.supervisor_pid})", old_supervisor_pid=old_pid,
                             new_supervisor_pid=started.supervisor_pid, backend=backend_name)
    manager_restart(backend, spec, home, block=False)
    return RespawnResult(spec.name, "requested-from-manager", f"asked {backend_name} to restart {spec.name}; the "
                         f"restart ends this process too. Check with '{_cmd(spec, 'status')}'",
                         old_supervisor_pid=old_pid, backend=backend_name)


def manager_restart(backend: object, spec: "Spec", home: "Home", *, block: bool = True) -> None:
    """One restart job in the service manager: it stops the old supervisor before it starts the new one,
    and finishes even when the caller is ended by the stop. Backends may provide ``restart()``;
    otherwise the manager's own restart verb is used, or stop then start."""
    restart = getattr(backend, "restart", None)
    if callable(restart):
        restart(spec, home)
        return
    name = getattr(backend, "name", "")
    if name == "systemd":
        from .backends.systemd_unit import unit_name

        unit = unit_name(spec)
        verb = ["restart"] if block else ["restart", "--no-block"]
        result = backend._systemctl(spec.scope, *verb, unit)  # type: ignore[attr-defined]
        if not result.ok:
            raise DaemonkitError(f"systemd could not restart {unit}", result.summary(),
                                 f"journalctl {'--user ' if spec.scope == 'user' else ''}-u {unit} -n 50")
        return
    if name == "launchd":
        target = backend.target(spec)  # type: ignore[attr-defined]
        result = backend._launchctl("kickstart", "-k", target)  # type: ignore[attr-defined]
        if not result.ok:
            raise DaemonkitError(f"launchd could not restart {target}", result.summary(), f"launchctl print {target}")
        return
    backend.stop(spec, home)  # type: ignore[attr-defined]
    backend.start(spec, home)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ helpers


def caller_inside(spec: "Spec", supervisor: "ProcessIdentity") -> bool:
    """Whether this process would be ended by stopping the daemon: a descendant of its supervisor, or
    (systemd) a member of its unit's cgroup."""
    import psutil

    try:
        for parent in psutil.Process().parents():
            if parent.pid == supervisor.pid and abs(parent.create_time() - supervisor.create_time) < 0.01:
                return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return _inside_unit(spec)


def _inside_unit(spec: "Spec") -> bool:
    if not sys.platform.startswith("linux"):
        return False
    from .backends.systemd_unit import unit_name

    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            return f"/{unit_name(spec)}" in f.read()
    except OSError:
        return False


def _identity_of(record: object) -> "ProcessIdentity | None":
    from .proc.identity import ProcessIdentity

    return ProcessIdentity.from_record(record)


def _fmt(identity: "ProcessIdentity") -> str:
    return f"{identity.pid}:{identity.create_time!r}"


def parse_identity(text: str) -> "ProcessIdentity":
    """``PID:CREATE_TIME`` (as the watcher's command line carries it), or a bare ``PID`` (captured now)."""
    from .proc.identity import ProcessIdentity

    pid_text, sep, ctime = text.partition(":")
    try:
        pid = int(pid_text)
        if sep:
            return ProcessIdentity(pid, float(ctime))
    except ValueError:
        raise DaemonkitError(f"bad process identity {text!r}", "expected PID or PID:CREATE_TIME") from None
    found = ProcessIdentity.of(pid)
    # A pid that is gone already has "exited": an identity no live process matches.
    return found if found is not None else ProcessIdentity(pid, -1.0)


def _cmd(spec: "Spec", verb: str) -> str:
    return f"daemonkit {verb} {spec.name}" if spec.app == "daemonkit" else f"{spec.app} ... {verb}"


__all__ = ["RespawnResult", "respawn_after_update", "respawn_now", "schedule_watcher", "run_watcher",
           "manager_restart", "caller_inside", "wait_gone"]
