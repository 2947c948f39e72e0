"""An audit-hook guard: refuse writes into protected places and spawns of real service-manager tools.

``sys.addaudithook`` sees every ``open``/``os.*``/``shutil.*``/``subprocess`` call of this process, whoever
makes it (the code under test, a library, a thread), which a monkeypatch of one function never does. A
hook cannot be removed, so one hook is installed once and consults a stack of ``Policy`` objects: the
innermost active policy decides; with none active the hook returns at once.

A refused operation raises ``SandboxViolation`` at the call site *and* is recorded on the policy, so a
test that swallows the exception (``except Exception: pass``) still fails when its sandbox closes.

Limits (documented in docs/testing.md): this process only (subprocesses get the PATH shims of
``daemonkit.sandbox``), paths are checked after resolving symlinks of the existing part, and operations
relative to a directory file descriptor are judged by their top-level call (e.g. ``shutil.rmtree``).
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

# Tools that change what starts at login/boot or talk to the real service manager.
BLOCKED_TOOLS = frozenset({"systemctl", "launchctl", "schtasks", "sc", "reg", "loginctl"})
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "cmd", "powershell", "pwsh"})

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# event -> indexes of the path arguments that are written (the second of a rename is the new name).
_PATH_EVENTS: dict[str, tuple[int, ...]] = {
    "os.mkdir": (0,), "os.rename": (0, 1), "os.replace": (0, 1), "os.remove": (0,), "os.rmdir": (0,),
    "os.symlink": (1,), "os.link": (1,), "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,),
    "os.utime": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copytree": (1,),
    "shutil.move": (0, 1), "os.mkfifo": (0,), "os.mknod": (0,),
}
# Events whose dir_fd argument (when not -1/None) makes the path relative to an open directory.
_DIR_FD_ARG = {"os.mkdir": 2, "os.remove": 1, "os.rmdir": 1, "os.chmod": 2, "os.chown": 3, "os.symlink": 2,
               "os.utime": 3, "os.rename": 2, "os.replace": 2, "os.mkfifo": 2, "os.mknod": 3}
_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.exec", "os.spawn", "os.system",
                           "_winapi.CreateProcess", "os.startfile"})
_WATCHED = frozenset({"open", *_PATH_EVENTS, *_SPAWN_EVENTS})


class SandboxViolation(Exception):
    """Raised where code tried to touch the real machine from inside a daemonkit sandbox.

    Deliberately not an ``OSError``: command runners catch ``OSError`` and would turn a refused
    ``systemctl`` into an ordinary failed command instead of a failed test."""


@dataclass
class Policy:
    """What one sandbox refuses. Paths are compared after ``realpath``; the longest matching root wins
    (so ``~/.config/systemd`` stays forbidden inside an allowed checkout, and a tmp dir inside the real
    home stays allowed); on a tie, forbidden wins."""

    forbidden: list[Path]
    allowed: list[Path] = field(default_factory=list)
    blocked_tools: frozenset[str] = BLOCKED_TOOLS
    label: str = "daemonkit sandbox"
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._forbidden = [_norm(p) for p in self.forbidden]
        self._allowed = [_norm(p) for p in self.allowed]

    def why_write_refused(self, path: str) -> str | None:
        target = _norm(path)
        best, verdict = -1, None
        for root in self._forbidden:
            if _within(target, root) and len(root) > best:
                best, verdict = len(root), root
        for root in self._allowed:
            if _within(target, root) and len(root) > best:
                best, verdict = len(root), None
        if verdict is None:
            return None
        return f"write to {path} (inside the protected {verdict})"

    def why_spawn_refused(self, argv: Sequence[str]) -> str | None:
        tool = _blocked_tool(argv, self.blocked_tools)
        if tool is None:
            return None
        return f"ran the real {tool!r} ({' '.join(str(a) for a in argv)[:200]})"


def _norm(path: Any) -> str:
    text = os.fsdecode(os.fspath(path))
    try:
        text = os.path.realpath(text)
    except (OSError, ValueError):
        text = os.path.abspath(text)
    return os.path.normcase(text)


def _within(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _tool_name(word: str) -> str:
    name = os.path.basename(word.replace("\\", "/")).lower()
    return name[:-4] if name.endswith((".exe", ".com", ".cmd", ".bat")) else name


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command, posix=sys.platform != "win32")
    except ValueError:
        return command.split()


def _blocked_tool(argv: Sequence[Any], blocked: frozenset[str]) -> str | None:
    """The blocked tool ``argv`` runs, looking through one level of ``sh -c`` / ``cmd /c``."""
    words = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in argv if a is not None]
    if not words:
        return None
    if len(words) == 1 and " " in words[0]:
        words = _words(words[0])  # a shell=True string, or os.system
    if not words:
        return None
    first = _tool_name(words[0])
    if first in blocked:
        return first
    if first in _SHELLS:
        for word in words[1:]:
            for inner in _words(word):
                if _tool_name(inner) in blocked:
                    return _tool_name(inner)
    return None


_STACK: list[Policy] = []
_LOCK = threading.Lock()
_LOCAL = threading.local()
_INSTALLED = False


def push(policy: Policy) -> None:
    """Make ``policy`` the active one (installing the audit hook on first use)."""
    global _INSTALLED
    with _LOCK:
        if not _INSTALLED:
            sys.addaudithook(_hook)
            _INSTALLED = True
        _STACK.append(policy)


def pop(policy: Policy) -> None:
    with _LOCK:
        if policy in _STACK:
            _STACK.remove(policy)


def active() -> Policy | None:
    return _STACK[-1] if _STACK else None


@contextmanager
def expect_refusal(policy: Policy | None = None) -> Iterator[list[str]]:
    """For tests of the guard itself: the block must be refused at least once. Refusals inside it are
    swallowed and not held against the test; they are yielded as a list to inspect afterwards."""
    policy = policy or active()
    if policy is None:
        raise RuntimeError("expect_refusal() needs an active daemonkit sandbox or session guard")
    caught: list[str] = []
    with collect_refusals(policy, caught):
        yield caught
    if not caught:
        raise AssertionError("expected the daemonkit sandbox to refuse something in this block; nothing was refused")


@contextmanager
def collect_refusals(policy: Policy, caught: list[str]) -> Iterator[None]:
    """Swallow a refusal raised in the block and move the policy's violations recorded meanwhile into
    ``caught``, so they are not held against the test (the shared part of both ``expect_refusal``s)."""
    before = len(policy.violations)
    try:
        yield
    except SandboxViolation:
        pass
    finally:
        caught.extend(policy.violations[before:])
        del policy.violations[before:]


class paused:
    """Context manager: let this thread act for real (the sandbox's own set-up and tear-down)."""

    def __enter__(self) -> None:
        self._was = getattr(_LOCAL, "busy", False)
        _LOCAL.busy = True

    def __exit__(self, *exc: object) -> None:
        _LOCAL.busy = self._was


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _WATCHED or not _STACK or getattr(_LOCAL, "busy", False):
        return
    policy = _STACK[-1]
    _LOCAL.busy = True  # the checks below call os functions that are audited themselves
    try:
        why = _judge(policy, event, args)
    finally:
        _LOCAL.busy = False
    if why is not None:
        message = f"{policy.label}: refused: {why}"
        policy.violations.append(message)
        raise SandboxViolation(message + " (mark real-machine tests with @pytest.mark.daemonkit_real)")


def _judge(policy: Policy, event: str, args: tuple[Any, ...]) -> str | None:
    if event == "open":
        path, mode, flags = (list(args) + [None, None, 0])[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
        if not writes or isinstance(path, int) or path is None:
            return None
        return policy.why_write_refused(path)
    if event in _PATH_EVENTS:
        dir_fd_at = _DIR_FD_ARG.get(event)
        if dir_fd_at is not None and len(args) > dir_fd_at and args[dir_fd_at] not in (None, -1):
            return None  # relative to an open directory: judged by the call that opened it
        for index in _PATH_EVENTS[event]:
            if index < len(args) and isinstance(args[index], (str, bytes, os.PathLike)):
                why = policy.why_write_refused(args[index])
                if why is not None:
                    return why
        return None
    return _judge_spawn(policy, event, args)


def _judge_spawn(policy: Policy, event: str, args: tuple[Any, ...]) -> str | None:
    argv: Iterable[Any]
    if event == "subprocess.Popen":
        executable, given = args[0], args[1]
        if isinstance(given, (str, bytes, os.PathLike)):
            given = [given]
        argv = list(given or [])
        if executable is not None:  # Popen(executable=...) runs that file whatever argv[0] says
            why = policy.why_spawn_refused([executable, *argv[1:]])
            if why is not None:
                return why
    elif event in ("os.posix_spawn", "os.exec"):
        argv = [args[0], *list(args[1] or [])[1:]]
    elif event == "os.spawn":
        argv = [args[1], *list(args[2] or [])[1:]]
    elif event == "os.system":
        argv = [os.fsdecode(args[0])]
    elif event == "_winapi.CreateProcess":
        argv = [args[0]] if args[0] else [str(args[1] or "")]
    else:  # os.startfile
        argv = [args[0]]
    return policy.why_spawn_refused(list(argv))
