"""Windows command lines that mean exactly the argv they came from.

Windows passes one string, not a list, to a new process. Two parsers read it back:

* the C runtime of most programs (``CommandLineToArgvW`` rules): ``subprocess.list2cmdline`` writes
  for it, and ``command_line`` uses that for ordinary executables;
* ``cmd.exe``, whenever the target is a ``.bat``/``.cmd`` file (npm, npx, yarn... are such shims):
  CreateProcess silently runs ``cmd.exe /c`` with the raw line, and cmd expands ``%VAR%``, and treats
  ``&``, ``|``, ``<``, ``>``, ``^`` outside quotes as syntax. ``subprocess`` quoting does not protect
  against that (the "BatBadBut" class, CVE-2024-24576): an argument can run a command.

``batch_command`` follows the scheme Rust's standard library adopted for that CVE: run cmd.exe
explicitly with command extensions on and delayed expansion off (so ``!`` is literal), quote every
argument that holds anything but known-harmless characters, double embedded quotes (cmd's quote state
survives ``""``, unlike ``\\"``). CR, LF and NUL cannot be passed through cmd.exe at all and are refused.
``%`` is defused with ``%%cd:~,%``: cmd leaves
a lone ``%`` alone on the command line, and ``%cd:~,%`` (a zero-length substring of the always-defined
``cd`` variable) expands to nothing, so ``%NAME%`` never forms. (Wine's cmd handles this command-line
phase like Windows, but re-expands ``%*``/``%1`` inside a batch file, which Windows does not; the
Windows lane tests say where.)

``batch_file_line`` quotes arguments for a line inside a ``.cmd`` file daemonkit writes (the Startup
launcher): there ``%`` is escaped as ``%%`` instead.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import DaemonkitError

# ASCII that needs no quoting for cmd.exe; every other ASCII symbol forces quotes (Rust's list).
_UNQUOTED = frozenset("#$*+-./:?@\\_")
_BATCH_SUFFIXES = (".bat", ".cmd")


@dataclass(frozen=True)
class WinCommand:
    """What to hand to CreateProcess: ``Popen(line, executable=executable, env=env)``."""

    executable: str | None  # None: CreateProcess finds the program from the line
    line: str
    env: dict[str, str] | None  # None: inherit the caller's environment

    def popen_kwargs(self) -> dict[str, object]:
        return {"args": self.line, "executable": self.executable, "env": self.env}


class UnsafeArgumentError(DaemonkitError):
    """An argument cannot be passed through cmd.exe without changing its meaning."""


def is_batch_file(path: str) -> bool:
    """Whether CreateProcess would hand ``path`` to cmd.exe. Windows ignores trailing dots and spaces
    in file names, so ``run.cmd.`` and ``run.cmd `` are batch files too."""
    return path.rstrip(". ").lower().endswith(_BATCH_SUFFIXES)


def _check_no_nul(arg: str) -> None:
    if "\0" in arg:
        raise UnsafeArgumentError("cannot pass an argument containing a NUL character",
                                  f"{arg!r}: Windows command lines end at NUL", "remove the NUL character")


def _needs_quotes(arg: str) -> bool:
    if not arg or arg.endswith("\\"):
        return True  # empty args vanish unquoted; a trailing backslash must not escape our closing quote
    for ch in arg:
        if ch.isascii():
            if not (ch.isalnum() or ch in _UNQUOTED):
                return True
        elif not ch.isprintable():
            return True
    return False


def _quote_for_cmd(arg: str, percent: str) -> str:
    """One argument as cmd.exe + the C runtime read it back; ``percent`` is written before each ``%``."""
    _check_no_nul(arg)
    for bad, name in (("\r", "carriage return"), ("\n", "line feed")):
        if bad in arg:
            raise UnsafeArgumentError(
                f"cannot pass an argument containing a {name} to a batch file",
                f"{arg!r}: cmd.exe ends the command at a line break, so the rest could run as a command",
                "pass the value through a file or an environment variable instead")
    quote = _needs_quotes(arg)
    out: list[str] = ['"'] if quote else []
    backslashes = 0
    for ch in arg:
        if ch == "\\":
            backslashes += 1
            out.append(ch)
            continue
        if ch == '"':
            out.append("\\" * backslashes)  # backslashes before a quote are doubled (C runtime rule)
            out.append('"')  # "" keeps cmd.exe inside its quoted state and reads as one literal quote
        elif ch == "%":
            out.append(percent)  # written before the "%" itself
        backslashes = 0
        out.append(ch)
    if quote:
        out.append("\\" * backslashes)
        out.append('"')
    return "".join(out)


def _check_script(script: str) -> None:
    _check_no_nul(script)
    if '"' in script or script.endswith("\\") or "\r" in script or "\n" in script:
        raise UnsafeArgumentError(f"cannot run batch file {script!r}",
                                  "a Windows file name cannot contain '\"' or a line break, or end with '\\'",
                                  "check the program's path")


def comspec(env: Mapping[str, str] | None = None) -> str:
    """The cmd.exe to run: ``%ComSpec%``, else ``%SystemRoot%\\System32\\cmd.exe``."""
    upper = {k.upper(): v for k, v in (os.environ if env is None else env).items()}
    if upper.get("COMSPEC"):
        return upper["COMSPEC"]
    return os.path.join(upper.get("SYSTEMROOT", "C:\\Windows"), "System32", "cmd.exe")


def cmd_c_command(target: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> WinCommand:
    """``cmd.exe /c "TARGET" ARGS`` with every argument passing cmd's parse unchanged. ``target`` is a
    batch file normally (``batch_command``); any program works, which lets tests watch cmd's own parse.
    """
    _check_script(target)
    quoted = [_quote_for_cmd(str(a), "%%cd:~,") for a in args]
    # The outer pair of quotes around everything after /c is what cmd /c strips; without it a quoted
    # script name followed by a quoted argument would lose its first and last quote.
    line = 'cmd.exe /e:ON /v:OFF /d /c ""' + target + '"' + "".join(" " + q for q in quoted) + '"'
    return WinCommand(comspec(env), line, None if env is None else dict(env))


def batch_command(script: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> WinCommand:
    """Run ``script`` (a .bat/.cmd) through cmd.exe so that ``args`` arrive unchanged and none of them
    can run a command. Raises ``UnsafeArgumentError`` for CR, LF or NUL in an argument, or an
    impossible script name."""
    return cmd_c_command(script, args, env)


def batch_file_line(argv: Sequence[str]) -> str:
    """A command line to put inside a .cmd file daemonkit writes: every argument quoted for cmd.exe,
    ``%`` written as ``%%`` (a literal percent in a batch file). The file must run with delayed
    expansion off (``setlocal DisableDelayedExpansion``), which makes ``!`` literal."""
    parts = []
    for arg in argv:
        quoted = _quote_for_cmd(str(arg), "%")  # "%" + "%": a literal percent in a batch file
        parts.append(quoted if quoted.startswith('"') else '"' + quoted + '"')
    return " ".join(parts)


def command_line(argv: Sequence[str], env: Mapping[str, str] | None = None) -> WinCommand:
    """How to start ``argv`` on Windows so that it receives exactly ``argv``.

    Batch files go through ``batch_command`` (cmd.exe, see above); everything else through
    ``subprocess.list2cmdline``, the C runtime's rules (executable None: CreateProcess resolves argv[0]).
    """
    if not argv:
        raise UnsafeArgumentError("cannot run an empty command", "argv is empty", "give the program's path")
    for arg in argv:
        _check_no_nul(str(arg))
    first = str(argv[0])
    if is_batch_file(first):
        return batch_command(first, [str(a) for a in argv[1:]], env)
    return WinCommand(None, subprocess.list2cmdline([str(a) for a in argv]), None if env is None else dict(env))
