"""Windows job objects, through ctypes (no pywin32 needed: the supervisor must run on a bare install).

Why jobs: Windows has no process groups that die together and no parent-death signal. A job with
``KILL_ON_JOB_CLOSE`` ends every process in it when its last handle closes, and the kernel closes the
supervisor's handles however the supervisor dies (TerminateProcess, a crash, logoff). So each program
runs in a job whose only handle the supervisor holds: a killed supervisor takes its programs, and
their descendants, with it. ``TerminateJobObject`` ends a whole program tree at once (the Windows
"kill the process group"). ``BREAKAWAY_OK`` lets a program start children outside the job when it
asks for it (``CREATE_BREAKAWAY_FROM_JOB``), e.g. an updater that must outlive it.

Liveness is asked of the kernel with a process handle (WaitForSingleObject / GetExitCodeProcess),
never with ``os.kill(pid, 0)``, which on Windows terminates the process.
"""

from __future__ import annotations

import ctypes
import sys
from ctypes import wintypes

from ..errors import DaemonkitError

if sys.platform != "win32":  # pragma: no cover - imported only on Windows
    raise ImportError("daemonkit.proc.winjob is Windows-only")

from .win32 import (CloseHandle as _CloseHandle, GetExitCodeProcess as _GetExitCodeProcess,
                    OpenProcess as _OpenProcess, WaitForSingleObject as _WaitForSingleObject,
                    last_error as _error, proto as _proto)

JOB_OBJECT_LIMIT_BREAKAWAY_OK = 0x00000800
JOB_OBJECT_LIMIT_SILENT_BREAKAWAY_OK = 0x00001000
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
_JobObjectBasicProcessIdList = 3
_JobObjectExtendedLimitInformation = 9
PROCESS_QUERY_INFORMATION = 0x0400
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
PROCESS_SET_QUOTA = 0x0100
PROCESS_TERMINATE = 0x0001
SYNCHRONIZE = 0x00100000
STILL_ACTIVE = 259
WAIT_OBJECT_0 = 0
WAIT_TIMEOUT = 0x102
INFINITE = 0xFFFFFFFF


class _IoCounters(ctypes.Structure):
    _fields_ = [(name, ctypes.c_ulonglong) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class _BasicLimit(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", wintypes.DWORD), ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", wintypes.DWORD),
        ("Affinity", ctypes.c_size_t), ("PriorityClass", wintypes.DWORD), ("SchedulingClass", wintypes.DWORD),
    ]


class _ExtendedLimit(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _BasicLimit), ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


_CreateJobObjectW = _proto("CreateJobObjectW", wintypes.HANDLE, wintypes.LPVOID, wintypes.LPCWSTR)
_SetInformationJobObject = _proto("SetInformationJobObject", wintypes.BOOL, wintypes.HANDLE, ctypes.c_int,
                                  wintypes.LPVOID, wintypes.DWORD)
_QueryInformationJobObject = _proto("QueryInformationJobObject", wintypes.BOOL, wintypes.HANDLE, ctypes.c_int,
                                    wintypes.LPVOID, wintypes.DWORD, ctypes.POINTER(wintypes.DWORD))
_AssignProcessToJobObject = _proto("AssignProcessToJobObject", wintypes.BOOL, wintypes.HANDLE, wintypes.HANDLE)
_TerminateJobObject = _proto("TerminateJobObject", wintypes.BOOL, wintypes.HANDLE, wintypes.UINT)
_IsProcessInJob = _proto("IsProcessInJob", wintypes.BOOL, wintypes.HANDLE, wintypes.HANDLE,
                         ctypes.POINTER(wintypes.BOOL))
_GetCurrentProcess = _proto("GetCurrentProcess", wintypes.HANDLE)


class Job:
    """One job object. ``kill_on_close``: its processes die when the last handle closes (our death)."""

    def __init__(self, *, kill_on_close: bool = True, breakaway_ok: bool = False, name: str | None = None) -> None:
        handle = _CreateJobObjectW(None, name)
        if not handle:
            raise _error("cannot create a Windows job object", "check the process's rights")
        self.handle: int | None = handle
        flags = 0
        if kill_on_close:
            flags |= JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        if breakaway_ok:
            flags |= JOB_OBJECT_LIMIT_BREAKAWAY_OK
        info = _ExtendedLimit()
        info.BasicLimitInformation.LimitFlags = flags
        if not _SetInformationJobObject(handle, _JobObjectExtendedLimitInformation, ctypes.byref(info),
                                        ctypes.sizeof(info)):
            self.close()
            raise _error("cannot set the limits of a Windows job object")
        self.kill_on_close = kill_on_close
        self.breakaway_ok = breakaway_ok

    def assign(self, process_handle: int) -> None:
        """Put a process (a handle with PROCESS_SET_QUOTA | PROCESS_TERMINATE) into the job. Its later
        children join automatically unless they break away."""
        if not _AssignProcessToJobObject(self._handle(), process_handle):
            raise _error("cannot put the program into its job object",
                         "the process may be in a job that forbids nesting (before Windows 8)")

    def assign_pid(self, pid: int) -> None:
        handle = _OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, pid)
        if not handle:
            raise _error(f"cannot open process {pid}")
        try:
            self.assign(handle)
        finally:
            _CloseHandle(handle)

    def terminate(self, exit_code: int = 1) -> None:
        """End every process in the job at once (the whole program tree)."""
        if not _TerminateJobObject(self._handle(), exit_code):
            raise _error("cannot terminate the program's job object")

    def pids(self) -> list[int]:
        """Pids of the processes currently in the job."""
        capacity = 64
        while True:
            class _List(ctypes.Structure):
                _fields_ = [("Assigned", wintypes.DWORD), ("InList", wintypes.DWORD),
                            ("Ids", ctypes.c_size_t * capacity)]

            data = _List()
            if _QueryInformationJobObject(self._handle(), _JobObjectBasicProcessIdList, ctypes.byref(data),
                                          ctypes.sizeof(data), None):
                return [int(data.Ids[i]) for i in range(data.InList)]
            if ctypes.get_last_error() != 234 or capacity > 65536:  # ERROR_MORE_DATA
                raise _error("cannot list the processes of a job object")
            capacity *= 4

    def _handle(self) -> int:
        if self.handle is None:
            raise DaemonkitError("the job object is closed", "it was used after close()", "a daemonkit bug")
        return self.handle

    def close(self) -> None:
        """Close our handle; with ``kill_on_close`` this ends the job's processes."""
        if self.handle is not None:
            handle, self.handle = self.handle, None
            _CloseHandle(handle)

    def __enter__(self) -> "Job":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def current_job_limits() -> int | None:
    """The limit flags of the job this process is in, or None when it is in no job."""
    in_job = wintypes.BOOL()
    if not _IsProcessInJob(_GetCurrentProcess(), None, ctypes.byref(in_job)):
        raise _error("cannot tell whether this process runs in a job object")
    if not in_job.value:
        return None
    info = _ExtendedLimit()
    if not _QueryInformationJobObject(None, _JobObjectExtendedLimitInformation, ctypes.byref(info),
                                      ctypes.sizeof(info), None):
        raise _error("cannot read the limits of this process's job object")
    return int(info.BasicLimitInformation.LimitFlags)


def breakaway_allowed() -> bool:
    """Whether a child of ours can leave our job (no job, or a job with BREAKAWAY_OK).

    Asked the way that cannot be wrong: by creating a suspended child with CREATE_BREAKAWAY_FROM_JOB and
    ending it at once (~0.1 s, for ``status --deep`` only). Reading the job's limit flags is not enough:
    a job nested in another that forbids breakaway says OK, and Wine reports no flags at all.
    """
    if current_job_limits() is None:
        return True
    import subprocess

    flags = 0x01000000 | 0x00000004 | 0x08000000  # BREAKAWAY_FROM_JOB | SUSPENDED | NO_WINDOW
    try:
        probe = subprocess.Popen([sys.executable, "-c", "pass"], creationflags=flags, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        if getattr(exc, "winerror", None) == 5:
            return False
        raise
    probe.kill()
    probe.wait()
    return True


def process_in_job(pid: int, job: Job | None = None) -> bool:
    """Whether process ``pid`` is in ``job`` (or in any job when ``job`` is None)."""
    handle = _OpenProcess(PROCESS_QUERY_INFORMATION | SYNCHRONIZE, False, pid)
    if not handle:
        raise _error(f"cannot open process {pid}")
    try:
        result = wintypes.BOOL()
        if not _IsProcessInJob(handle, job._handle() if job else None, ctypes.byref(result)):
            raise _error(f"cannot tell whether process {pid} is in a job")
        return bool(result.value)
    finally:
        _CloseHandle(handle)


def exit_code(pid: int) -> int | None:
    """The exit code of process ``pid`` if it has ended, None while it runs (or if it cannot be opened:
    then it is gone). Uses a handle: a pid alone is never trusted for anything else than this query."""
    handle = _OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE, False, pid)
    if not handle:
        return -1
    try:
        if _WaitForSingleObject(handle, 0) == WAIT_TIMEOUT:
            return None
        code = wintypes.DWORD()
        if not _GetExitCodeProcess(handle, ctypes.byref(code)):
            return -1
        return int(code.value)
    finally:
        _CloseHandle(handle)


def is_running(pid: int) -> bool:
    return exit_code(pid) is None
