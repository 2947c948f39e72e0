"""The control channel: newline-delimited JSON requests over an owner-only Unix socket.

Request:  ``{"op": "status" | "start" | "stop" | "restart" | "shutdown" | "wait", "program": NAME | null}``
Response: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Requests that change state are
answered when the change has settled (a program is up or has failed; stopped), so clients need not
poll. The socket lives in the 0700 home (or a 0700 temp dir) and, on Linux, peers of another uid
are refused even if they got past the permissions (root excepted). A request line must arrive whole
within ``REQUEST_TIMEOUT`` of connecting; a client that stays silent is answered why and dropped, and
counts as a refused control request.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

MAX_REQUEST = 64 * 1024
SEND_TIMEOUT = 10.0  # a client that has not read its answer by then is dropped
ACCEPT_PAUSE = 0.1  # out of descriptors with no reserve left: stop accepting this long (no busy loop)
# A client that has not sent a whole request line by then is answered "timed out" and dropped (one
# that connects and stays silent would otherwise hold a descriptor forever). The timer exists only
# while such a connection is open: an idle supervisor with no client still never wakes up.
REQUEST_TIMEOUT = 5.0

Reply = Callable[[dict[str, Any]], None]


class ControlServer:
    def __init__(self, path: Path, loop: Any, handler: Callable[[dict[str, Any], Reply], None],
                 on_refused: Callable[[str], None] = lambda why: None) -> None:
        self.path = Path(path)
        self.loop = loop
        self.handler = handler
        self.on_refused = on_refused
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            old_umask = os.umask(0o077)
            try:
                self.sock.bind(str(self.path))
            finally:
                os.umask(old_umask)
            os.chmod(self.path, 0o600)
        except OSError as exc:
            # Something in the way (a directory, a read-only dir): restarting will not help.
            self.sock.close()
            from ..errors import DaemonkitError

            raise DaemonkitError(f"cannot create the control socket {self.path}", exc.strerror or str(exc),
                                 f"remove whatever is at {self.path} or make its directory writable") from None
        self.sock.listen(128)
        self.sock.setblocking(False)
        # One descriptor held in reserve: when the supervisor runs out (EMFILE, e.g. programs that
        # cannot start for want of them), it is given up so a client can still connect and learn why.
        self._reserve: int | None = None
        self.take_reserve()
        loop.add_reader(self.sock.fileno(), self._accept)

    def take_reserve(self) -> None:
        if self._reserve is None:
            try:
                self._reserve = os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                pass  # still at the limit: retaken when a connection closes

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE):
                    return
                if self._reserve is not None:
                    os.close(self._reserve)
                    self._reserve = None
                    continue
                # Nothing left to accept with: the listening socket stays readable, so waiting in the
                # selector would spin. Stop listening for a moment instead.
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(ACCEPT_PAUSE, self._resume)
                return
            refusal = _peer_refusal(conn)
            if refusal:
                self.on_refused(refusal)
                _send(conn, {"ok": False, "error": refusal})
                # Not closed yet: closing with the client's request unread would reset the connection
                # (EPIPE on its send, ECONNRESET on its read) before it could read why it was refused.
                conn.setblocking(False)
                _Refused(conn, self)
                continue
            conn.setblocking(False)
            _Connection(conn, self)

    def _resume(self) -> None:
        if self.sock.fileno() >= 0:
            self.take_reserve()
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
        try:
            os.unlink(self.path)
        except OSError:
            pass
        if self.path.parent.parent == Path(tempfile.gettempdir()):
            # The short private socket dir in /tmp (long home paths, see paths.Home): leave nothing
            # behind in a shared directory. Fails harmlessly while a notify socket is still in it.
            try:
                os.rmdir(self.path.parent)
            except OSError:
                pass


class _Connection:
    def __init__(self, conn: socket.socket, server: ControlServer) -> None:
        self.conn = conn
        self.server = server
        self.buffer = b""
        self.answered = False
        self.closed = False
        self.out = b""
        self.timer: Any = server.loop.call_later(REQUEST_TIMEOUT, self._incomplete)
        server.loop.add_reader(conn.fileno(), self._on_readable)

    def _incomplete(self) -> None:
        """The request deadline passed without a whole line: count it as refused, say why, hang up."""
        self.timer = None
        if self.answered or self.closed:
            return
        why = (f"no complete request within {REQUEST_TIMEOUT:g}s ({len(self.buffer)} bytes without a "
               "newline): connection dropped")
        self.server.on_refused(why)
        self.reply({"ok": False, "error": why})

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_readable(self) -> None:
        data = _recv(self.conn)
        if data is None:
            return
        if not data:
            self._close()
            return
        self.buffer += data
        if b"\n" not in self.buffer:
            if len(self.buffer) > MAX_REQUEST:
                self.reply({"ok": False, "error": "request too large"})
            return
        line = self.buffer.split(b"\n", 1)[0]
        self.server.loop.remove_reader(self.conn.fileno())
        self._cancel_timer()  # a whole request: the handler answers it when it has settled (no deadline)
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            self.reply({"ok": False, "error": f"bad request: {exc}"})
            return
        self.server.handler(request, self.reply)

    def reply(self, response: dict[str, Any]) -> None:
        if self.answered:
            return
        self.answered = True
        self._cancel_timer()
        self.server.loop.remove_reader(self.conn.fileno())
        self.out = encode_reply(response)
        self._flush()
        if self.out and not self.closed:
            # A client that does not read its (large) answer must not block the loop, which also
            # restarts programs: finish writing when the socket is writable, or give up after a while.
            self.server.loop.add_writer(self.conn.fileno(), self._flush)
            self.timer = self.server.loop.call_later(SEND_TIMEOUT, self._close)

    def _flush(self) -> None:
        try:
            sent = self.conn.send(self.out)
            self.out = self.out[sent:]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.out = b""
        if not self.out:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        self.server.loop.remove_reader(self.conn.fileno())  # unregisters a writer too
        try:
            self.conn.close()
        except OSError:
            pass
        self.server.take_reserve()


class _Refused:
    """A refused peer: its request is read and dropped until it hangs up (bounded in size and in
    time), then closed."""

    def __init__(self, conn: socket.socket, server: ControlServer) -> None:
        self.conn = conn
        self.server = server
        self.seen = 0
        self.closed = False
        self.timer = server.loop.call_later(REQUEST_TIMEOUT, self._close)
        server.loop.add_reader(conn.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        data = _recv(self.conn)
        if data is None:
            return
        self.seen += len(data)
        if not data or self.seen > MAX_REQUEST:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.timer.cancel()
        self.server.loop.remove_reader(self.conn.fileno())
        self.conn.close()
        self.server.take_reserve()


def _recv(conn: socket.socket) -> bytes | None:
    """One read from a non-blocking connection: ``None`` when nothing is there after all (a spurious
    wakeup), ``b""`` at its end; a broken connection counts as ended."""
    try:
        return conn.recv(65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def encode_reply(response: dict[str, Any]) -> bytes:
    """``(json.dumps(response, default=str) + "\\n").encode()``, byte for byte, but built a piece at a
    time into one buffer: a status answer at N programs is a dict per program, and encoding it whole
    (the encoder's fragments, the text, then its bytes) left ~0.7 MiB in the supervisor's heap after a
    single ``status`` at N = 500 (docs/benchmarks.md, Memory). A value with a ``json_items()`` method is
    written as the object of the (str key, value) pairs it yields, so that the engine's per-program
    dicts need not all exist at once either."""
    import io

    out = io.BytesIO()
    encode = _ENCODER.encode
    write = out.write

    def emit(value: Any, depth: int) -> None:
        # Three levels are streamed (answer, state, programs); below, each program is one piece.
        items = getattr(value, "json_items", None)  # a live view (the engine's state): pairs made on demand
        if items is not None or (depth < 3 and type(value) is dict and all(type(k) is str for k in value)):
            sep = b"{"
            for key, item in (items() if items is not None else value.items()):
                write(sep + encode(key).encode() + b": ")
                sep = b", "
                emit(item, depth + 1)
            write(b"{}" if sep == b"{" else b"}")
        else:
            write(encode(value).encode())

    emit(response, 0)
    write(b"\n")
    return out.getvalue()


_ENCODER = json.JSONEncoder(default=str)


def _send(conn: socket.socket, response: dict[str, Any]) -> None:
    try:
        conn.sendall((json.dumps(response, default=str) + "\n").encode())
    except OSError:
        pass


def _peer_refusal(conn: socket.socket) -> str:
    if not sys.platform.startswith("linux"):
        return ""  # the 0700 directory is the guard elsewhere
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
    except OSError:
        return "cannot verify the peer's identity"
    if uid not in (os.geteuid(), 0):
        return f"uid {uid} may not control a supervisor of uid {os.geteuid()}"
    return ""


class ControlError(Exception):
    pass


def request(path: Path, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request and wait for its answer. ``ControlError`` when nobody answers."""
    if sys.platform == "win32":  # a named pipe there (no AF_UNIX in CPython on Windows): winloop.py
        from .winloop import PipeControlError, pipe_name, pipe_request

        try:
            return pipe_request(pipe_name(path), message, timeout)
        except PipeControlError as exc:
            raise ControlError(str(exc)) from None
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlError(f"no supervisor listening on {path}: {exc.strerror}") from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall((json.dumps(message) + "\n").encode())
        except OSError as exc:  # the supervisor closed on us (it is shutting down, or refused us)
            raise ControlError(f"the supervisor closed the connection: {exc.strerror or exc}") from None
        chunks = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ControlError(f"the supervisor did not answer within {timeout:g}s")
            sock.settimeout(remaining)
            try:
                data = sock.recv(1 << 20)
            except socket.timeout:
                raise ControlError(f"the supervisor did not answer within {timeout:g}s") from None
            except OSError as exc:  # reset: the supervisor exited while we waited
                raise ControlError(f"the supervisor closed the connection: {exc.strerror or exc}") from None
            if not data:
                break
            chunks.append(data)
            if data.endswith(b"\n"):
                break
    finally:
        sock.close()
    raw = b"".join(chunks)
    if not raw:
        raise ControlError("the supervisor closed the connection without answering (is it shutting down?)")
    try:
        response = json.loads(raw)
    except ValueError:
        raise ControlError("the supervisor sent an unreadable answer") from None
    if not isinstance(response, dict):
        raise ControlError("the supervisor sent an unreadable answer")
    return response
