"""How daemonkit starts processes on Windows: detached, in a job, or hidden and short-lived.

* ``spawn_detached``: a hidden console (``CREATE_NO_WINDOW``), a new process group, and
  ``CREATE_BREAKAWAY_FROM_JOB`` so that the job of whoever started us (Electron, a terminal, an
  updater) does not take the daemon down when it closes. A job without ``BREAKAWAY_OK`` makes
  CreateProcess fail with winerror 5; we retry inside the job and say so (``breakaway=False``), which
  the caller records as an event and ``status --deep`` shows.
  Not ``DETACHED_PROCESS``: it cancels ``CREATE_NO_WINDOW`` for console programs, and a console-less
  daemon makes every console child it starts flash a window. A hidden console is inherited instead.
  (``daemonkit.compat.windows_detach_flags`` keeps the seed's value with DETACHED_PROCESS, for host apps.)
* ``spawn_in_job``: a supervised program, created suspended, put into its job, then resumed, so not
  even its first child can escape the job before it is assigned.
* ``run_hidden``: short commands (schtasks, sc, where) with no console flash and a timeout.

Every argv goes through ``cmdline.command_line``: a .cmd/.bat target gets cmd.exe-safe quoting.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import IO, Any, Mapping, Sequence, Union

from ..compat import CREATE_BREAKAWAY_FROM_JOB, CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW
from .cmdline import command_line

CREATE_SUSPENDED = 0x00000004
ERROR_ACCESS_DENIED = 5
BREAKAWAY_DENIED_NOTE = ("the job object of the process that started it forbids breakaway (winerror 5), so it "
                         "runs inside that job and dies when the job closes; start it from a plain console, "
                         "or install it (Task Scheduler / Startup) so it does not depend on that process")

Stream = Union[int, IO[Any], None]


def detached_flags(breakaway: bool = True) -> int:
    flags = CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP
    return flags | CREATE_BREAKAWAY_FROM_JOB if breakaway else flags


@dataclass(frozen=True)
class Spawned:
    proc: "subprocess.Popen[bytes]"
    breakaway: bool  # False: breakaway was denied and the child runs inside the caller's job
    note: str = ""
    flags: int = 0


def _popen(argv: Sequence[str], flags: int, env: Mapping[str, str] | None, **kwargs: Any) -> "subprocess.Popen[bytes]":
    command = command_line([str(a) for a in argv], env)
    return subprocess.Popen(command.line, executable=command.executable, env=command.env,
                            creationflags=flags, **kwargs)


def spawn_detached(argv: Sequence[str], *, stdin: Stream = subprocess.DEVNULL, stdout: Stream = subprocess.DEVNULL,
                   stderr: Stream = subprocess.DEVNULL, cwd: str | None = None,
                   env: Mapping[str, str] | None = None, breakaway: bool = True) -> Spawned:
    """Start ``argv`` detached (see the module doc); retried without breakaway on winerror 5."""
    kwargs: dict[str, Any] = dict(stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, close_fds=True)
    if breakaway:
        flags = detached_flags(True)
        try:
            return Spawned(_popen(argv, flags, env, **kwargs), True, "", flags)
        except OSError as exc:
            if getattr(exc, "winerror", None) != ERROR_ACCESS_DENIED:
                raise
    flags = detached_flags(False)
    proc = _popen(argv, flags, env, **kwargs)
    return Spawned(proc, False, BREAKAWAY_DENIED_NOTE if breakaway else "", flags)


def spawn_in_job(argv: Sequence[str], job: Any, *, stdin: Stream = subprocess.DEVNULL,
                 stdout: Stream = subprocess.DEVNULL, stderr: Stream = subprocess.DEVNULL,
                 cwd: str | None = None, env: Mapping[str, str] | None = None) -> "subprocess.Popen[bytes]":
    """Start a supervised program inside ``job`` (a ``winjob.Job``), hidden, in its own process group."""
    import psutil

    flags = CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP | CREATE_SUSPENDED
    proc = _popen(argv, flags, env, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, close_fds=True)
    try:
        job.assign(int(proc._handle))  # type: ignore[attr-defined]
    except Exception:
        proc.kill()
        proc.wait()
        raise
    psutil.Process(proc.pid).resume()  # NtResumeProcess: our Popen closed the thread handle
    return proc


def run_hidden(argv: Sequence[str], *, timeout: float = 30.0, input: bytes | None = None,
               env: Mapping[str, str] | None = None, cwd: str | None = None) -> "subprocess.CompletedProcess[bytes]":
    """Run a short command with no console window; output captured; ``TimeoutExpired`` after ``timeout``."""
    command = command_line([str(a) for a in argv], env)
    return subprocess.run(command.line, executable=command.executable, env=command.env, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, cwd=cwd, creationflags=CREATE_NO_WINDOW)
