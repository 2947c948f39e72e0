"""Orphan guard: a tiny process that ends the programs when the supervisor dies, even by SIGKILL.

Linux's parent-death signal needs ``prctl`` in the child between fork and exec, i.e. a ``preexec_fn``,
which makes every (re)spawn a full fork plus Python code in the child (2-3 ms each). Instead the
supervisor starts one *sentinel* (``sentinel_main.py``, run by ``python -I -S``: no site, no
daemonkit imports, ~3 MiB). Its stdin is the read end of a pipe whose write end only the supervisor
holds; the supervisor writes one line per program start (``+PID NAME``) and exit (``-PID``). When
the supervisor dies, however it dies, the kernel closes the write end, the sentinel reads EOF and ends
the program groups still listed: SIGTERM, a grace period, then SIGKILL, by identity only (pid + start
time recorded when it learnt of the program, re-checked before every signal).

The sentinel sleeps in ``read`` and never wakes while the supervisor lives, except when told of a start
or an exit. It runs in its own session, so a terminal's Ctrl-C or hang-up does not reach it.

(A forked sentinel was tried first: no exec, but the supervisor keeps writing to the pages they share,
so the fork ended up with ~4.5 MiB of private copies, more than a fresh minimal interpreter.)
"""

from __future__ import annotations

import os
import sys


class Sentinel:
    """The supervisor's side: start the sentinel, tell it about programs, let it go on a clean exit."""

    def __init__(self, grace: float, events_path: str | None = None) -> None:
        self.grace = grace
        self.events_path = events_path
        self.pid: int | None = None
        self._w: int | None = None
        self.dropped = 0  # lines the pipe could not take (sentinel stopped or wedged)
        self._pending = b""

    def argv(self) -> list[str]:
        here = os.path.dirname(os.path.abspath(__file__))
        psutil_dir = ""
        if not sys.platform.startswith("linux"):
            import psutil

            psutil_dir = os.path.dirname(os.path.dirname(os.path.abspath(psutil.__file__)))
        # Imported rather than run as a script, so its cached bytecode is used (compiling costs memory).
        code = (f"import sys; sys.path.insert(0, {here!r}); import sentinel_main; "
                "sys.exit(sentinel_main.main(sys.argv))")
        return [sys.executable, "-I", "-S", "-c", code, repr(float(self.grace)), self.events_path or "", psutil_dir]

    def start(self, live: dict[int, str] | None = None) -> int:
        r, w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        argv = self.argv()
        try:
            pid = os.posix_spawn(argv[0], argv, {"PATH": os.defpath},
                                 file_actions=[(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)],
                                 setsid=True)
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
            os.close(devnull)
        os.set_blocking(w, False)
        self.pid, self._w = pid, w
        for program_pid, name in (live or {}).items():
            self.add(program_pid, name)
        self.flush()
        return pid

    def add(self, pid: int, name: str) -> None:
        """Queue a start; ``flush`` sends it. The engine flushes once per loop turn, after the turn's
        restarts: waking the sentinel before a respawn put it on the CPU the new program needed."""
        self._pending += b"+%d %s\n" % (pid, name.encode())

    def remove(self, pid: int) -> None:
        self._pending += b"-%d\n" % pid

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def flush(self) -> None:
        if self._w is None or not self._pending:
            self._pending = b""
            return
        try:
            written = os.write(self._w, self._pending)
        except BlockingIOError:
            written = 0  # full pipe (sentinel stopped?): kept for the next flush, bounded below
        except BrokenPipeError:
            written = len(self._pending)
        self._pending = self._pending[written:]
        if len(self._pending) > 1 << 20:
            cut = self._pending.index(b"\n", len(self._pending) - (1 << 20)) + 1
            self.dropped += self._pending[:cut].count(b"\n")
            self._pending = self._pending[cut:]

    def lost(self) -> None:
        """The sentinel process exited (it was killed): forget it, so ``start`` can run a new one."""
        if self._w is not None:
            os.close(self._w)
        self._w = None
        self.pid = None

    def close(self) -> None:
        """Clean exit: closing the pipe lets the sentinel end whatever is still listed (normally nothing)."""
        if self._w is not None:
            self.flush()  # never blocking: a wedged (stopped) sentinel must not hang the shutdown
            os.close(self._w)
            self._w = None
