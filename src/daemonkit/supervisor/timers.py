"""The timer queue both event loops share (``loop.Loop`` on POSIX, ``winloop.WinLoop`` on Windows).

Platform-neutral on purpose: only the way a loop sleeps differs between the two, not how timers are
kept. A timer exists only while something is pending, so an idle loop has none and sleeps until the OS
has news.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from typing import Callable

Callback = Callable[[], None]


class Timer:
    __slots__ = ("deadline", "callback", "cancelled")

    def __init__(self, deadline: float, callback: Callback) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = _done  # let go of the closure now: owners keep their last timer around


def _done() -> None:
    pass


class TimerQueue:
    """Mixin: ``call_later`` and the timer bookkeeping of a loop that also has ``_ready`` (callbacks for
    this turn) and ``_threadsafe`` (callbacks handed over by other threads) queues."""

    _ready: deque[Callback]
    _threadsafe: deque[Callback]

    def __init__(self) -> None:
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()  # ties on a deadline run in the order they were scheduled

    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.deadline, next(self._seq), timer))
        return timer

    def _next_timeout(self) -> float | None:
        if self._ready or self._threadsafe:
            return 0.0
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None  # nothing pending: sleep until the OS has news
        return max(0.0, self._timers[0][0] - time.monotonic())

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and (self._timers[0][0] <= now or self._timers[0][2].cancelled):
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                callback = timer.callback
                timer.cancel()
                callback()
