"""The common part of the service-manager fakes (tests/unix/fakes.py: systemctl, launchctl;
tests/windows/fakes.py: schtasks.exe, also imported inside Wine): a model answers every command a
backend runs through a ``RecordingRunner``, which keeps the calls for the assertions."""

from __future__ import annotations

from abc import ABC, abstractmethod

from daemonkit.backends.base import CommandResult, RecordingRunner


class FakeManager(ABC):
    def __init__(self) -> None:
        self.runner = RecordingRunner(responder=self.respond)

    @property
    def calls(self) -> list[tuple[str, ...]]:
        return self.runner.calls

    def verbs(self) -> list[str]:
        """The tool's verbs in order (the first argument of each call)."""
        return [call[1] for call in self.calls]

    @abstractmethod
    def respond(self, call: tuple[str, ...]) -> CommandResult:
        """What the tool answers to ``call`` (argv, the tool first)."""
