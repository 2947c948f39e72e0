"""File chores shared by the file-based backends (systemd, launchd): read, write, remove, tidy up.

Every failure becomes a ``DaemonkitError`` naming the path, the OS reason and what to do, because
"Permission denied: '/etc/systemd/system/x.service'" alone does not tell a user whether to use sudo,
``--fallback user`` or a different directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import DaemonkitError
from ..paths import make_dirs
from ..store.atomic import write_bytes_atomic
from .base import Artifact, BackendStatus

# The first line of every file daemonkit writes into a service manager's directory. It is how
# ``install`` tells its own files from a hand-written or another tool's file of the same name.
MARKER = "Managed by daemonkit"


def read_file(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        raise DaemonkitError(f"cannot read {path}", "it is a directory",
                             f"remove or rename {path}") from None
    except OSError as exc:
        raise DaemonkitError(f"cannot read {path}", exc.strerror or str(exc),
                             "check the permissions of the file and its directory") from None


def write_artifact(artifact: Artifact, *, scope_hint: str) -> None:
    """Create the parent directories and replace the file atomically (a killed install leaves either the
    old file or the new one, plus at most a hidden ``.NAME.*.tmp`` that ``remove_stale_temps`` clears)."""
    parent = artifact.path.parent
    try:
        # Created 0755 whatever the umask: a world-writable unit directory lets anyone add services.
        make_dirs(parent, 0o755)
        write_bytes_atomic(artifact.path, artifact.content, mode=artifact.mode)
    except OSError as exc:
        raise DaemonkitError(f"cannot write {artifact.path}", exc.strerror or str(exc), scope_hint) from None


def remove_file(path: Path) -> bool:
    """Remove ``path`` (a file or a symlink); True if something was removed."""
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise DaemonkitError(f"cannot remove {path}", exc.strerror or str(exc),
                             "check the permissions of its directory, or remove it by hand") from None


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove temp files an interrupted atomic write of ``path`` left behind."""
    removed: list[Path] = []
    try:
        candidates = list(path.parent.glob(f".{path.name}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        if remove_file(tmp):
            removed.append(tmp)
    return removed


def prune_empty_dirs(start: Path, stop: Path) -> list[Path]:
    """Remove ``start`` and its parents while they are empty, never ``stop`` or anything above it.

    Enabling a unit creates ``default.target.wants/`` and installing creates ``~/.config/systemd/user``;
    an empty one means nothing to the manager, so uninstall leaves the tree as it found it.
    """
    removed: list[Path] = []
    current = start
    try:
        current.relative_to(stop)
    except ValueError:
        return removed
    while current != stop and current != current.parent:
        try:
            current.rmdir()
        except OSError:  # not empty, not ours, or already gone
            break
        removed.append(current)
        current = current.parent
    return removed


def is_ours(content: bytes) -> bool:
    """Whether the file carries daemonkit's marker in its first lines (comment syntax differs by format)."""
    head = content[:512].decode("utf-8", errors="replace")
    return MARKER in head


def read_installed(status: BackendStatus, path: Path, kind: str,
                   ours: Callable[[bytes], bool] = is_ours) -> bytes | None:
    """The first steps of a file-based backend's ``status``: read the installed ``kind`` file ("unit
    file", "plist") and note what was found on ``status``. Its bytes, with ``status.installed`` set, when
    it is there and daemonkit's; otherwise None and ``status.detail`` says why (plus drift when another
    file is in the way)."""
    try:
        existing = read_file(path)
    except DaemonkitError as exc:
        status.detail = exc.message
        return None
    status.evidence.append(f"{kind}: {path}" + (" (absent)" if existing is None else ""))
    if existing is None:
        status.detail = f"no {kind} at {path}"
        return None
    if not ours(existing):
        status.detail = f"{path} exists but was not written by daemonkit"
        status.drift.append(status.detail)
        return None
    status.installed = True
    return existing

