"""Child watchers: how the supervisor learns, without polling, that one of its programs exited.

One small protocol (``ChildWatcher``), one implementation per OS mechanism:

* ``PidfdWatcher`` (Linux ≥ 5.3): one ``pidfd_open`` descriptor per child in the loop's selector; the
  child is reaped with ``waitid(P_PIDFD, fd)``, so a death is one readable fd and one syscall, whatever
  the number of programs.
* ``SigchldWatcher`` (any POSIX): ``SIGCHLD`` through ``signal.set_wakeup_fd``, then ``waitid`` on any
  child. The fallback when pidfds are missing (old kernels, seccomp sandboxes).
* ``daemonkit.supervisor.watch_kqueue.KqueueWatcher`` (macOS/BSD): ``EVFILT_PROC``/``NOTE_EXIT``.
* Windows (``daemonkit.supervisor.winloop``): process handles waited on by the Windows loop; it plugs
  in through the same ``watch``/``forget`` calls (see docs/engine.md, "The watcher seam").

Every watcher calls ``before_reap(pid)`` while the exited child is still a zombie (its pid and process
group id are still reserved, so the group can be swept safely), then reaps it and calls
``on_exit(pid, returncode)`` with ``returncode`` as ``subprocess`` reports it (negative = signal).

Because the supervisor is a child subreaper on Linux, double-forked grandchildren whose parent died are
re-parented to it; they are reaped by ``reap_strays`` (driven by ``SIGCHLD``) and reported to
``on_stray``, so no zombie accumulates.
"""

from __future__ import annotations

import abc
import os
import signal
import sys
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from .loop import Loop

OnExit = Callable[[int, int], None]
BeforeReap = Callable[[int], None]


class ChildWatcher(Protocol):
    name: str

    def watch(self, pid: int, on_exit: OnExit, before_reap: BeforeReap | None = None) -> None:
        """Report the exit of child ``pid`` (spawned by us, not yet reaped)."""

    def forget(self, pid: int) -> None:
        """Stop watching ``pid`` (it will not be reaped by this watcher)."""

    def close(self) -> None: ...


class _Watch:
    __slots__ = ("pid", "on_exit", "before_reap", "fd")

    def __init__(self, pid: int, on_exit: OnExit, before_reap: BeforeReap | None, fd: int = -1) -> None:
        self.pid = pid
        self.on_exit = on_exit
        self.before_reap = before_reap
        self.fd = fd


def returncode_of(info: "os.waitid_result") -> int:
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return -info.si_status  # CLD_KILLED / CLD_DUMPED


class _BaseWatcher(abc.ABC):
    name = "base"

    def __init__(self, loop: "Loop", on_stray: Callable[[int, int], None] | None = None) -> None:
        self.loop = loop
        self.on_stray = on_stray or (lambda pid, rc: None)
        self._watches: dict[int, _Watch] = {}

    def __len__(self) -> int:
        return len(self._watches)

    def reap_strays(self) -> None:
        """Reap every exited child. A watched one is handed to its own path (so it is reported once);
        anything else is a re-parented orphan and only reaped."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            watch = self._watches.get(info.si_pid)
            if watch is not None:
                self._reap_watched(watch)
                continue
            try:
                _, status = os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                continue
            self.on_stray(info.si_pid, os.waitstatus_to_exitcode(status))

    @abc.abstractmethod
    def _reap_watched(self, watch: _Watch) -> None:
        """Collect the exit status of a watched child (each watcher reaps its own way)."""


class PidfdWatcher(_BaseWatcher):
    """Linux: a pidfd per child, readable once the child has exited."""

    name = "pidfd"

    def __init__(self, loop: "Loop", on_stray: Callable[[int, int], None] | None = None,
                 *, reap_strays: bool = True) -> None:
        super().__init__(loop, on_stray)
        if reap_strays:
            loop.add_signal_handler(signal.SIGCHLD, self.reap_strays)

    @staticmethod
    def available() -> bool:
        if not hasattr(os, "pidfd_open") or not hasattr(os, "P_PIDFD"):
            return False
        try:
            fd = os.pidfd_open(os.getpid())
        except OSError:
            return False
        os.close(fd)
        return True

    def watch(self, pid: int, on_exit: OnExit, before_reap: BeforeReap | None = None) -> None:
        try:
            fd = os.pidfd_open(pid)  # our unreaped child: the pid cannot have been recycled
        except OSError:
            # EMFILE at the descriptor limit: the child runs already, so it must still be watched;
            # without a pidfd it is found by the SIGCHLD path (reap_strays), like SigchldWatcher does.
            self._watches[pid] = _Watch(pid, on_exit, before_reap)
            self.loop.call_soon(self.reap_strays)
            return
        watch = _Watch(pid, on_exit, before_reap, fd)
        self._watches[pid] = watch
        self.loop.add_reader(fd, lambda: self._reap_watched(watch))

    def _reap_watched(self, watch: _Watch) -> None:
        if self._watches.get(watch.pid) is not watch:
            return  # already reported through the other path
        if watch.before_reap is not None:
            watch.before_reap(watch.pid)
        if watch.fd < 0:
            try:
                _, status = os.waitpid(watch.pid, 0)
                rc = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                rc = -signal.SIGKILL
            self._watches.pop(watch.pid, None)
            watch.on_exit(watch.pid, rc)
            return
        try:
            info = os.waitid(os.P_PIDFD, watch.fd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            info = None
            rc = -signal.SIGKILL  # someone else reaped it; we cannot know how it ended
        else:
            if info is None:
                return  # spurious wakeup: still running
            rc = returncode_of(info)
        self._drop(watch)
        watch.on_exit(watch.pid, rc)

    def _drop(self, watch: _Watch) -> None:
        self._watches.pop(watch.pid, None)
        if watch.fd >= 0:
            self.loop.remove_reader(watch.fd)
            os.close(watch.fd)

    def forget(self, pid: int) -> None:
        watch = self._watches.get(pid)
        if watch is not None:
            self._drop(watch)

    def close(self) -> None:
        for watch in list(self._watches.values()):
            self._drop(watch)


class SigchldWatcher(_BaseWatcher):
    """Any POSIX: SIGCHLD wakes the loop (through its wakeup fd), ``waitid`` finds who exited."""

    name = "sigchld"

    def __init__(self, loop: "Loop", on_stray: Callable[[int, int], None] | None = None) -> None:
        super().__init__(loop, on_stray)
        loop.add_signal_handler(signal.SIGCHLD, self.reap_strays)

    def watch(self, pid: int, on_exit: OnExit, before_reap: BeforeReap | None = None) -> None:
        self._watches[pid] = _Watch(pid, on_exit, before_reap)
        # A child that exited before it was registered has already sent its SIGCHLD; look once.
        self.loop.call_soon(self.reap_strays)

    def _reap_watched(self, watch: _Watch) -> None:
        if watch.before_reap is not None:
            watch.before_reap(watch.pid)
        try:
            _, status = os.waitpid(watch.pid, 0)
        except ChildProcessError:
            status = None
        self._watches.pop(watch.pid, None)
        watch.on_exit(watch.pid, os.waitstatus_to_exitcode(status) if status is not None else -signal.SIGKILL)

    def forget(self, pid: int) -> None:
        self._watches.pop(pid, None)

    def close(self) -> None:
        self._watches.clear()


def make_watcher(loop: "Loop", on_stray: Callable[[int, int], None] | None = None,
                 prefer: str | None = None) -> ChildWatcher:
    """The best watcher for this OS. ``prefer`` (or ``DAEMONKIT_WATCHER``) forces one: pidfd, kqueue,
    sigchld (tests and benchmarks compare them)."""
    prefer = prefer or os.environ.get("DAEMONKIT_WATCHER") or None
    if prefer in (None, "pidfd") and sys.platform.startswith("linux") and PidfdWatcher.available():
        return PidfdWatcher(loop, on_stray)
    if prefer in (None, "kqueue") and sys.platform != "win32":
        from .watch_kqueue import KqueueWatcher

        if KqueueWatcher.available():
            return KqueueWatcher(loop, on_stray)
    return SigchldWatcher(loop, on_stray)
