"""Start the supervisor detached from the caller, and know that it really started.

POSIX: a new session (no controlling terminal, no SIGHUP when the terminal closes), stdin from
/dev/null, stdout+stderr appended to the home's ``logs/supervisor.log``, cwd in the home.

Windows: ``daemonkit.proc.winspawn.spawn_detached`` (hidden console, new process group, breakaway from
the caller's job, retried inside the job on winerror 5); the outcome comes back in ``SpawnResult`` and
the caller records a denied breakaway as an event.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..compat import IS_WINDOWS
from ..store.rotating import rotate
from .identity import ProcessIdentity

SUPERVISOR_LOG_MAX = 1024 * 1024
SUPERVISOR_LOG_BACKUPS = 2


@dataclass(frozen=True)
class SpawnResult:
    identity: ProcessIdentity
    breakaway: bool | None  # Windows: whether the child left the caller's job; None on POSIX
    note: str = ""


def spawn_detached(argv: Sequence[str], *, log_path: Path, cwd: Path | None = None,
                   env: Mapping[str, str] | None = None) -> SpawnResult:
    """Start ``argv`` detached with its output appended to ``log_path``; returns its identity."""
    log_path = Path(log_path)
    try:
        if log_path.stat().st_size > SUPERVISOR_LOG_MAX:
            rotate(log_path, SUPERVISOR_LOG_BACKUPS)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    log_fd = os.open(log_path, flags, 0o600)
    try:
        if IS_WINDOWS:
            from .winspawn import spawn_detached as win_spawn_detached

            spawned = win_spawn_detached(list(argv), stdout=log_fd, stderr=subprocess.STDOUT,
                                         cwd=str(cwd) if cwd else None, env=env)
            proc, breakaway, note = spawned.proc, spawned.breakaway, spawned.note
        else:
            # A detached spawn leaves its caller's tree on purpose (a supervisor, an update watcher),
            # even when the caller is a supervised program: without the program's name, the
            # supervisor that adopts it does not end it with that program (see kill_leftovers).
            child_env = dict(os.environ if env is None else env)
            child_env.pop("DAEMONKIT_PROGRAM", None)
            proc = subprocess.Popen(list(argv), start_new_session=True, stdin=subprocess.DEVNULL, stdout=log_fd,
                                    stderr=subprocess.STDOUT, cwd=str(cwd) if cwd else None,
                                    env=child_env, close_fds=True)
            breakaway, note = None, ""
    finally:
        os.close(log_fd)
    identity = ProcessIdentity.of(proc.pid) or ProcessIdentity(proc.pid, 0.0)
    # We never wait() for it: it is a daemon. Mark it handled so Popen.__del__ does not warn; the
    # process is reparented to init (POSIX) when we exit.
    proc.returncode = 0
    return SpawnResult(identity, breakaway, note)


def windowless_python(python: str | None = None) -> str:
    """For Task Scheduler and Startup items, which would show a console window for ``python.exe``: the
    GUI-subsystem ``pythonw.exe`` beside ``python`` (default ``sys.executable``) when there is one. (A
    detached spawn from our own process uses ``python.exe`` with ``CREATE_NO_WINDOW`` instead: a hidden
    console that the daemon's console children inherit, so they do not flash windows either.)"""
    exe = python or sys.executable
    path = Path(exe)
    if path.name.lower() == "python.exe":
        candidate = path.with_name("pythonw.exe")
        if candidate.exists():
            return str(candidate)
    return exe
