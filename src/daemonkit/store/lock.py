"""The supervisor lock: an OS file lock held for the supervisor's whole life.

The OS drops the lock when its holder dies, however it dies, so "is the lock held?" is the one signal
that cannot go stale. The file also carries a JSON record of the holder for diagnostics. On POSIX the
whole file is ``flock``ed; on Windows ``msvcrt.locking`` locks one byte far past the record, because a
locked byte range cannot be read by others and the record must stay readable.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import UnsafeFileError

# Far past any record, and within the 31-bit range msvcrt.locking accepts.
_WINDOWS_LOCK_OFFSET = 0x7FFF0000


class LockProbe(NamedTuple):  # not a dataclass: the supervisor imports this module (see spec.py)
    held: bool
    record: dict[str, Any] | None = None
    problem: str = ""  # why the record could not be read, if it could not


class SupervisorLock:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, record: dict[str, Any]) -> bool:
        """Take the lock without waiting and write ``record`` into it. False if another process holds it."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno != errno.ELOOP or not os.path.islink(self.path):
                raise UnsafeFileError(f"cannot open the supervisor lock {self.path}", exc.strerror or str(exc),
                                      f"remove {self.path} (no supervisor can hold it as it is)") from None
            # A symlink planted in our private home: nobody can hold a lock through it (O_NOFOLLOW),
            # so replacing the link with a real lock file is safe; its target is never touched.
            os.unlink(self.path)
            fd = os.open(self.path, flags, 0o600)
        if not _try_lock(fd):
            os.close(fd)
            return False
        self._fd = fd
        self.update(record)
        return True

    def update(self, record: dict[str, Any]) -> None:
        assert self._fd is not None, "lock not held"
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, data)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        _unlock(fd)
        os.close(fd)


def probe_lock(path: Path) -> LockProbe:
    """Whether some process holds the lock now, and the record it wrote. Never blocks.

    To ask the OS we briefly try the lock ourselves; if that succeeds nobody held it and we let go at
    once (a supervisor starting in that instant retries, see ``Supervisor``).
    """
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return LockProbe(False, None, "no lock file")
    except OSError as exc:
        return LockProbe(False, None, f"cannot open: {exc.strerror or exc}")
    try:
        got = _try_lock(fd)
        if got:
            _unlock(fd)
        record, problem = _read_record(fd)
        return LockProbe(not got, record, problem)
    finally:
        os.close(fd)


def _read_record(fd: int) -> tuple[dict[str, Any] | None, str]:
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 65536)
    if not data.strip():
        return None, "empty"
    try:
        record = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return None, "record is not valid JSON"
    return (record, "") if isinstance(record, dict) else (None, "record is not a JSON object")


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
        os.lseek(fd, 0, os.SEEK_SET)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
