"""The Windows stop request: a named event per program (Windows has no SIGTERM).

``TerminateProcess`` is Windows' only "signal", and it is a kill. So the supervisor creates a
manual-reset event, passes its name to the program in ``DAEMONKIT_STOP_EVENT``, and sets it to ask the
program to stop; the program (or ``daemonkit.worker.wait_for_stop()``) waits on it, drains, and exits.
After the grace period the supervisor ends the program's job with ``TerminateJobObject``.
Names live in the ``Local\\`` namespace (this logon session) and include a random part, so another
session or user cannot guess and pre-create them.
"""

from __future__ import annotations

import secrets
import sys
from ctypes import wintypes

if sys.platform != "win32":  # pragma: no cover - imported only on Windows
    raise ImportError("daemonkit.proc.winstop is Windows-only")

from .win32 import (CloseHandle as _CloseHandle, CreateEventW as _CreateEventW, SetEvent as _SetEvent,
                    WaitForSingleObject as _WaitForSingleObject, last_error as _fail, proto)

ENV_STOP_EVENT = "DAEMONKIT_STOP_EVENT"
SYNCHRONIZE = 0x00100000
EVENT_MODIFY_STATE = 0x0002
WAIT_OBJECT_0 = 0
WAIT_TIMEOUT = 0x102
INFINITE = 0xFFFFFFFF

_OpenEventW = proto("OpenEventW", wintypes.HANDLE, wintypes.DWORD, wintypes.BOOL, wintypes.LPCWSTR)
_ResetEvent = proto("ResetEvent", wintypes.BOOL, wintypes.HANDLE)


def new_name(program: str) -> str:
    return f"Local\\daemonkit-stop-{program}-{secrets.token_hex(8)}"


class StopEvent:
    """The supervisor's side: owns the event for one program's life."""

    def __init__(self, name: str) -> None:
        handle = _CreateEventW(None, True, False, name)
        if not handle:
            raise _fail(f"cannot create the stop event {name}")
        self.name = name
        self.handle: int | None = handle

    def set(self) -> None:
        if self.handle is not None and not _SetEvent(self.handle):
            raise _fail(f"cannot signal the stop event {self.name}")

    def reset(self) -> None:
        if self.handle is not None:
            _ResetEvent(self.handle)

    def is_set(self) -> bool:
        return self.handle is not None and _WaitForSingleObject(self.handle, 0) == WAIT_OBJECT_0

    def close(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            _CloseHandle(handle)


def wait(name: str, timeout: float | None = None) -> bool:
    """The program's side: wait until the supervisor asks to stop. True when asked, False on timeout."""
    handle = _OpenEventW(SYNCHRONIZE, False, name)
    if not handle:
        raise _fail(f"cannot open the stop event {name}")
    try:
        millis = INFINITE if timeout is None else max(0, int(timeout * 1000))
        return _WaitForSingleObject(handle, millis) == WAIT_OBJECT_0
    finally:
        _CloseHandle(handle)
