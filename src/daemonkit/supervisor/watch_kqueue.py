"""macOS / BSD child watcher: ``kqueue`` with ``EVFILT_PROC`` + ``NOTE_EXIT``.

The kqueue descriptor sits in the loop's selector like any other fd; each child gets a one-shot
``NOTE_EXIT`` filter. A child that exited before its filter was added makes ``kevent`` fail with
``ESRCH``: it is then reaped on the next loop turn. Re-parented orphans (there is no subreaper on macOS,
but ``SIGCHLD`` still arrives for our own children) are reaped by ``reap_strays``.

This module cannot run on Linux (no ``select.kqueue``); its test skips there with that reason.
"""

from __future__ import annotations

import errno
import os
import select
import signal
from typing import TYPE_CHECKING, Callable

from .watch import BeforeReap, OnExit, _BaseWatcher, _Watch

if TYPE_CHECKING:
    from .loop import Loop


class KqueueWatcher(_BaseWatcher):
    name = "kqueue"

    def __init__(self, loop: "Loop", on_stray: Callable[[int, int], None] | None = None) -> None:
        super().__init__(loop, on_stray)
        self._kq = select.kqueue()
        loop.add_reader(self._kq.fileno(), self._on_readable)
        # SIGCHLD still matters for children we do not watch (they would stay zombies otherwise).
        loop.add_signal_handler(signal.SIGCHLD, self.reap_strays)

    @staticmethod
    def available() -> bool:
        return hasattr(select, "kqueue") and hasattr(select, "KQ_FILTER_PROC")

    def watch(self, pid: int, on_exit: OnExit, before_reap: BeforeReap | None = None) -> None:
        watch = _Watch(pid, on_exit, before_reap)
        self._watches[pid] = watch
        event = select.kevent(pid, filter=select.KQ_FILTER_PROC,
                              flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT, fflags=select.KQ_NOTE_EXIT)
        try:
            self._kq.control([event], 0, 0)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise
            self.loop.call_soon(lambda: self._reap_watched(watch))  # already exited

    def _on_readable(self) -> None:
        for event in self._kq.control(None, 256, 0):
            watch = self._watches.get(int(event.ident))
            if watch is not None:
                self._reap_watched(watch)

    def _reap_watched(self, watch: _Watch) -> None:
        if self._watches.get(watch.pid) is not watch:
            return
        if watch.before_reap is not None:
            watch.before_reap(watch.pid)
        try:
            _, status = os.waitpid(watch.pid, 0)
            rc = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            rc = -signal.SIGKILL
        del self._watches[watch.pid]
        watch.on_exit(watch.pid, rc)

    def forget(self, pid: int) -> None:
        self._watches.pop(pid, None)  # the one-shot filter fires once more at most; ignored then

    def close(self) -> None:
        self.loop.remove_reader(self._kq.fileno())
        self._kq.close()
        self._watches.clear()
