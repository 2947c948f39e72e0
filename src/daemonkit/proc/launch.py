"""Launch a supervised program fast: ``os.posix_spawn`` (glibc runs it with ``CLONE_VFORK``).

Everything a restart needs is computed once per program (``LaunchPlan``): the resolved executable,
argv, the environment, the signal set to reset. A launch is then one ``posix_spawn`` call: a new
session (the program leads its own process group, so the whole group can be signalled), stdin from
/dev/null, stdout/stderr onto the pipes the supervisor reads. No ``preexec_fn``: it forces a full
``fork`` and Python code in the child, which costs milliseconds per spawn.

``posix_spawn`` has no portable "change directory" action, so a program with a ``cwd`` is started with
``subprocess.Popen`` instead (which still uses ``vfork`` on Linux when no ``preexec_fn`` is given).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
from typing import Mapping, NamedTuple, Sequence

# Python ignores SIGPIPE (and SIGXFSZ) for itself; an exec'd program must get the default back, as
# subprocess's restore_signals does.
_RESET_SIGNALS = tuple(s for s in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None),
                                   getattr(signal, "SIGXFZ", None)) if s is not None)
HAVE_POSIX_SPAWN = hasattr(os, "posix_spawn") and hasattr(os, "POSIX_SPAWN_DUP2")


class LaunchPlan(NamedTuple):  # not a dataclass: that import costs the supervisor ~1.2 MiB (spec.py)
    argv: tuple[str, ...]
    executable: str | None  # None: not found (reported at launch time, every time, with the reason)
    # The environment is the supervisor's (one dict shared by every program) plus the program's own
    # few variables, merged at launch: 1000 private copies of a 60-variable environment cost ~5 MiB.
    base_env: Mapping[str, str]
    extra_env: Mapping[str, str]
    cwd: str | None = None
    method: str = "posix_spawn"

    def __repr__(self) -> str:  # without the environments (the supervisor's whole environment)
        return f"LaunchPlan(argv={self.argv!r}, executable={self.executable!r}, cwd={self.cwd!r}, method={self.method!r})"

    @property
    def env(self) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(self.extra_env)
        return env

    @property
    def env_bytes(self) -> dict[bytes, bytes]:
        """``env`` already encoded, as ``posix_spawn`` wants it: the shared part is encoded once for
        every program, which saves ~35 µs per spawn (a third of a ``posix_spawn``) over str values."""
        env = dict(_encoded_base(self.base_env))
        for key, value in self.extra_env.items():  # a program's own few variables
            env[os.fsencode(key)] = os.fsencode(value)
        return env


def plan(argv: Sequence[str], base_env: Mapping[str, str], cwd: str | None = None,
         extra_env: Mapping[str, str] | None = None) -> LaunchPlan:
    """Resolve the executable once (like ``execvp`` would, against the program's own PATH)."""
    extra_env = dict(extra_env or {})
    env_path = extra_env.get("PATH", base_env.get("PATH", os.defpath))
    argv0 = argv[0]
    if os.sep in argv0 or (os.altsep and os.altsep in argv0):
        path = argv0 if os.path.isabs(argv0) or cwd is None else os.path.join(cwd, argv0)
        executable = path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    else:
        executable = _which(argv0, env_path)
    method = "posix_spawn" if HAVE_POSIX_SPAWN and cwd is None else "popen"
    return LaunchPlan(tuple(argv), executable, base_env, extra_env, cwd, method)


@functools.lru_cache(maxsize=256)
def _which(name: str, path: str) -> str | None:
    """Memoised: 1000 programs running the same command search PATH once (a cold-start cost).
    ``forget_lookups`` clears it when a planned executable turned out to be gone."""
    return shutil.which(name, path=path)


_ENCODED_BASES: dict[int, tuple[Mapping[str, str], dict[bytes, bytes]]] = {}


def _encoded_base(env: Mapping[str, str]) -> dict[bytes, bytes]:
    """``env`` encoded like ``os.posix_spawn`` does it (``os.fsencode``), once per mapping object: the
    supervisor shares one base environment among all its programs."""
    hit = _ENCODED_BASES.get(id(env))
    if hit is None or hit[0] is not env:
        if len(_ENCODED_BASES) >= 8:  # one per supervisor; only a test process holds several
            _ENCODED_BASES.clear()
        hit = (env, {os.fsencode(k): os.fsencode(v) for k, v in env.items()})
        _ENCODED_BASES[id(env)] = hit
    return hit[1]


def forget_lookups() -> None:
    _which.cache_clear()


def launch(plan: LaunchPlan, stdin: int, stdout: int, stderr: int) -> int:
    """Start the program in its own session; returns its pid. Raises ``OSError`` (e.g. the executable
    vanished since it was planned: ENOENT; not executable: EACCES)."""
    if plan.executable is None:
        raise FileNotFoundError(2, "executable not found", plan.argv[0])
    if plan.method == "posix_spawn":
        fds = [_above_stdio(fd) for fd in (stdin, stdout, stderr)]
        try:
            return os.posix_spawn(
                plan.executable, plan.argv, plan.env_bytes,
                file_actions=[(os.POSIX_SPAWN_DUP2, fds[0], 0), (os.POSIX_SPAWN_DUP2, fds[1], 1),
                              (os.POSIX_SPAWN_DUP2, fds[2], 2)],
                setsid=True, setsigdef=_RESET_SIGNALS, setsigmask=(),
            )
        finally:
            for fd, orig in zip(fds, (stdin, stdout, stderr)):
                if fd != orig:
                    os.close(fd)
    import subprocess

    popen = subprocess.Popen(plan.argv, executable=plan.executable, stdin=stdin, stdout=stdout, stderr=stderr,
                             cwd=plan.cwd, env=plan.env, start_new_session=True, close_fds=True)
    # The supervisor's child watcher reaps it; tell Popen so its destructor does not warn.
    popen.returncode = 0
    return popen.pid


def _above_stdio(fd: int) -> int:
    """``dup2(fd, fd)`` keeps close-on-exec set, so a descriptor that already is 0, 1 or 2 (a supervisor
    started with closed stdio) would reach the program closed: move it up first."""
    if fd > 2:
        return fd
    import fcntl  # here, not at the top: this module is imported on Windows too

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
