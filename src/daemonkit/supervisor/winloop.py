"""The supervisor's Windows parts: an event loop, a child watcher, a control transport, output pumps.

Windows has no SIGCHLD, no pidfd, no AF_UNIX in CPython, and ``select`` works on sockets only. The
same shapes as the POSIX side are built from what Windows does have, with no periodic wakeups:

* ``WinLoop``: the loop's interface (``call_later``, ``call_soon``, ``call_soon_threadsafe``, ``run``,
  ``stop``, ``close``, ``wakeups``) around ``WaitForSingleObject`` on one auto-reset *wake event*.
  Timers exist only while something is pending; idle, the loop sleeps in the kernel.
* ``HandleWatcher``: the ``ChildWatcher`` protocol (``watch``/``forget``/``close``). Threads wait on
  process handles with ``WaitForMultipleObjects`` (63 processes + 1 control event per thread, so any
  number of programs) and hand each exit, with its real exit code, to the loop.
* ``PipeControlServer`` / ``pipe_request``: the control channel over a named pipe
  (``multiprocessing.connection``, stdlib), one JSON request and one JSON answer per connection, the
  handler run in the loop thread. The pipe name is derived from the home; only its creator (and
  SYSTEM/administrators) may write to it: the default named-pipe DACL.
* ``OutputPump``: a thread per program stream that blocks on the pipe and hands chunks to a writer, so
  a program that floods its output never stalls the loop.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
import threading
import time
from collections import deque
from ctypes import wintypes
from typing import Any, Callable

from .control import REQUEST_TIMEOUT
from .timers import TimerQueue

if sys.platform != "win32":  # pragma: no cover - imported only on Windows
    raise ImportError("daemonkit.supervisor.winloop is Windows-only")

from ..proc.win32 import (CloseHandle as _CloseHandle, CreateEventW as _CreateEventW,
                          GetExitCodeProcess as _GetExitCodeProcess, OpenProcess as _OpenProcess,
                          SetEvent as _SetEvent, WaitForSingleObject as _WaitForSingleObject, proto)

Callback = Callable[[], None]
OnExit = Callable[[int, int], None]

_WaitForMultipleObjects = proto("WaitForMultipleObjects", wintypes.DWORD, wintypes.DWORD,
                                ctypes.POINTER(wintypes.HANDLE), wintypes.BOOL, wintypes.DWORD)

INFINITE = 0xFFFFFFFF
WAIT_OBJECT_0 = 0
WAIT_FAILED = 0xFFFFFFFF
MAXIMUM_WAIT_OBJECTS = 64
SYNCHRONIZE = 0x00100000
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
CTRL_CLOSE_DRAIN = 4.5  # Windows ends a process 5 s after a close/logoff/shutdown event
_HandlerRoutine = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)
_SetConsoleCtrlHandler = proto("SetConsoleCtrlHandler", wintypes.BOOL, _HandlerRoutine, wintypes.BOOL)


class WinLoop(TimerQueue):
    def __init__(self) -> None:
        super().__init__()
        self._ready: deque[Callback] = deque()
        self._threadsafe: deque[Callback] = deque()
        self._lock = threading.Lock()
        self._wake = _CreateEventW(None, False, False, None)  # auto-reset
        if not self._wake:
            raise OSError(ctypes.get_last_error(), "CreateEventW failed")
        self._running = False
        self._signal_callbacks: dict[int, Callback] = {}
        self._ctrl_handler: Any = None
        self._stopped = threading.Event()
        self.wakeups = 0

    # ---------------------------------------------------------------- registration
    def add_reader(self, fd: int, callback: Callback) -> None:
        raise TypeError("WinLoop.add_reader: Windows cannot wait on pipe descriptors; use OutputPump / PipeControlServer")

    def remove_reader(self, fd: int) -> None:
        pass

    def call_soon(self, callback: Callback) -> None:
        self._ready.append(callback)

    def call_soon_threadsafe(self, callback: Callback) -> None:
        with self._lock:
            self._threadsafe.append(callback)
        _SetEvent(self._wake)

    def add_signal_handler(self, signum: int, callback: Callback) -> None:
        """SIGINT/SIGTERM/SIGBREAK: run ``callback`` in the loop on a console control event (Ctrl+C,
        Ctrl+Break, console closed, logoff, shutdown). The handler is a native console control handler,
        called by Windows in a thread of its own, so the loop can sleep in the kernel with no timeout
        (Python's signal handlers only run between bytecodes, never during that wait)."""
        self._signal_callbacks[signum] = callback
        if self._ctrl_handler is None:
            def handler(event: int) -> bool:
                callbacks = list(self._signal_callbacks.values())
                if not callbacks:
                    return False
                self.call_soon_threadsafe(callbacks[0])
                if event >= 2:  # CLOSE / LOGOFF / SHUTDOWN: the process ends when we return; drain first
                    self._stopped.wait(CTRL_CLOSE_DRAIN)
                return True

            self._ctrl_handler = _HandlerRoutine(handler)
            _SetConsoleCtrlHandler(self._ctrl_handler, True)

    # ---------------------------------------------------------------- running
    def stop(self) -> None:
        self._running = False
        _SetEvent(self._wake)

    def run(self) -> None:
        self._running = True
        self._stopped.clear()
        try:
            while self._running:
                self.run_once()
        finally:
            self._stopped.set()

    def run_once(self) -> None:
        timeout = self._next_timeout()
        millis = INFINITE if timeout is None else int(min(timeout, 86400.0) * 1000 + 0.999)
        _WaitForSingleObject(self._wake, millis)
        self.wakeups += 1
        with self._lock:
            pending, self._threadsafe = self._threadsafe, deque()
        for callback in pending:
            callback()
        self._run_due_timers()
        while self._ready:
            self._ready.popleft()()

    def close(self) -> None:
        self._stopped.set()
        if self._ctrl_handler is not None:
            _SetConsoleCtrlHandler(self._ctrl_handler, False)
            self._ctrl_handler = None
        self._signal_callbacks.clear()
        if self._wake:
            _CloseHandle(self._wake)
            self._wake = None


# ------------------------------------------------------------------------------------ child watcher


class _WaitGroup(threading.Thread):
    """One thread waiting on up to 63 process handles plus its own control event."""

    def __init__(self, watcher: "HandleWatcher") -> None:
        super().__init__(name="daemonkit-handle-watcher", daemon=True)
        self.watcher = watcher
        self.control = _CreateEventW(None, False, False, None)
        self.pids: dict[int, int] = {}  # pid -> process handle
        self.closing = False

    def run(self) -> None:
        while True:
            with self.watcher.lock:
                if self.closing:
                    break
                entries = list(self.pids.items())
            handles = (wintypes.HANDLE * (len(entries) + 1))(self.control, *[h for _, h in entries])
            index = _WaitForMultipleObjects(len(entries) + 1, handles, False, INFINITE)
            if index == WAIT_FAILED:
                time.sleep(0.05)  # a handle was closed under us by forget(); the next turn rebuilds
                continue
            slot = index - WAIT_OBJECT_0
            if slot == 0 or slot > len(entries):
                continue  # the set changed: rebuild
            pid, handle = entries[slot - 1]
            code = wintypes.DWORD()
            rc = int(code.value) if _GetExitCodeProcess(handle, ctypes.byref(code)) else -1
            with self.watcher.lock:
                if self.pids.pop(pid, None) is None:
                    continue  # forgotten meanwhile
                callback = self.watcher.callbacks.pop(pid)
            _CloseHandle(handle)
            self.watcher.loop.call_soon_threadsafe(lambda pid=pid, rc=rc, cb=callback: cb(pid, rc))
        _CloseHandle(self.control)


class HandleWatcher:
    """Reports program exits with their exit codes; any number of programs, no polling."""

    name = "handles"
    PER_THREAD = MAXIMUM_WAIT_OBJECTS - 1

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.callbacks: dict[int, OnExit] = {}
        self.groups: list[_WaitGroup] = []

    def __len__(self) -> int:
        return len(self.callbacks)

    def watch(self, pid: int, on_exit: OnExit, before_reap: Callable[[int], None] | None = None) -> None:
        """``pid`` must be a child we still hold a handle to (a Popen object), so the pid cannot have been
        reused. ``before_reap`` has no Windows meaning (no zombies; the job ends the tree) and is ignored."""
        handle = _OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not handle:
            raise OSError(ctypes.get_last_error(), f"cannot open process {pid} to watch it")
        with self.lock:
            self.callbacks[pid] = on_exit
            group = next((g for g in self.groups if len(g.pids) < self.PER_THREAD and not g.closing), None)
            if group is None:
                group = _WaitGroup(self)
                self.groups.append(group)
                group.pids[pid] = handle
                group.start()
                return
            group.pids[pid] = handle
        _SetEvent(group.control)

    def forget(self, pid: int) -> None:
        with self.lock:
            self.callbacks.pop(pid, None)
            for group in self.groups:
                handle = group.pids.pop(pid, None)
                if handle is not None:
                    _SetEvent(group.control)
                    # Closed after the thread has rebuilt its wait set, never under its feet.
                    threading.Timer(1.0, _CloseHandle, (handle,)).start()
                    return

    def close(self) -> None:
        with self.lock:
            for group in self.groups:
                group.closing = True
                _SetEvent(group.control)
            self.callbacks.clear()
        for group in self.groups:
            group.join(timeout=2.0)
        self.groups.clear()


def make_win_watcher(loop: Any, on_stray: Callable[[int, int], None] | None = None) -> HandleWatcher:
    """``watch.make_watcher``'s Windows counterpart (no strays on Windows: no re-parenting to us)."""
    return HandleWatcher(loop)


# ------------------------------------------------------------------------------------ control pipe


def pipe_name(home_path: str | os.PathLike[str]) -> str:
    """The control pipe of a home: derived from its absolute path, so clients find it without a file."""
    digest = hashlib.sha256(os.path.normcase(os.path.abspath(home_path)).encode("utf-8")).hexdigest()[:24]
    return f"\\\\.\\pipe\\daemonkit-{digest}"


Reply = Callable[[dict[str, Any]], None]
MAX_REQUEST = 64 * 1024


class PipeControlServer:
    """Accepts control connections in a thread; each request is handled in the loop thread and answered
    when the handler calls ``reply`` (which may be later: "start" answers once the program is ready)."""

    def __init__(self, name: str, loop: Any, handler: Callable[[dict[str, Any], Reply], None],
                 on_refused: Callable[[str], None] = lambda why: None) -> None:
        from multiprocessing.connection import Listener

        self.name = name
        self.loop = loop
        self.handler = handler
        self.on_refused = on_refused
        self.listener = Listener(address=name, family="AF_PIPE")
        self.closed = False
        self.thread = threading.Thread(target=self._accept_loop, name="daemonkit-control", daemon=True)
        self.thread.start()

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                conn = self.listener.accept()
            except OSError:
                if self.closed:
                    return
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        # A client that connects and stays silent would hold this thread and a pipe instance forever.
        # A pipe message arrives whole (message mode), so waiting for its start waits for all of it;
        # the wait is this thread's, not a loop timer: the loop wakes only to record the refusal.
        try:
            if not conn.poll(REQUEST_TIMEOUT):
                why = f"no complete request within {REQUEST_TIMEOUT:g}s: connection dropped"
                self.loop.call_soon_threadsafe(lambda: self.on_refused(why))
                self._send(conn, {"ok": False, "error": why})
                return
        except (EOFError, OSError):
            conn.close()
            return
        try:
            data = conn.recv_bytes(MAX_REQUEST)
            request = json.loads(data)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
        except (EOFError, OSError):
            conn.close()
            return
        except ValueError as exc:
            self._send(conn, {"ok": False, "error": f"bad request: {exc}"})
            return

        def reply(answer: dict[str, Any]) -> None:
            threading.Thread(target=self._send, args=(conn, answer), daemon=True).start()

        self.loop.call_soon_threadsafe(lambda: self.handler(request, reply))

    @staticmethod
    def _send(conn: Any, answer: dict[str, Any]) -> None:
        try:
            conn.send_bytes(json.dumps(answer).encode("utf-8"))
        except OSError:
            pass  # the client went away
        finally:
            conn.close()

    def close(self) -> None:
        self.closed = True
        try:
            # Unblock accept(): connect once ourselves.
            from multiprocessing.connection import Client

            Client(self.name, family="AF_PIPE").close()
        except OSError:
            pass
        self.listener.close()
        self.thread.join(timeout=2.0)


class WinControlServer(PipeControlServer):
    """``ControlServer``'s signature on Windows: the pipe is named after ``path`` (the home's
    ``control.sock``), and a small file at ``path`` names the pipe, so "is there a control channel?"
    is answered the same way on every OS (``path.exists()``)."""

    def __init__(self, path: Any, loop: Any, handler: Callable[[dict[str, Any], Reply], None],
                 on_refused: Callable[[str], None] = lambda why: None) -> None:
        self.path = str(path)
        super().__init__(pipe_name(self.path), loop, handler, on_refused)
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(self.name + "\n")

    def close(self) -> None:
        super().close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class PipeControlError(Exception):
    pass


def pipe_request(name: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a supervisor's control pipe and wait up to ``timeout`` for the answer."""
    from multiprocessing.connection import Client

    try:
        conn = Client(name, family="AF_PIPE")
    except FileNotFoundError:
        raise PipeControlError("no supervisor is listening (no control pipe)") from None
    except OSError as exc:
        raise PipeControlError(f"cannot connect to the control pipe: {exc}") from None
    try:
        conn.send_bytes(json.dumps(request).encode("utf-8"))
        if not conn.poll(timeout):
            raise PipeControlError(f"no answer within {timeout:g}s")
        answer = json.loads(conn.recv_bytes(16 * 1024 * 1024))
    except (EOFError, OSError) as exc:
        raise PipeControlError(f"the control pipe closed: {exc or 'no answer'}") from None
    except ValueError:
        raise PipeControlError("the supervisor's answer is not JSON") from None
    finally:
        conn.close()
    if not isinstance(answer, dict):
        raise PipeControlError("the supervisor's answer is not a JSON object")
    return answer


# ------------------------------------------------------------------------------------ output pumps


class OutputPump(threading.Thread):
    """Copies one program stream (a pipe) to ``write`` chunk by chunk; ``on_eof`` runs in the loop."""

    def __init__(self, stream: Any, write: Callable[[bytes], None], loop: Any | None = None,
                 on_eof: Callback | None = None, name: str = "daemonkit-output") -> None:
        super().__init__(name=name, daemon=True)
        self.stream = stream
        self.write = write
        self.loop = loop
        self.on_eof = on_eof
        self.start()

    def run(self) -> None:
        read = getattr(self.stream, "read1", None) or self.stream.read
        try:
            while True:
                chunk = read(65536)
                if not chunk:
                    break
                try:
                    self.write(chunk)
                except OSError:
                    pass  # a full disk must not kill the pump; the program keeps running
        except (OSError, ValueError):
            pass
        finally:
            try:
                self.stream.close()
            except OSError:
                pass
            if self.on_eof is not None and self.loop is not None:
                self.loop.call_soon_threadsafe(self.on_eof)
