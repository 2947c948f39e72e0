"""The one protocol every OS backend follows, and the command runner all side effects go through.

A backend registers the *supervisor* (``python -m daemonkit supervise --home HOME``) with an OS service
manager; the supervisor then runs the spec's programs the same way on every OS. ``render`` is pure: it
returns the files the backend would write (unit, plist, task XML, launcher) so tests check them as data.
Everything that touches the machine goes through ``ctx.runner`` (commands, with timeouts) or
``ctx``'s directories, which tests point into tmp.
"""

from __future__ import annotations

import locale
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Sequence, runtime_checkable

from ..compat import windows_hide_flags

if TYPE_CHECKING:
    from ..paths import Home
    from ..spec import Spec

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def summary(self, limit: int = 300) -> str:
        """A one-line excerpt for error messages and probe evidence."""
        if self.timed_out:
            return f"{' '.join(self.argv[:3])}: timed out"
        text = (self.stderr.strip() or self.stdout.strip()).replace("\n", " | ")
        return f"exit {self.returncode}: {text[:limit]}" if text else f"exit {self.returncode}"


class Runner(Protocol):
    def run(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, input: str | None = None,
            env: Mapping[str, str] | None = None) -> CommandResult: ...


class SubprocessRunner:
    """Runs commands for real: no shell, a timeout, no console flash on Windows, and output decoded with
    the console's code page there (``schtasks`` and ``sc`` print localized OEM text)."""

    def run(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, input: str | None = None,
            env: Mapping[str, str] | None = None) -> CommandResult:
        argv = tuple(str(a) for a in argv)
        full_env = None if env is None else {**os.environ, **env}
        try:
            proc = subprocess.run(
                argv, input=input.encode() if input is not None else None, capture_output=True,
                timeout=timeout, env=full_env, creationflags=windows_hide_flags(),
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            return CommandResult(argv, -1, _decode(exc.stdout), _decode(exc.stderr), timed_out=True)
        except FileNotFoundError:
            return CommandResult(argv, 127, "", f"{argv[0]}: command not found")
        except OSError as exc:
            return CommandResult(argv, 126, "", f"{argv[0]}: {exc.strerror or exc}")
        return CommandResult(argv, proc.returncode, _decode(proc.stdout), _decode(proc.stderr))


def _decode(data: bytes | None) -> str:
    if not data:
        return ""
    if sys.platform == "win32":
        try:
            import ctypes

            codepage = f"cp{ctypes.windll.kernel32.GetOEMCP()}"  # type: ignore[attr-defined]
            return data.decode(codepage, errors="replace")
        except (AttributeError, LookupError, OSError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(locale.getpreferredencoding(False), errors="replace")


Responder = Callable[[tuple[str, ...]], "CommandResult | int | tuple[int, str] | None"]


class RecordingRunner:
    """A fake runner for tests: records every command and answers from ``responses``.

    ``responses`` maps an argv prefix (tuple) to a ``CommandResult``, a return code, or
    ``(returncode, stdout)``; the longest matching prefix wins; unmatched commands succeed with no output.
    """

    def __init__(self, responses: Mapping[tuple[str, ...], object] | None = None,
                 responder: Responder | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.inputs: list[str | None] = []
        self.responses = dict(responses or {})
        self.responder = responder

    def run(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, input: str | None = None,
            env: Mapping[str, str] | None = None) -> CommandResult:
        call = tuple(str(a) for a in argv)
        self.calls.append(call)
        self.inputs.append(input)
        answer: object = None
        if self.responder is not None:
            answer = self.responder(call)
        if answer is None:
            best = -1
            for prefix, value in self.responses.items():
                if call[: len(prefix)] == prefix and len(prefix) > best:
                    best, answer = len(prefix), value
        if isinstance(answer, CommandResult):
            return answer
        if isinstance(answer, tuple):
            return CommandResult(call, int(answer[0]), str(answer[1]) if len(answer) > 1 else "",
                                 str(answer[2]) if len(answer) > 2 else "")
        return CommandResult(call, int(answer) if isinstance(answer, int) else 0)


@dataclass(frozen=True)
class Artifact:
    """A file a backend writes: its path, exact bytes and mode."""

    path: Path
    content: bytes
    mode: int = 0o644

    @property
    def text(self) -> str:
        return self.content.decode("utf-16" if self.content[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8")


@dataclass
class BackendStatus:
    """What a backend can tell about its registration, for ``status`` and the deep probes."""

    backend: str
    installed: bool
    active: bool | None = None  # None: the manager could not say
    enabled: bool | None = None  # starts at login / boot
    drift: list[str] = field(default_factory=list)  # how the registration differs from render()
    detail: str = ""
    evidence: list[str] = field(default_factory=list)  # command excerpts, paths read
    notes: list[str] = field(default_factory=list)  # platform notes (linger, WSL, elevation, ...)


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""
    # Set when this backend is the right one for the machine but cannot be reached right now (systemd is
    # PID 1 but this shell has no user bus): the chooser reports it instead of quietly falling back to a
    # backend that would not start the daemon at login.
    blocking: "Exception | None" = None


@dataclass
class BackendContext:
    """Everything a backend may touch. Tests replace the runner and point the directories into tmp."""

    runner: Runner = field(default_factory=SubprocessRunner)
    python: str = field(default_factory=lambda: sys.executable)
    # Per-backend directory overrides (e.g. "systemd_user_dir", "launch_agents_dir", "startup_dir").
    dirs: dict[str, Path] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    force: bool = False  # overwrite a foreign registration of the same name


def supervisor_argv(home: "Home", python: str) -> list[str]:
    """The command every manager runs: the supervisor itself, in the foreground, so that its real exit
    code reaches the manager (a launcher that returns 0 at once would hide crashes)."""
    return [python, "-m", "daemonkit", "supervise", "--home", str(home.path)]


@runtime_checkable
class Backend(Protocol):
    name: str

    def available(self) -> Availability:
        """Whether this backend can work on this machine now, and if not why (one line)."""

    def render(self, spec: "Spec", home: "Home") -> list[Artifact]:
        """The files ``install`` would write. Pure: no I/O."""

    def install(self, spec: "Spec", home: "Home") -> list[str]:
        """Write and register; return human-readable lines of what was done. Idempotent; repairs drift."""

    def uninstall(self, spec: "Spec", home: "Home") -> list[str]:
        """Stop and remove every trace ``install`` left. Idempotent."""

    def start(self, spec: "Spec", home: "Home") -> None:
        """Ask the manager to start the supervisor now."""

    def stop(self, spec: "Spec", home: "Home") -> None:
        """Ask the manager to stop the supervisor (and so the programs) now."""

    def status(self, spec: "Spec", home: "Home") -> BackendStatus:
        """Registration, activity and drift. Never changes anything; bounded in time."""
