"""A recording model of schtasks.exe (a stub under Wine: /Create with XML drops triggers, /Query and
/Run return 0 and do nothing), in the style of tests/unix/fakes.py."""

from __future__ import annotations

from pathlib import Path

from _fake_manager import FakeManager

from daemonkit.backends.base import CommandResult


class FakeSchtasks(FakeManager):
    def __init__(self) -> None:
        self.tasks: dict[str, str] = {}  # name -> registered XML text
        self.create_error: tuple[int, str] | None = None  # (exit code, localized stderr)
        self.runs: list[str] = []
        self.ends: list[str] = []
        super().__init__()

    def respond(self, call: tuple[str, ...]) -> CommandResult:
        assert call[0].lower().endswith("\\system32\\schtasks.exe"), call
        args = list(call[1:])
        verb = args[0]
        name = args[args.index("/TN") + 1]
        if verb == "/Create":
            assert "/F" in args and "/XML" in args, "tasks are created from XML, forced, never /Change'd"
            if self.create_error:
                return CommandResult(call, self.create_error[0], "", self.create_error[1])
            raw = Path(args[args.index("/XML") + 1]).read_bytes()
            assert raw[:2] == b"\xff\xfe", "task XML must be UTF-16 with a BOM"
            self.tasks[name] = raw[2:].decode("utf-16-le")
            return CommandResult(call, 0, f'SUCCESS: The scheduled task "{name}" has successfully been created.\n')
        if name not in self.tasks:
            return CommandResult(call, 1, "", "ERROR: The system cannot find the file specified.\n")
        if verb == "/Query":
            return CommandResult(call, 0, self.tasks[name] if "/XML" in args else f"{name}  Ready\n")
        if verb == "/Delete":
            assert "/F" in args
            del self.tasks[name]
            return CommandResult(call, 0, f'SUCCESS: The scheduled task "{name}" was successfully deleted.\n')
        if verb == "/Run":
            self.runs.append(name)
            return CommandResult(call, 0)
        if verb == "/End":
            self.ends.append(name)
            return CommandResult(call, 0)
        return CommandResult(call, 1, "", f"unexpected verb {verb}")
