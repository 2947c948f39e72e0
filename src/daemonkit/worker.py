"""Helpers for the programs daemonkit runs: know when you are asked to stop, on every OS.

POSIX asks a program to stop with its stop signal (SIGTERM by default); Windows has no such signal, so
the supervisor sets a named event whose name it passes in ``DAEMONKIT_STOP_EVENT``. ``wait_for_stop()``
hides the difference::

    from daemonkit.worker import wait_for_stop
    threading.Thread(target=serve, daemon=True).start()
    wait_for_stop()       # returns when daemonkit (or a Ctrl+C / SIGTERM) asks us to stop
    drain_and_exit()
"""

from __future__ import annotations

import os
import signal
import sys
import threading

ENV_STOP_EVENT = "DAEMONKIT_STOP_EVENT"


def wait_for_stop(timeout: float | None = None) -> bool:
    """Block until a stop is requested; True then, False if ``timeout`` seconds passed first.

    Windows, run by daemonkit: waits on the supervisor's stop event. Otherwise (POSIX, or run by hand):
    waits for SIGTERM or SIGINT (Ctrl+C); call it from the main thread, which installs the handlers.
    """
    name = os.environ.get(ENV_STOP_EVENT)
    if sys.platform == "win32" and name:
        from .proc.winstop import wait

        return wait(name, timeout)
    stopped = threading.Event()
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, lambda *_: stopped.set())
    try:
        return stopped.wait(timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
