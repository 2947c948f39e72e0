"""A minimal event loop with no periodic wakeups.

The loop sleeps in ``select`` until a file descriptor is ready, a signal arrives (through
``signal.set_wakeup_fd``: SIGCHLD tells of program deaths the instant they happen) or the earliest
timer is due. Timers exist only while something is pending (a backoff, a readiness deadline, a stop
grace), so an idle supervisor never wakes. Other threads hand work to the loop with
``call_soon_threadsafe`` (one byte on the wake pipe).

Windows has no SIGCHLD and cannot select on pipes or processes; ``daemonkit.supervisor.winloop``
provides the same interface there, fed by threads waiting on process handles.
"""

from __future__ import annotations

import os
import selectors
import signal
import threading
from collections import deque
from typing import Callable

from .timers import TimerQueue

Callback = Callable[[], None]


class Loop(TimerQueue):
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        super().__init__()
        self._ready: deque[Callback] = deque()
        self._threadsafe: deque[Callback] = deque()
        self._signal_callbacks: dict[int, Callback] = {}
        self._running = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake_pipe)
        self._old_wakeup_fd: int | None = None
        self.wakeups = 0  # select() returns; the idle benchmark reads it

    # ---------------------------------------------------------------- registration
    def add_reader(self, fd: int, callback: Callback) -> None:
        self._selector.register(fd, selectors.EVENT_READ, callback)

    def add_writer(self, fd: int, callback: Callback) -> None:
        """Run ``callback`` when ``fd`` is writable (``remove_reader`` unregisters it too)."""
        self._selector.register(fd, selectors.EVENT_WRITE, callback)

    def remove_reader(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def call_soon(self, callback: Callback) -> None:
        self._ready.append(callback)

    def call_soon_threadsafe(self, callback: Callback) -> None:
        self._threadsafe.append(callback)
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full, so the loop is going to wake anyway

    def add_signal_handler(self, signum: int, callback: Callback) -> None:
        """Run ``callback`` in the loop when ``signum`` arrives (must be called from the main thread)."""
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._signal_callbacks[signum] = callback
        # A Python-level handler must exist for the C handler to write the wakeup byte; the work is
        # done in the loop, where it is safe, not in the handler.
        signal.signal(signum, _noop_handler)

    # ---------------------------------------------------------------- running
    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        self._running = True
        while self._running:
            self.run_once()

    def run_once(self) -> None:
        timeout = self._next_timeout()
        events = self._selector.select(timeout)
        self.wakeups += 1
        fd_map = self._selector.get_map()
        for key, _ in events:
            # An earlier callback of this round may have unregistered (and closed) this fd, e.g. a
            # program restarted at once and its old output pipe was replaced: skip the stale event,
            # or its handler would act on a closed or reused descriptor.
            if fd_map.get(key.fd) is not key:
                continue
            key.data()
        self._run_due_timers()
        while self._ready:
            self._ready.popleft()()

    def _drain_wake_pipe(self) -> None:
        signums: set[int] = set()
        while True:
            try:
                data = os.read(self._wake_r, 4096)
            except BlockingIOError:
                break
            if not data:
                break
            signums.update(b for b in data if b)
        for signum in signums:
            callback = self._signal_callbacks.get(signum)
            if callback is not None:
                callback()
        while self._threadsafe:
            self._threadsafe.popleft()()

    def close(self) -> None:
        if self._old_wakeup_fd is not None and threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(self._old_wakeup_fd)
            for signum in self._signal_callbacks:
                signal.signal(signum, signal.SIG_DFL)
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def _noop_handler(signum: int, frame: object) -> None:
    pass
