"""``daemonkit.Daemon``: the face a host app uses to ship a background process.

A host app declares its daemon in code and gets the whole lifecycle as methods that return result
objects (nothing here prints), plus its CLI commands mounted under its own command line::

    from daemonkit import Daemon, Program, Readiness

    gateway = Daemon("chatgateway", Program("gateway", [sys.executable, "-m", "chatgateway.server"],
                                             ready=Readiness("http", "http://127.0.0.1:8765/health")))
    gateway.start()            # StartResult, once ready
    gateway.status().healthy   # DaemonStatus
    gateway.add_commands(subparsers, prog="chatgateway gateway")   # argparse
    cli.add_command(gateway.click_group("gateway"))                 # click

The daemon's home lives under the app's own name (platformdirs: ``~/.local/state/chatgateway/daemonkit/
<name>`` on Linux, ``%LOCALAPPDATA%\\chatgateway\\daemonkit\\<name>`` on Windows), or below
``DAEMONKIT_HOME`` when that is set (tests, containers).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:
    import argparse

    from .api import DaemonStatus, InstallResult, StartResult, StopResult
    from .cli import Target
    from .paths import Home
    from .spec import Program, Spec
    from .update import RespawnResult


@dataclass
class UninstallResult:
    """What ``uninstall`` removed, one line each."""

    name: str
    lines: list[str] = field(default_factory=list)


@dataclass
class LogLine:
    """One line of a program's output."""

    program: str
    stream: str  # "out" or "err"
    text: str


@dataclass
class LogsResult:
    """The last lines of each program's output (in program order, out before err) and of the ledger."""

    name: str
    lines: list[LogLine] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


class Daemon:
    """One daemon of a host app. Cheap to create (nothing touches the disk until a method is called)."""

    def __init__(self, app: str, *programs: "Program", name: str | None = None, scope: str = "user",
                 description: str = "", spec: "Spec | None" = None, prog: str | None = None) -> None:
        """``app``: the host app's name (its platformdirs name; the home lives under it). ``programs``:
        what to run. ``name``: the daemon's name (default: ``app``). ``spec``: a ready ``Spec`` instead of
        ``programs`` (its ``app`` is replaced by ``app``). ``prog``: how the app's CLI spells the mounted
        commands, for the hints in messages (e.g. ``"chatgateway gateway"``)."""
        from .spec import Spec

        if spec is None:
            if not programs:
                raise TypeError("Daemon() needs at least one Program (or spec=...)")
            spec = Spec(name or app, tuple(programs), scope=scope, description=description, app=app)
        elif programs:
            raise TypeError("pass either programs or spec=..., not both")
        elif spec.app != app:
            spec = spec.replace(app=app)
        self.spec = spec
        self.prog = prog or f"{app} {spec.name}"

    @classmethod
    def from_spec(cls, spec: "Spec", *, prog: str | None = None) -> "Daemon":
        """A ``Daemon`` for a ready ``Spec`` (e.g. from ``daemonkit.load_spec``); the home follows ``spec.app``."""
        return cls(spec.app, spec=spec, prog=prog)

    def __repr__(self) -> str:
        return f"Daemon({self.spec.app!r}, name={self.spec.name!r}, programs={[p.name for p in self.spec.programs]})"

    @property
    def name(self) -> str:
        """The daemon's name (``spec.name``)."""
        return self.spec.name

    @property
    def home(self) -> "Home":
        """Where its files live (``Home``: spec, lock, pid and state records, events, logs)."""
        from .api import home_for_spec

        return home_for_spec(self.spec)

    # ------------------------------------------------------------------------------------ lifecycle

    def install(self, *, backend: str | None = None, fallback: str | None = None,
                force: bool = False) -> "InstallResult":
        """Register with the OS service manager (start at login/boot, restart if killed) and start."""
        from . import api

        with self._hints():
            return api.install(self.spec, backend=backend, fallback=fallback, force=force)

    def uninstall(self, *, force: bool = False) -> UninstallResult:
        """Stop and remove the OS registration; the home (spec, logs) stays."""
        from . import api

        with self._hints():
            return UninstallResult(self.name, api.uninstall(self.spec, self.home, force=force))

    def start(self, *, program: str | None = None, timeout: float | None = None) -> "StartResult":
        """Start (through the service manager when installed) and return once ready."""
        from . import api

        with self._hints():
            return api.start(self.spec, self.home, program=program, timeout=timeout)

    def stop(self, *, program: str | None = None, timeout: float | None = None) -> "StopResult":
        """Stop gracefully (through the service manager when installed); idempotent."""
        from . import api

        with self._hints():
            return api.stop(self.spec, self.home, program=program, timeout=timeout)

    def restart(self, *, program: str | None = None, timeout: float | None = None) -> "StartResult":
        """Stop then start (or restart one program); returns once ready."""
        from . import api

        with self._hints():
            return api.restart(self.spec, self.home, program=program, timeout=timeout)

    def status(self) -> "DaemonStatus":
        """State of the supervisor and each program (``.running``, ``.healthy``, ``.to_json()``)."""
        from . import api

        return api.status_of(self.spec, self.home)

    def is_running(self) -> bool:
        """Whether a supervisor holds the lock (cheap: no control request)."""
        from .store.lock import probe_lock

        return probe_lock(self.home.lock_file).held

    def logs(self, lines: int = 20, *, program: str | None = None, stream: str = "both",
             events: bool = True) -> LogsResult:
        """The last ``lines`` lines of each program's stdout/stderr (and of the lifecycle ledger)."""
        from .api import tail_file

        home = self.home
        names = [program] if program else [p.name for p in self.spec.programs]
        if program:
            self.spec.program(program)  # a clear error for an unknown name
        streams = ("out", "err") if stream == "both" else (stream,)
        result = LogsResult(self.name)
        for name in names:
            for which in streams:
                text = tail_file(home.program_log(name, which), lines)
                result.lines += [LogLine(name, which, line) for line in text.splitlines()]
        if events:
            for line in tail_file(home.events_file, lines).splitlines():
                try:
                    result.events.append(json.loads(line))
                except ValueError:
                    continue  # a line cut by rotation
        return result

    def respawn_after_update(self, *, after_exit: int | None = None, detach: bool | None = None,
                             timeout: float | None = None) -> "RespawnResult":
        """After the app replaced its files: restart the running daemon onto the new code (see
        ``daemonkit.update``)."""
        from .update import respawn_after_update

        with self._hints():
            return respawn_after_update(self.spec, self.home, after_exit=after_exit, detach=detach, timeout=timeout)

    @contextmanager
    def _hints(self) -> Iterator[None]:
        """Errors name this app's commands (``myapp gateway logs``), not the ``daemonkit`` CLI."""
        from .cli import Target
        from .errors import DaemonkitError

        try:
            yield
        except DaemonkitError as exc:
            target = Target(self.spec, self.prog)
            exc.why, exc.hint = target.respell(exc.why), target.respell(exc.hint)
            exc.args = (exc.message,)
            raise

    # ------------------------------------------------------------------------------------ CLI

    def add_commands(self, subparsers: Any, *, prog: str | None = None) -> "Target":
        """Mount daemonkit's commands (install, start, stop, restart, status, logs, uninstall, run) on an
        argparse ``subparsers``; dispatch with ``daemonkit.cli.dispatch(args)``."""
        from .cli import add_commands

        return add_commands(subparsers, spec=self.spec, prog=prog or self.prog)

    def click_group(self, name: str | None = None, *, help: str | None = None) -> Any:
        """The same commands as a ``click.Group`` (needs click)."""
        from .integrations.click import group

        return group(self.spec, name=name or self.name, help=help)

    def main(self, argv: Sequence[str], *, prog: str | None = None) -> int:
        """Run one command line (``["status", "--json"]``) for this daemon; returns the exit code."""
        from .cli import run_command

        return run_command(argv, self.spec, prog=prog or self.prog)


def parse_args_and_dispatch(parser: "argparse.ArgumentParser", argv: Sequence[str] | None = None) -> int:
    """Convenience for a host app whose parser has mounted commands: parse and run; 0 when the parsed
    command is not one of daemonkit's (the app handles it)."""
    from .cli import dispatch

    args = parser.parse_args(argv)
    if getattr(args, "_daemonkit_func", None) is None:
        return 0
    return dispatch(args)


__all__ = ["Daemon", "LogLine", "LogsResult", "UninstallResult"]
