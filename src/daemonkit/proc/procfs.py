"""Linux ``/proc``, read the way psutil reads it, for the callers that cannot afford psutil.

The supervisor records the create time of every program it starts and keeps every module it imports
for the daemon's whole life (psutil is ~1.3 MiB of it); the sentinel (``sentinel_main.py``, which
imports this file as a sibling module) must stay a ~3 MiB process; ``status --deep`` checks the
liveness of every program of a daemon, where psutil reads each stat file twice and ``/proc/stat`` once
per process. All need only what one line of ``/proc/PID/stat`` says, with psutil's own formula for the create time
(start time in clock ticks / ticks per second + boot time), so the floats are equal, bit for bit, to
``psutil.Process(pid).create_time()`` (tests/test_identity.py). Everything else asks psutil.
"""

from __future__ import annotations

import os

_BOOT: list[float] = []


def stat(pid: int) -> tuple[str, float]:
    """``(state letter, create time)`` of ``pid`` (also of a zombie). Raises ``ProcessLookupError``
    when there is no such process, ``OSError``/``ValueError`` when ``/proc`` cannot tell (hidepid,
    an unexpected format, no descriptor left)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    try:
        data = os.read(fd, 4096)  # one line of ~300 bytes; a raw read skips io's buffering
    finally:
        os.close(fd)
    if not data:
        raise ProcessLookupError(pid)  # it exited between the open and the read
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode("ascii", "replace"), float(fields[19]) / os.sysconf("SC_CLK_TCK") + boot_time()


def boot_time() -> float:
    """``btime`` of ``/proc/stat``, as psutil reads it (read once: it does not change while we run)."""
    if not _BOOT:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime"):
                    _BOOT.append(float(line.split()[1]))
                    break
            else:
                raise OSError("no btime line in /proc/stat")
    return _BOOT[0]
