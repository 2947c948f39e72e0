"""Atomic, owner-only file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = 0o600, fsync: bool = True) -> None:
    write_chunks_atomic(path, (data,), mode=mode, fsync=fsync)


def write_chunks_atomic(path: Path, chunks: Iterable[bytes], *, mode: int = 0o600, fsync: bool = True) -> None:
    """``write_bytes_atomic`` of the concatenated ``chunks``, which are written as they come: a big
    document need never be in memory whole (the supervisor's state at N programs)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if hasattr(os, "fchmod"):
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text_atomic(path: Path, text: str, *, mode: int = 0o600) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def write_json_atomic(path: Path, data: Any, *, fsync: bool = True) -> None:
    write_bytes_atomic(path, (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8"), fsync=fsync)


class CorruptFile(Exception):
    """A record exists but cannot be parsed; ``reason`` says how (empty, truncated, not JSON, …)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def read_json(path: Path, *, max_bytes: int = 64 * 1024 * 1024) -> Any | None:
    """Parse a JSON record. ``None`` when the file is absent; ``CorruptFile`` when it is unusable."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise CorruptFile(path, "is a directory") from None
    if len(data) > max_bytes:
        raise CorruptFile(path, f"larger than {max_bytes} bytes")
    if not data.strip():
        raise CorruptFile(path, "empty")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise CorruptFile(path, "not UTF-8 (binary garbage)") from None
    except json.JSONDecodeError as exc:
        raise CorruptFile(path, f"not valid JSON (truncated?): {exc.msg} at byte {exc.pos}") from None
