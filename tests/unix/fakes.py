"""Fakes for the backend tests: a tiny model of systemctl/loginctl that answers a RecordingRunner.

The model keeps unit files on the real (tmp) filesystem and mimics what the backend relies on:
``daemon-reload`` loads what is on disk, ``show`` reports NeedDaemonReload when the file changed since,
``enable`` makes the real ``default.target.wants`` link, ``start`` honours a configurable failure.
"""

from __future__ import annotations

import os
from pathlib import Path

from _fake_manager import FakeManager

from daemonkit.backends.base import CommandResult
from daemonkit.spec import Program, Readiness, Spec


class FakeSystemd(FakeManager):
    def __init__(self, unit_dir: Path, *, wants: str = "default.target.wants") -> None:
        self.unit_dir = unit_dir
        self.wants = wants
        self.loaded: dict[str, bytes] = {}  # unit -> content at the last daemon-reload
        self.active: set[str] = set()
        self.failed: set[str] = set()
        self.start_fails: str = ""  # stderr for a failing start
        self.journal = "supervisor: boom\n"  # what journalctl prints
        self.bus_missing = False
        self.linger: str | None = "no"  # None: loginctl cannot answer
        self.linger_allowed = False
        super().__init__()

    def verbs(self) -> list[str]:
        """The systemctl/loginctl verbs in order, without the --user flag and property lists."""
        out = []
        for call in self.calls:
            words = [w for w in call[1:] if w != "--user" and not w.startswith("--property")]
            out.append(" ".join(words[:2]) if words and words[0] != "show" else "show")
        return out

    def _file(self, unit: str) -> bytes | None:
        try:
            return (self.unit_dir / unit).read_bytes()
        except FileNotFoundError:
            return None

    def respond(self, call: tuple[str, ...]) -> CommandResult:
        tool, args = call[0], [a for a in call[1:] if a != "--user"]
        if tool == "loginctl":
            return self._loginctl(call, args)
        if tool == "journalctl":
            return CommandResult(call, 0, self.journal)
        if self.bus_missing:
            return CommandResult(call, 1, "", "Failed to connect to bus: No medium found")
        verb = args[0]
        unit = args[1] if len(args) > 1 else ""
        if verb == "show":
            if unit.startswith("--property"):
                return CommandResult(call, 0, "Version=252\n")
            content = self._file(unit)
            load = "loaded" if unit in self.loaded else "not-found"
            link = self.unit_dir / self.wants / unit
            state = "active" if unit in self.active else ("failed" if unit in self.failed else "inactive")
            props = {
                "LoadState": load, "ActiveState": state, "SubState": "running" if state == "active" else "dead",
                "UnitFileState": ("enabled" if link.is_symlink() else "disabled") if unit in self.loaded else "",
                "MainPID": "1234" if state == "active" else "0", "NRestarts": "0", "Result": "success",
                "ExecMainStatus": "0", "FragmentPath": str(self.unit_dir / unit) if unit in self.loaded else "",
                "DropInPaths": "",
                "NeedDaemonReload": "yes" if unit in self.loaded and content != self.loaded[unit] else "no",
            }
            return CommandResult(call, 0, "".join(f"{k}={v}\n" for k, v in props.items()))
        if verb == "daemon-reload":
            units = self.unit_dir.glob("*.service") if self.unit_dir.is_dir() else []
            self.loaded = {p.name: p.read_bytes() for p in units}
            return CommandResult(call, 0)
        if verb == "enable":
            link = self.unit_dir / self.wants / unit
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                os.symlink(self.unit_dir / unit, link)
            return CommandResult(call, 0, "", f"Created symlink {link} → {self.unit_dir / unit}.")
        if verb == "disable":
            link = self.unit_dir / self.wants / unit
            if link.is_symlink():
                link.unlink()
            return CommandResult(call, 0)
        if verb in ("start", "restart"):
            if unit not in self.loaded:
                return CommandResult(call, 5, "", f"Failed to start {unit}: Unit {unit} not found.")
            if self.start_fails:
                self.failed.add(unit)
                return CommandResult(call, 1, "", self.start_fails)
            self.active.add(unit)
            self.failed.discard(unit)
            return CommandResult(call, 0)
        if verb == "stop":
            self.active.discard(unit)
            return CommandResult(call, 0)
        if verb == "reset-failed":
            self.failed.discard(unit)
            return CommandResult(call, 0)
        return CommandResult(call, 0)

    def _loginctl(self, call: tuple[str, ...], args: list[str]) -> CommandResult:
        if "show-user" in args:
            if self.linger is None:
                return CommandResult(call, 1, "", "Failed to connect to bus: No such file or directory")
            return CommandResult(call, 0, self.linger + "\n")
        if "enable-linger" in args:
            if self.linger_allowed:
                self.linger = "yes"
                return CommandResult(call, 0)
            return CommandResult(call, 1, "", "Could not enable linger: Access denied")
        return CommandResult(call, 0)


def make_spec(name: str = "demo", *, scope: str = "user", restart: str = "on-failure", grace: float = 10.0,
              ready_timeout: float | None = None, **kwargs: object) -> Spec:
    ready = Readiness("tcp", "127.0.0.1:8080", ready_timeout) if ready_timeout is not None else None
    programs = [Program("web", ("python3", "-m", "http.server"), restart=restart, stop_grace=grace, ready=ready),
                Program("worker", ("python3", "-c", "pass"), stop_grace=2.0)]
    return Spec(name=name, programs=tuple(programs), scope=scope, **kwargs)  # type: ignore[arg-type]




PRINT_SAMPLE = """{target} = {{
\tactive count = 1
\tpath = {path}
\ttype = LaunchAgent
\tstate = running

\tprogram = /usr/bin/python3
\targuments = {{
\t\t/usr/bin/python3
\t}}

\truns = 3
\tpid = 4242
\tlast exit code = (never exited)
\tendpoints = {{
\t\t"x" = {{
\t\t\tstate = active
\t\t}}
\t}}
}}
"""


class FakeLaunchd(FakeManager):
    """A model of launchctl: bootstrap/bootout/print/kickstart/enable over a set of loaded labels.

    ``settle`` makes bootout asynchronous: the label stays visible to ``print`` for that many calls.
    ``bootstrap_errors`` is a queue of (code, stderr) answers given before bootstrap succeeds.
    """

    def __init__(self) -> None:
        self.loaded: dict[str, str] = {}  # target -> plist path
        self.settle = 0
        self._settling: dict[str, int] = {}
        self.bootstrap_errors: list[tuple[int, str]] = []
        self.disabled: set[str] = set()
        self.sleeps: list[float] = []
        super().__init__()

    def respond(self, call: tuple[str, ...]) -> CommandResult:
        verb, args = call[1], call[2:]
        if verb == "print":
            target = args[0]
            if target in self._settling:
                self._settling[target] -= 1
                if self._settling[target] < 0:
                    del self._settling[target]
                else:
                    return CommandResult(call, 0, PRINT_SAMPLE.format(target=target, path="?"))
            if target in self.loaded:
                return CommandResult(call, 0, PRINT_SAMPLE.format(target=target, path=self.loaded[target]))
            return CommandResult(call, 113, "", f"Bad request.\nCould not find service \"{target}\" in domain")
        if verb == "bootstrap":
            domain, path = args
            target = f"{domain}/{path.rsplit('/', 1)[1].removesuffix('.plist')}"
            if self.bootstrap_errors:
                code, err = self.bootstrap_errors.pop(0)
                return CommandResult(call, code, "", err)
            if target in self.loaded or target in self._settling:
                return CommandResult(call, 5, "", "Bootstrap failed: 5: Input/output error")
            self.loaded[target] = path
            return CommandResult(call, 0)
        if verb == "bootout":
            target = args[0]
            if target not in self.loaded:
                return CommandResult(call, 113, "", "Boot-out failed: 113: Could not find specified service")
            del self.loaded[target]
            if self.settle:
                self._settling[target] = self.settle
            return CommandResult(call, 0)
        if verb == "print-disabled":
            lines = "".join(f'\t"{t.rsplit("/", 1)[1]}" => disabled\n' for t in self.disabled)
            return CommandResult(call, 0, f"disabled services = {{\n{lines}}}\n")
        if verb == "enable":
            self.disabled.discard(args[0])
            return CommandResult(call, 0)
        if verb == "kickstart":
            target = args[-1]
            return CommandResult(call, 0 if target in self.loaded else 113)
        return CommandResult(call, 0)
