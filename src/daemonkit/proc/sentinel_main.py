"""The orphan-guard sentinel process (see ``sentinel.py``). Runs as ``python -I -S sentinel_main.py``.

Standalone on purpose: no daemonkit or site imports, so the process costs ~3 MiB instead of a
supervisor's ~13. stdin is the read end of the supervisor's pipe. Lines: ``+PID NAME`` (a program
started), ``-PID`` (it exited). On EOF (the supervisor is gone, however it died) every program still
listed is ended by identity: SIGTERM to its process group, ``GRACE`` seconds, then SIGKILL.

Identity is (pid, start time). On Linux the start time is read from ``/proc/PID/stat`` by
``procfs.py`` (psutil's ``create_time``, computed as psutil does: importing psutil here would double
this process's memory); elsewhere psutil is imported from the directory passed as argv[3].
"""

import os
import sys
import time

try:
    import _signal as signal  # the C module: the ``signal`` wrapper imports enum (~1 MiB here)
except ImportError:  # pragma: no cover
    import signal

POLL = 0.05


def _linux_start(pid):
    # procfs.py sits beside this file, on this process's only sys.path entry (see sentinel.py).
    from procfs import stat

    try:
        letter, created = stat(pid)
    except (OSError, ValueError, IndexError):
        return None
    if letter == "Z":  # exited, not yet reaped: gone for our purposes
        return None
    return created


def _psutil_start(pid):
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.Error:
        return None


def _pid_exists(pid):
    try:
        os.kill(pid, 0)  # POSIX only (this process never runs on Windows)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


def _be_idle():
    """Never take a CPU from anyone while the supervisor lives: a woken sentinel used to preempt the
    program being restarted (SCHED_IDLE on Linux, lowest nice elsewhere)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(19)
        except OSError:
            pass


def _be_normal():
    """Time to act: back to the normal class when allowed (it needs RLIMIT_NICE or privileges)."""
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def main(argv):
    grace = float(argv[1])
    events = argv[2] if len(argv) > 2 and argv[2] else None
    if len(argv) > 3 and argv[3]:
        sys.path.insert(0, argv[3])
    start_of = _linux_start if sys.platform.startswith("linux") else _psutil_start
    _be_idle()
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        # A Ctrl-C or a group-wide TERM is for the supervisor, which then stops the programs and closes
        # the pipe; the sentinel acts on EOF only.
        signal.signal(signum, signal.SIG_IGN)
    table = {}
    pending = b""
    while True:
        try:
            data = os.read(0, 65536)
        except InterruptedError:
            continue
        if not data:
            break
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line[:1] == b"+":
                pid_text, _, name = line[1:].partition(b" ")
                pid = int(pid_text)
                # The supervisor writes "+" before it can reap the program, so this is the program.
                start = start_of(pid)
                if start is not None:
                    table[pid] = (name.decode(), start)
            elif line[:1] == b"-":
                table.pop(int(line[1:]), None)
    if not table:
        return 0
    _be_normal()

    def same(pid):
        return start_of(pid) == table[pid][1]

    for pid in table:
        if same(pid):
            _killpg(pid, signal.SIGTERM)
    alive = {pid for pid in table if same(pid)}
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(POLL)
        alive = {pid for pid in alive if same(pid)}
    for pid in table:
        # The leader still ours, or its pid unused, means the group id still names the program's group
        # (a pid is not reused while a group of that id exists): sweep double-forked leftovers too.
        if same(pid) or not _pid_exists(pid):
            _killpg(pid, signal.SIGKILL)
    if events:
        import json

        try:
            fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            for pid, (name, _) in table.items():
                record = {"ts": round(time.time(), 6), "event": "orphan-guard", "program": name, "pid": pid,
                          "detail": {"reason": "the supervisor died; its sentinel ended the program",
                                     "killed": pid in alive}}
                os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
            os.close(fd)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
