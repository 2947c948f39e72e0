"""cmd.exe-safe command lines, proven through real cmd.exe and real .cmd files (BatBadBut canary).

Each hostile argument goes through a real .cmd shim that forwards ``%*`` to a Python script (as npm.cmd
forwards to node) and must arrive byte-exact; none may create the canary file.

Wine deviation: Wine's cmd re-expands ``%`` in the text that ``%*``/``%1`` substitute inside a batch file
(Windows does not), so an argument with ``%`` cannot arrive exactly through a .cmd under Wine with any
quoting (the re-expansion can even change quote parity and run a command: Wine only). For those,
cmd's own command-line parse (the phase BatBadBut attacks) is proven exactly by running a program
through ``cmd /c`` with the same quoting. Rust's std tests the same scheme with %-arguments through a
.bat on real Windows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemonkit.proc.cmdline import (UnsafeArgumentError, batch_command, batch_file_line, cmd_c_command,
                                    command_line, comspec, is_batch_file)

CANARY = "canary.txt"
INJECT = f"echo pwned>{CANARY}"
METAS = ["&", "&&", "|", "||", "<", ">", ">>", "^", "%", "!", '"', '""', "(", ")", "^&", '"&', '^"&', '\\"&']


def hostile_arguments() -> list[str]:
    args: list[str] = []
    for meta in METAS:
        args += [f"{meta}{INJECT}", f"x{meta}{INJECT}", f'"{meta}{INJECT}"', f'x"{meta}{INJECT}"{meta}',
                 f"{meta} {INJECT} {meta}", f"\\{meta}{INJECT}\\"]
    args += [
        "", " ", "  two  spaces ", "\t", "plain", "a=b", "a,b", "a;b", "=", ",", ";",
        "%PATH%", "%DK_SECRET%", "%%DK_SECRET%%", "%cd%", "%~dp0", "%1", "%*", "%", "%%", "100%", "%=%",
        "%cd:~,%", "!DK_SECRET!", "!", "^", "^^", "^%DK_SECRET^%", "x.", "x ", "x. .", "...",
        "\\", "\\\\", "x\\", "x\\\\", 'a\\"b', 'a\\\\"b', '"', '""', '"""', '\\"', 'say "hi"',
        "C:\\Program Files\\x\\", "\\\\server\\share", "é", "日本語", "naïve ünïcödé", "emoji \U0001F600",
        f"& {sys.executable} -c \"open('{CANARY}','w')\"", f"%COMSPEC% /c {INJECT}", f"`{INJECT}`",
        f"$({INJECT})", f"'&{INJECT}&'", "<nul", ">nul", "2>&1", "|more",
    ]
    return args


def _shim(tmp_path: Path) -> Path:
    shim = tmp_path / "shim.cmd"
    shim.write_bytes(b'@"%DK_PYEXE%" "%DK_ARGDUMP_PY%" %*\r\n')
    return shim


def _run_batch(script: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(**batch_command(str(script), args).popen_kwargs(), cwd=cwd, capture_output=True,
                          timeout=60)


def _chunks(args: list[str], limit: int = 3000) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    size = 0
    for arg in args:
        if size > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(arg)
        size += len(arg) * 3 + 10
    return chunks


def _compare(sent_chunks: list[list[str]], received: list[list[str]]) -> None:
    assert len(received) == len(sent_chunks)
    for sent, got in zip(sent_chunks, received):
        for i, (want, have) in enumerate(zip(sent, got)):
            assert have == want, f"argument {i} changed on its way through cmd.exe"
        assert got == sent


def test_more_than_100_hostile_arguments_arrive_exactly_through_a_cmd_file(tmp_path, argdump, monkeypatch):
    monkeypatch.setenv("DK_SECRET", "LEAKED")
    args = [a for a in hostile_arguments() if "%" not in a]  # see the module docstring for "%"
    assert len(args) > 100
    shim = _shim(tmp_path)
    chunks = _chunks(args)
    for chunk in chunks:
        result = _run_batch(shim, chunk, tmp_path)
        assert result.returncode == 0, result.stderr
    _compare(chunks, argdump())
    assert not (tmp_path / CANARY).exists(), "an argument ran a command through cmd.exe"


def test_cmd_parse_keeps_every_hostile_argument_including_percent(tmp_path, argdump, monkeypatch):
    monkeypatch.setenv("DK_SECRET", "LEAKED")
    args = hostile_arguments()
    chunks = _chunks(args)
    for chunk in chunks:
        command = cmd_c_command(sys.executable, [str(tmp_path / "argdump.py"), *chunk])
        result = subprocess.run(**command.popen_kwargs(), cwd=tmp_path, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr
    _compare(chunks, argdump())
    assert not (tmp_path / CANARY).exists()


def test_a_naive_quoting_is_exploitable_here(tmp_path, argdump):
    """The canary can fail: subprocess's own quoting of a .cmd call lets an argument run a command."""
    shim = _shim(tmp_path)
    subprocess.run([str(shim), f'"&{INJECT}'], cwd=tmp_path, capture_output=True, timeout=60)
    assert (tmp_path / CANARY).exists()


@pytest.mark.parametrize("bad", ["line\nfeed", "carriage\rreturn", "nul\0byte"])
def test_refuses_what_cmd_cannot_carry(bad):
    with pytest.raises(UnsafeArgumentError) as info:
        batch_command("C:\\x\\run.cmd", ["ok", bad])
    assert "cannot pass" in str(info.value)


@pytest.mark.parametrize("script", ['C:\\x\\"evil.cmd', "C:\\dir\\"])
def test_refuses_impossible_script_names(script):
    with pytest.raises(UnsafeArgumentError):
        batch_command(script, [])


def test_batch_detection_ignores_trailing_dots_and_spaces():
    assert is_batch_file("C:\\x\\npm.CMD")
    assert is_batch_file("C:\\x\\run.bat. .")
    assert is_batch_file("run.cmd ")
    assert not is_batch_file("C:\\x\\python.exe")
    assert not is_batch_file("C:\\x\\cmd")


def test_command_line_routes_batch_files_through_cmd(tmp_path, argdump):
    shim = _shim(tmp_path)
    args = ["&" + INJECT, "^DK_ARGDUMP!", "plain"]
    batch = command_line([str(shim) + ". ", *args])
    assert batch.executable == comspec()
    subprocess.run(**batch.popen_kwargs(), cwd=tmp_path, capture_output=True, timeout=60)
    direct = command_line([sys.executable, "-c", "import sys, os, json; open(os.environ['DK_ARGDUMP'], 'a')"
                           ".write(json.dumps(sys.argv[1:]) + '\\n')", *args])
    assert direct.executable is None
    subprocess.run(**direct.popen_kwargs(), cwd=tmp_path, capture_output=True, timeout=60)
    assert argdump() == [args, args]
    assert not (tmp_path / CANARY).exists()


def test_lines_written_into_a_cmd_file_keep_their_arguments(tmp_path, argdump):
    args = [a for a in hostile_arguments() if "%" not in a][:60]
    line = batch_file_line([sys.executable, str(tmp_path / "argdump.py"), *args])
    launcher = tmp_path / "launch.cmd"
    # UTF-8 with chcp 65001, as the Startup launcher does: user paths are often not ASCII.
    launcher.write_text("@echo off\r\nchcp 65001 >nul\r\nsetlocal DisableDelayedExpansion\r\n" + line + "\r\n",
                        encoding="utf-8")
    _run_batch(launcher, [], tmp_path)
    assert argdump() == [args]
    assert not (tmp_path / CANARY).exists()
