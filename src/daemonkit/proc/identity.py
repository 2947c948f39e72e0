"""Process identity: a pid is only meaningful together with the process's create time.

Pids are recycled. A pid record that outlives its process can point at an unrelated process (once it
was svchost.exe), so daemonkit never signals a bare pid: it captures ``(pid, create_time)`` when it
learns of a process, and re-checks both right before any signal. psutil does the OS work (and its own
signalling methods re-check for pid reuse too).

psutil is imported by the functions that use it, not by this module: the supervisor imports this
module for its own identity and the start times of its programs, which ``create_time`` reads from
``/proc`` on Linux (psutil's own formula: the same float, bit for bit; tested), and so keeps psutil's
~1.3 MiB out of a process that lives as long as the daemon. Everything else still asks psutil.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Iterable, NamedTuple

if TYPE_CHECKING:
    import psutil

# Linux derives create times from clock ticks (10 ms); other OSes are finer. Anything closer than this
# is the same process; a recycled pid would have to be reused within one tick to fool it.
CREATE_TIME_TOLERANCE = 0.01


class ProcessIdentity(NamedTuple):  # not a dataclass: the supervisor imports this module (see spec.py)
    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> "ProcessIdentity | None":
        """Capture the identity of a running process, or ``None`` if there is none (or it is a zombie)."""
        if sys.platform.startswith("linux"):
            from .procfs import stat

            try:
                # One /proc read, no psutil import: `start` captures the supervisor's identity this way
                # before anything else needs psutil.
                letter, created = stat(pid)
                return None if letter == "Z" else cls(pid, created)
            except ProcessLookupError:
                return None
            except (OSError, ValueError, IndexError):
                pass  # /proc cannot tell (hidepid, out of descriptors): psutil below
        import psutil

        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return cls(pid, proc.create_time())
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return None

    @classmethod
    def current(cls) -> "ProcessIdentity":
        pid = os.getpid()
        return cls(pid, create_time(pid))  # we are running (not a zombie): no status check needed

    @classmethod
    def from_record(cls, data: object) -> "ProcessIdentity | None":
        """Parse ``{"pid": int, "create_time": float}``; ``None`` for anything malformed."""
        if not isinstance(data, dict):
            return None
        pid, ctime = data.get("pid"), data.get("create_time")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            return None
        if isinstance(ctime, bool) or not isinstance(ctime, (int, float)):
            return None
        return cls(pid, float(ctime))

    def to_record(self) -> dict[str, object]:
        return {"pid": self.pid, "create_time": self.create_time}

    def process(self) -> "psutil.Process | None":
        """The live process with this identity, or ``None`` (gone, zombie, or pid recycled)."""
        import psutil

        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > CREATE_TIME_TOLERANCE:
                return None  # the pid now belongs to someone else
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return None

    def is_alive(self) -> bool:
        return self.process() is not None

    def describe(self) -> str:
        return f"pid {self.pid} (started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.create_time))})"


def liveness(identity: ProcessIdentity) -> str:
    """One word for diagnostics: ``alive``, ``dead``, ``zombie`` or ``recycled`` (pid taken by another)."""
    import psutil

    try:
        proc = psutil.Process(identity.pid)
        if abs(proc.create_time() - identity.create_time) > CREATE_TIME_TOLERANCE:
            return "recycled"
        return "zombie" if proc.status() == psutil.STATUS_ZOMBIE else "alive"
    except psutil.NoSuchProcess:
        return "dead"
    except (psutil.AccessDenied, ValueError):
        return "alive"  # it exists; we just may not look inside (another user's process)


def _tree(proc: "psutil.Process") -> "list[psutil.Process]":
    import psutil

    try:
        return [proc, *proc.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return [proc]


def session_members(session_id: int, exclude: Iterable[int] = ()) -> "list[psutil.Process]":
    """Processes in POSIX session ``session_id`` (a program's double-forked orphans stay in it)."""
    if sys.platform == "win32" or not hasattr(os, "getsid"):
        return []
    import psutil

    skip = set(exclude)
    members = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        try:
            if os.getsid(proc.pid) == session_id:
                members.append(proc)
        except OSError:
            continue
    return members


def tree_members(identity: ProcessIdentity) -> "list[psutil.Process]":
    """The live process with this identity, its descendants and, when it leads its own POSIX session
    (programs are started with ``start_new_session``), the session's double-forked orphans.
    Empty when the identity no longer matches a live process."""
    root = identity.process()
    if root is None:
        return []
    members = _tree(root)
    if hasattr(os, "getsid"):
        try:
            leads_session = os.getsid(root.pid) == root.pid
        except OSError:
            leads_session = False
        if leads_session:
            seen = {p.pid for p in members}
            members += [p for p in session_members(root.pid) if p.pid not in seen]
    return members


def signal_tree(identity: ProcessIdentity, sig: int) -> int:
    """Send ``sig`` to the tree of ``identity`` (see ``tree_members``); returns how many got it.

    psutil's ``send_signal`` re-checks each process's own identity, so a member that exited and whose
    pid was reused in between is not hit either. On Windows every signal but CTRL events terminates.
    """
    import psutil

    count = 0
    for proc in tree_members(identity):
        try:
            proc.send_signal(sig)
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            continue
    return count


def terminate_tree(identity: ProcessIdentity, sig: int | None = None, grace: float = 5.0) -> bool:
    """Stop a process tree: ``sig`` (SIGTERM) to every member, wait up to ``grace``, then kill what is left.

    Returns True when nothing of the tree is left running.
    """
    import signal as _signal

    import psutil

    members = tree_members(identity)
    for proc in members:
        try:
            proc.send_signal(_signal.SIGTERM if sig is None else sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    _, alive = psutil.wait_procs(members, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    _, still = psutil.wait_procs(alive, timeout=2.0)
    return not still


def create_time(pid: int) -> float:
    """The process's create time as psutil's ``Process(pid).create_time()`` gives it (also for a
    zombie); raises ``ProcessLookupError`` when there is no such process.

    Linux: read from ``/proc`` with psutil's own formula (start time in clock ticks / ticks per second
    + boot time), so that the supervisor, which records every program's create time, need not import
    psutil; the two agree exactly (tests/test_identity.py). Elsewhere: psutil."""
    if sys.platform.startswith("linux"):
        from .procfs import stat

        return stat(pid)[1]
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        raise ProcessLookupError(pid) from None
