"""Orphan guard: a tiny process that ends the programs when the supervisor dies, even by SIGKILL.

Linux's parent-death signal needs ``prctl`` in the child between fork and exec, i.e. a ``preexec_fn``,
which would make every (re)spawn a full fork plus Python code in the child (2-3 ms each). Instead the
supervisor forks one *sentinel* at start-up. The sentinel holds the read end of a pipe whose write end
only the supervisor holds; the supervisor writes one line per program start (``+PID NAME``) and exit
(``-PID``). When the supervisor dies, however it dies, the kernel closes the write end, the sentinel
reads EOF and ends the program groups still listed: SIGTERM, a grace period, then SIGKILL. It acts by
identity only: it records each program's create time (psutil) when it learns of it, and re-checks it
before every signal, so a recycled pid is never hit.

The sentinel is forked, not exec'd: it shares the supervisor's memory pages copy-on-write, so it
costs a few hundred KiB, and it starts in well under a millisecond. It blocks in ``read`` and never
wakes while the supervisor lives, except when told of a start or an exit.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import NoReturn

POLL = 0.05


class Sentinel:
    """The supervisor's side: fork the sentinel, tell it about programs, let it go on a clean exit."""

    def __init__(self, grace: float, events_path: str | None = None) -> None:
        self.grace = grace
        self.events_path = events_path
        self.pid: int | None = None
        self._w: int | None = None
        self.dropped = 0  # lines the pipe could not take (sentinel stopped or wedged)

    def start(self, live: dict[int, str] | None = None) -> int:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked child, which never returns
            _child(r, w, self.grace, self.events_path)
        os.close(r)
        os.set_blocking(w, False)
        self.pid, self._w = pid, w
        for program_pid, name in (live or {}).items():
            self.add(program_pid, name)
        return pid

    def add(self, pid: int, name: str) -> None:
        self._send(b"+%d %s\n" % (pid, name.encode()))

    def remove(self, pid: int) -> None:
        self._send(b"-%d\n" % pid)

    def _send(self, line: bytes) -> None:
        if self._w is None:
            return
        try:
            os.write(self._w, line)  # < PIPE_BUF: written whole or not at all
        except (BlockingIOError, BrokenPipeError):
            self.dropped += 1

    def lost(self) -> None:
        """The sentinel process exited (it was killed): forget it, so ``start`` can fork a new one."""
        if self._w is not None:
            os.close(self._w)
        self._w = None
        self.pid = None

    def close(self) -> None:
        """Clean exit: closing the pipe lets the sentinel end whatever is still listed (normally nothing)."""
        if self._w is not None:
            os.close(self._w)
            self._w = None


# ---------------------------------------------------------------------------------------------- child


def _child(r: int, w: int, grace: float, events_path: str | None) -> NoReturn:
    code = 0
    try:
        os.close(w)
        # The supervisor's signal plumbing must not fire here: its wakeup fd is about to be closed.
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            # A terminal's Ctrl-C or a group-wide TERM is for the supervisor, which then stops the
            # programs and closes the pipe; the sentinel only acts on EOF.
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.closerange(3, r)
        os.closerange(r + 1, 1 << 16)
        _set_title()
        table = _listen(r)
        if table:
            _end_all(table, grace, events_path)
    except BaseException:  # noqa: BLE001 - a forked child must never unwind into the supervisor's code
        code = 1
    finally:
        os._exit(code)


def _listen(r: int) -> dict[int, tuple[str, float]]:
    """Read start/exit lines until EOF; returns the programs still running then: pid → (name, create_time)."""
    import psutil

    table: dict[int, tuple[str, float]] = {}
    pending = b""
    while True:
        try:
            data = os.read(r, 65536)
        except InterruptedError:
            continue
        if not data:
            return table
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line[:1] == b"+":
                pid_text, _, name = line[1:].partition(b" ")
                pid = int(pid_text)
                try:
                    # The supervisor has not reaped it yet when it writes "+", so this is the program.
                    table[pid] = (name.decode(), psutil.Process(pid).create_time())
                except psutil.Error:
                    pass  # already gone
            elif line[:1] == b"-":
                table.pop(int(line[1:]), None)


def _same(pid: int, create_time: float) -> bool:
    """The process ``pid`` is still the one we recorded and has not exited (zombies count as gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) <= 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _pid_free(pid: int) -> bool:
    import psutil

    return not psutil.pid_exists(pid)


def _end_all(table: dict[int, tuple[str, float]], grace: float, events_path: str | None) -> None:
    for pid, (_, ctime) in table.items():
        if _same(pid, ctime):
            _killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = {pid for pid, (_, ctime) in table.items() if _same(pid, ctime)}
    while alive and time.monotonic() < deadline:
        time.sleep(POLL)
        alive = {pid for pid in alive if _same(pid, table[pid][1])}
    for pid, (_, ctime) in table.items():
        # The leader still being ours, or its pid unused, means the group id still names the program's
        # group (a pid is not reused while a group of that id exists): sweep double-forked leftovers too.
        if _same(pid, ctime) or _pid_free(pid):
            _killpg(pid, signal.SIGKILL)
    if events_path:
        _record(events_path, table, alive)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


def _record(events_path: str, table: dict[int, tuple[str, float]], killed: set[int]) -> None:
    try:
        from pathlib import Path

        from ..store.events import EventLog

        ledger = EventLog(Path(events_path))
        for pid, (name, _) in table.items():
            ledger.emit("orphan-guard", name, pid, reason="the supervisor died; its sentinel ended the program",
                        killed=pid in killed)
        ledger.close()
    except Exception:  # noqa: BLE001 - best effort: the programs are ended either way
        pass


def _set_title() -> None:
    """Show up as ``daemonkit-sentinel`` in ps/top (comm name), so an operator knows what it is."""
    if not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("dk-sentinel")
    except OSError:
        pass
