"""Size-bounded, rotated append-only files (program logs, the event ledger, the supervisor log).

A log that is never rotated once grew to 63 MB in one crash loop; here every file is capped at
``max_bytes`` and at most ``backups`` older generations (``name.1`` … ``name.N``) are kept.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def rotate(path: str | os.PathLike[str], backups: int) -> None:
    """Shift ``path`` → ``path.1`` → … → ``path.N``; the oldest generation is dropped."""
    name = os.fspath(path)
    if backups <= 0:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        return
    for i in range(backups - 1, 0, -1):
        src = f"{name}.{i}"
        if os.path.exists(src):
            os.replace(src, f"{name}.{i + 1}")
    if os.path.exists(name):
        os.replace(name, f"{name}.1")


def generations(path: Path, backups: int) -> list[Path]:
    """Existing files of a rotated log, oldest first."""
    files = [path.with_name(f"{path.name}.{i}") for i in range(backups, 0, -1)] + [path]
    return [p for p in files if p.exists()]


class RotatingFile:
    """An append-only file that rotates itself before a write would pass ``max_bytes``.

    The descriptor is opened lazily and kept; writes are plain ``os.write`` calls (no buffering, so a
    crash loses nothing already written). A write failure (disk full) is reported to the caller once
    per episode and the data dropped rather than blocking the supervisor.

    The supervisor keeps two per program for its whole life: slots, and the path as a plain string
    (a ``Path`` costs ~0.5 KiB more each).
    """

    __slots__ = ("path", "whole_lines", "max_bytes", "backups", "_fd", "_size", "dropped_bytes", "last_error")

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, backups: int, *, whole_lines: bool = False) -> None:
        """``whole_lines``: the file holds one record a line (the event ledger); a torn last line left
        by a crash is terminated before appending, so it cannot swallow the next record."""
        self.path = os.fspath(path)
        self.whole_lines = whole_lines
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: int | None = None
        self._size = 0
        self.dropped_bytes = 0
        self.last_error: str = ""

    def _open(self) -> int:
        if self._fd is None:
            flags = (os.O_RDWR if self.whole_lines else os.O_WRONLY) | os.O_APPEND | os.O_CREAT \
                | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
            try:
                self._fd = os.open(self.path, flags, 0o600)
            except OSError as exc:
                if exc.errno != errno.ELOOP or not os.path.islink(self.path):
                    raise
                # A symlink planted where we log: never write through it; replace the link itself.
                os.unlink(self.path)
                self._fd = os.open(self.path, flags, 0o600)
            self._size = os.fstat(self._fd).st_size
            if self.whole_lines and self._size:
                os.lseek(self._fd, self._size - 1, os.SEEK_SET)  # O_APPEND: writes still go to the end
                if os.read(self._fd, 1) != b"\n":
                    os.write(self._fd, b"\n")
                    self._size += 1
        return self._fd

    def write(self, data: bytes) -> bool:
        """Append ``data``; returns False (and counts the bytes as dropped) when the write failed."""
        if not data:
            return True
        try:
            fd = self._open()
            if self._size and self._size + len(data) > self.max_bytes:
                self.close()
                rotate(self.path, self.backups)
                fd = self._open()
            if len(data) > self.max_bytes:
                data = data[-self.max_bytes:]  # a single huge chunk keeps its newest part
            os.write(fd, data)
            self._size += len(data)
            self.last_error = ""
            return True
        except OSError as exc:
            self.dropped_bytes += len(data)
            self.last_error = exc.strerror or str(exc)
            self.close()
            return False

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
