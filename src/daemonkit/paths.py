"""Where a daemon's files live.

Every spec gets one *home* directory. User scope: the app's state dir from platformdirs
(``~/.local/state/daemonkit/<name>`` on Linux, ``~/Library/Application Support/daemonkit/<name>`` on
macOS, ``%LOCALAPPDATA%\\daemonkit\\<name>`` on Windows; a host app's daemons live under
``<its state dir>/daemonkit/<name>``). System scope: ``/var/lib/<app>/...``, ``/Library/Application
Support/<app>/...`` or ``%PROGRAMDATA%\\<app>\\...``. ``DAEMONKIT_HOME`` replaces the root for every app
and scope (tests, sandboxes, containers).

Home layout (see docs/concepts.md)::

    spec.toml         what was installed / is being run
    spec.cache.json   spec.toml parsed (the supervisor reads it instead of importing a TOML parser)
    supervisor.lock   OS lock held by the live supervisor (JSON record inside)
    supervisor.pid    JSON: pid, create_time, argv, started_at, version
    state.json        supervisor + per-program state (atomic replace)
    events.jsonl      lifecycle ledger, rotated by size
    control.sock      the supervisor's control channel (POSIX)
    logs/             supervisor.log and <program>.{out,err}.log, rotated by size
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from .errors import UnsafeFileError
from .record import Record, init_field

ENV_HOME = "DAEMONKIT_HOME"
# sockaddr_un.sun_path is 104 bytes on macOS/BSD and 108 on Linux, including the NUL.
_MAX_SOCKET_PATH = 100


def root_dir(app: str = "daemonkit", scope: str = "user") -> Path:
    """The directory holding the homes of all of ``app``'s daemons."""
    override = os.environ.get(ENV_HOME)
    if override:
        return Path(override).expanduser()
    if scope == "system":
        if sys.platform == "win32":
            return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / app
        if sys.platform == "darwin":
            return Path("/Library/Application Support") / app
        return Path("/var/lib") / app
    import platformdirs

    base = Path(platformdirs.user_state_dir(app, appauthor=False))
    return base if app == "daemonkit" else base / "daemonkit"


class Home(Record):
    """The files of one daemon. Pure path arithmetic; ``ensure()`` creates and checks the directory.

    Immutable, equal and hashable by ``path`` (a ``Record``, not a frozen dataclass: the supervisor
    imports this module, and ``dataclasses`` would cost it ~1.2 MiB: see record.py)."""

    __slots__ = _FIELDS = ("path",)
    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        init_field(self, "path", Path(path))

    @classmethod
    def for_spec_name(cls, name: str, app: str = "daemonkit", scope: str = "user") -> "Home":
        return cls(root_dir(app, scope) / name)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def spec_file(self) -> Path:
        return self.path / "spec.toml"

    @property
    def spec_cache(self) -> Path:
        """``spec.toml`` parsed, as JSON, with the text it came from (see ``spec.load_spec``)."""
        return self.path / "spec.cache.json"

    @property
    def lock_file(self) -> Path:
        return self.path / "supervisor.lock"

    @property
    def pid_file(self) -> Path:
        return self.path / "supervisor.pid"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def supervisor_log(self) -> Path:
        return self.logs_dir / "supervisor.log"

    def program_log(self, program: str, stream: str) -> Path:
        return self.logs_dir / f"{program}.{stream}.log"

    def program_log_name(self, program: str, stream: str) -> str:
        """``program_log`` as a string, for the supervisor, which keeps two per program for its whole
        life: no ``Path`` objects (and no growth of the interned-strings table pathlib adds to)."""
        return os.path.join(os.fspath(self.path), "logs", f"{program}.{stream}.log")

    @property
    def control_socket(self) -> Path:
        """The control socket path, moved to a short private temp dir when the home path is too long."""
        return self._socket_path("control.sock")

    def notify_socket(self, program: str) -> Path:
        return self._socket_path(f"notify-{program}.sock")

    def _socket_path(self, filename: str) -> Path:
        candidate = self.path / filename
        if len(os.fsencode(str(candidate))) <= _MAX_SOCKET_PATH:
            return candidate
        # Imported here: hashlib maps OpenSSL (~1.3 MiB), which a supervisor with a short home never needs.
        import hashlib
        import tempfile

        digest = hashlib.sha256(os.fsencode(str(self.path))).hexdigest()[:16]
        uid = os.getuid() if hasattr(os, "getuid") else 0
        return Path(tempfile.gettempdir()) / f"daemonkit-{uid}-{digest}" / filename

    def ensure(self) -> "Home":
        """Create the home (0700) and its logs dir; refuse a home that others could tamper with."""
        for directory in (self.path, self.logs_dir):
            try:
                make_dirs(directory, 0o700)
            except OSError as exc:
                raise UnsafeFileError(
                    f"cannot create daemon home {directory}", exc.strerror or str(exc),
                    f"make the parent writable, or set {ENV_HOME} to a writable directory",
                ) from None
            check_private_dir(directory)
        sock_dir = self.control_socket.parent
        if sock_dir != self.path:
            sock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            check_private_dir(sock_dir)
        return self

    def exists(self) -> bool:
        return self.spec_file.exists()


def make_dirs(directory: Path, mode: int) -> None:
    """``mkdir -p`` that gives every directory it creates ``mode`` whatever the umask (``Path.mkdir``
    applies ``mode`` to the last one only, and a umask of 000 would leave the others world-writable).
    Directories that already exist are left as they are."""
    missing = []
    for path in [Path(directory), *Path(directory).parents]:
        if path.exists():
            break
        missing.append(path)
    for path in reversed(missing):
        try:
            path.mkdir(mode=mode)
        except FileExistsError:
            continue  # created concurrently (another CLI): its mode is checked by the caller
        os.chmod(path, mode)


def check_private_dir(directory: Path) -> None:
    """Raise ``UnsafeFileError`` if ``directory`` is a symlink, not ours, or group/world writable.

    A writable home would let another local user swap the spec or the pid record and make the
    supervisor run or kill something of theirs. Group/other permission bits are tightened where we
    own the directory; a directory owned by someone else is refused.
    """
    if sys.platform == "win32":
        return  # NTFS ACLs of %LOCALAPPDATA% are per-user already; POSIX modes mean little there.
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise UnsafeFileError(f"cannot inspect {directory}", exc.strerror or str(exc)) from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFileError(f"refusing daemon home {directory}", "it is a symbolic link",
                              "replace the link with a real directory")
    if st.st_uid != os.geteuid():
        raise UnsafeFileError(f"refusing daemon home {directory}", f"it is owned by uid {st.st_uid}, not by you ({os.geteuid()})",
                              f"remove it, or set {ENV_HOME} to a directory of your own")
    if st.st_mode & 0o077:
        try:
            os.chmod(directory, 0o700)
        except OSError as exc:
            raise UnsafeFileError(f"daemon home {directory} is accessible by other users",
                                  exc.strerror or str(exc), f"chmod 700 {directory}") from None


def check_private_file(path: Path) -> None:
    """Raise ``UnsafeFileError`` unless ``path`` is a regular file of ours that no one else may write.

    Used for the home's spec, which decides what the supervisor executes: a symlink (its target may be
    anyone's), a file of another user, or a group/world-writable one could make us run someone else's
    command. A missing file is not checked here (callers report that themselves).
    """
    if sys.platform == "win32":
        return
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UnsafeFileError(f"cannot inspect {path}", exc.strerror or str(exc)) from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFileError(f"refusing {path}", "it is a symbolic link (whoever can edit its target could "
                              "choose what runs)", f"replace the link with a copy: cp --remove-destination "
                              f"\"$(readlink -f {path})\" {path}")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(f"refusing {path}", "it is not a regular file", "remove it, then add the daemon again")
    if st.st_uid != os.geteuid():
        raise UnsafeFileError(f"refusing {path}", f"it is owned by uid {st.st_uid}, not by you ({os.geteuid()})",
                              f"check who changed it, then: chown {os.geteuid()} {path}")
    if st.st_mode & 0o022:
        raise UnsafeFileError(f"refusing {path}", "it is writable by other users, who could choose what runs",
                              f"check its content, then: chmod 600 {path}")
