"""kernel32 through ctypes, declared once for daemonkit's Windows modules (winjob, winstop, winloop).

ctypes (not pywin32) because the supervisor must run on a bare install. One library object with
``use_last_error`` so ``ctypes.get_last_error()`` reports the failure of the call just made, and one
set of prototypes: the modules share these function objects, so they must agree on their types.
"""

from __future__ import annotations

import ctypes
import sys
from ctypes import wintypes
from typing import Any

from ..errors import DaemonkitError

if sys.platform != "win32":  # pragma: no cover - imported only on Windows
    raise ImportError("daemonkit.proc.win32 is Windows-only")

kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)


def proto(name: str, restype: Any, *argtypes: Any) -> Any:
    """The kernel32 function ``name`` with its return and argument types declared."""
    fn = getattr(kernel32, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


def last_error(what: str, hint: str = "") -> DaemonkitError:
    """The error for a kernel32 call that just failed: ``what`` failed, why in Windows' own words."""
    err = ctypes.get_last_error()
    return DaemonkitError(what, f"winerror {err}: {ctypes.FormatError(err).strip()}", hint)


CloseHandle = proto("CloseHandle", wintypes.BOOL, wintypes.HANDLE)
CreateEventW = proto("CreateEventW", wintypes.HANDLE, wintypes.LPVOID, wintypes.BOOL, wintypes.BOOL,
                     wintypes.LPCWSTR)
SetEvent = proto("SetEvent", wintypes.BOOL, wintypes.HANDLE)
WaitForSingleObject = proto("WaitForSingleObject", wintypes.DWORD, wintypes.HANDLE, wintypes.DWORD)
OpenProcess = proto("OpenProcess", wintypes.HANDLE, wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
GetExitCodeProcess = proto("GetExitCodeProcess", wintypes.BOOL, wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
