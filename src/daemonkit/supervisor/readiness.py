"""Readiness checks: is a started program ready to serve?

tcp, http and file checks are single attempts (``check_once``), retried by the engine until the
deadline; they run on a small worker pool so a slow connect never stalls the loop. ``notify`` is
event-driven: the program sends ``READY=1`` (the sd_notify protocol) to the datagram socket named in
its ``NOTIFY_SOCKET``; see ``NotifyListener``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ..spec import Readiness, parse_host_port

ATTEMPT_TIMEOUT = 1.0


def check_once(ready: Readiness) -> tuple[bool, str]:
    """One attempt. Returns (ready, evidence)."""
    if ready.kind == "file":
        return (os.path.exists(ready.target), f"file {ready.target}")
    if ready.kind == "tcp":
        host, port = parse_host_port(ready.target, "<spec>", "ready.tcp")
        try:
            with socket.create_connection((host, port), timeout=ATTEMPT_TIMEOUT):
                return True, f"tcp {host}:{port} accepts connections"
        except OSError as exc:
            return False, f"tcp {host}:{port}: {exc.strerror or exc}"
    if ready.kind == "http":
        # Imported here: urllib.request pulls in http.client, email and ssl (~3 MiB), which a
        # supervisor without an http check should not carry.
        import urllib.error
        import urllib.request

        request = urllib.request.Request(ready.target, method="GET")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        try:
            with opener.open(request, timeout=ATTEMPT_TIMEOUT) as response:
                code = response.status
        except urllib.error.HTTPError as exc:
            return False, f"http {ready.target}: {exc.code}"
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return False, f"http {ready.target}: {reason}"
        return 200 <= code < 300, f"http {ready.target}: {code}"
    raise ValueError(f"check_once does not handle {ready.kind!r}")


class NotifyListener:
    """A datagram socket a program reports readiness to (``READY=1``), sd_notify style.

    One socket per program, so the sender is known without SCM_CREDENTIALS (not portable to macOS).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        old_umask = os.umask(0o077)
        try:
            self.sock.bind(str(self.path))
        finally:
            os.umask(old_umask)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_messages(self) -> list[dict[str, str]]:
        out = []
        while True:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            fields = {}
            for line in data.decode("utf-8", "replace").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    fields[key] = value
            out.append(fields)
        return out

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def notify_systemd(message: str) -> bool:
    """Tell our own service manager (systemd Type=notify) something, if it is listening."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False
