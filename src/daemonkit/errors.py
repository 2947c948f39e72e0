"""Errors that reach users: each says what failed, why, and what to do next."""

from __future__ import annotations

# CLI exit codes (LSB-like for ``status``); see docs/cli.md.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_NOT_INSTALLED = 4


class DaemonkitError(Exception):
    """Base error. ``str()`` is one line a user can act on: what failed, why, and a hint."""

    exit_code = EXIT_ERROR

    def __init__(self, what: str, why: str = "", hint: str = "", *, details: str = "") -> None:
        self.what = what
        self.why = why
        self.hint = hint
        self.details = details  # e.g. the last log lines; printed below the one-line message
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.what
        if self.why:
            text += f": {self.why}"
        if self.hint:
            text += f" (try: {self.hint})" if not self.hint.startswith("(") else f" {self.hint}"
        return text

    def report(self, message: str | None = None) -> int:
        """Print the error as the CLI does (``error: ...`` and the details below it) on stderr;
        returns the exit code. ``message`` replaces the one-line message (e.g. respelled for the CLI)."""
        import sys

        print(f"error: {message if message is not None else self.message}", file=sys.stderr)
        if self.details:
            print(self.details, file=sys.stderr)
        return self.exit_code


class SpecError(DaemonkitError):
    """A spec file or spec value is invalid. Names the file, the key and what is expected."""

    exit_code = EXIT_USAGE

    def __init__(self, source: str, key: str, problem: str, hint: str = "") -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"invalid spec {where}", problem, hint)


class NotInstalledError(DaemonkitError):
    """The daemon (or its service-manager registration) does not exist; the CLI exits 4."""

    exit_code = EXIT_NOT_INSTALLED


class NotRunningError(DaemonkitError):
    """The daemon is not running and the action needs it to; the CLI exits 3 (as LSB's status)."""

    exit_code = EXIT_NOT_RUNNING


class AlreadyRunningError(DaemonkitError):
    pass


class UnsafeFileError(DaemonkitError):
    """A runtime file or directory is not owner-only, or belongs to someone else."""
