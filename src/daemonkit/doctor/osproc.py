"""What the OS says about a pid, read-only: is it the process a record names, and what is it now?

A record names a process by ``(pid, create_time)``. The pid alone may have been handed to an
unrelated process since (a recycled pid once got svchost.exe killed), so the answer distinguishes
``alive`` (same process), ``recycled`` (same pid, another process), ``zombie``, ``stopped`` (SIGSTOP,
a debugger) and ``dead``, and describes what holds the pid now.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import psutil

from ..proc.identity import CREATE_TIME_TOLERANCE


@dataclass
class ProcInfo:
    pid: int
    liveness: str  # alive | recycled | zombie | stopped | dead | unknown
    name: str = ""
    exe: str = ""
    cmdline: list[str] = field(default_factory=list)
    create_time: float | None = None
    status: str = ""

    @property
    def command(self) -> str:
        """A short excerpt of the command line, for evidence."""
        text = " ".join(self.cmdline) or self.name
        return text if len(text) <= 160 else text[:157] + "..."


def inspect(pid: int, create_time: float | None, *, describe: bool = True) -> ProcInfo:
    """Look at ``pid`` once; ``create_time`` None means "whatever runs there" (no identity to match).
    ``describe=False`` skips name, executable and command line (a third of the cost; per-program
    checks at N=1000 only need the identity and the state)."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            ctime = proc.create_time()
            status = proc.status()
            name = _safe(proc.name) if describe else ""
            exe = _safe(proc.exe) if describe else ""
            cmdline = _safe(proc.cmdline, []) if describe else []
    except psutil.NoSuchProcess:
        return ProcInfo(pid, "dead")
    except (psutil.AccessDenied, ValueError, OSError):
        return ProcInfo(pid, "unknown")
    return _judge(ProcInfo(pid, "alive", name, exe, list(cmdline), ctime, status), create_time)


def inspect_many(identities: Sequence[tuple[int, float]]) -> list[ProcInfo]:
    """``inspect(pid, create_time, describe=False)`` for many identities at once (the programs of a
    daemon), with the same answers.

    On Linux this reads each ``/proc/PID/stat`` once and the boot time once for all: psutil reads the
    stat file twice and ``/proc/stat`` once *per process* to give a create time and a status (about
    50 us a program, 50 ms of a 1000-program ``status --deep``). ``proc.procfs`` computes the create
    time as psutil does, so records written through psutil match exactly. Anything the fast read
    cannot answer goes to psutil."""
    if not sys.platform.startswith("linux") or not identities:
        return [inspect(pid, ctime, describe=False) for pid, ctime in identities]
    from ..proc.procfs import stat

    out = []
    for pid, ctime in identities:
        try:
            letter, created = stat(pid)
            status = _STATUSES.get(letter, "?")
        except ProcessLookupError:
            out.append(ProcInfo(pid, "dead"))
            continue
        except (OSError, ValueError, IndexError):
            out.append(inspect(pid, ctime, describe=False))  # hidepid, an odd kernel: psutil knows better
            continue
        out.append(_judge(ProcInfo(pid, "alive", create_time=created, status=status), ctime))
    return out


# /proc/PID/stat's state letters, spelled as psutil spells its STATUS_* values (plain strings; not every
# psutil build exports every constant).
_STATUSES = {"R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop", "Z": "zombie",
             "X": "dead", "x": "dead", "K": "wake-kill", "W": "waking", "I": "idle", "P": "parked"}
_STOPPED = ("stopped", "tracing-stop")


def _judge(info: ProcInfo, create_time: float | None) -> ProcInfo:
    """Same pid, same process? Then is it usable (not a zombie, not stopped)?"""
    assert info.create_time is not None
    if create_time is not None and abs(info.create_time - create_time) > CREATE_TIME_TOLERANCE:
        info.liveness = "recycled"
    elif info.status == "zombie":
        info.liveness = "zombie"
    elif info.status in _STOPPED:
        info.liveness = "stopped"
    return info


def _safe(getter, default=""):  # type: ignore[no-untyped-def]
    try:
        return getter()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return default


def flock_holders(path: Path) -> list[int] | None:
    """Pids holding a ``flock`` on ``path`` (Linux ``/proc/locks``); None where the OS cannot tell.

    The lock file's own record names who *wrote* it; this names who *holds* it, which is what matters
    when something that is not our supervisor sits on the lock.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    holders = []
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 12345 08:02:123456 0 EOF"; blocked waiters carry a "->" marker.
        if len(parts) < 6 or "->" in parts[1] or parts[1] != "FLOCK":
            continue
        try:
            major, minor, inode = parts[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            pid = int(parts[4])
        except ValueError:
            continue
        if key == wanted and pid > 0:
            holders.append(pid)
    return holders
