"""Hostile input: argv, env and cwd with shell metacharacters, quotes, %, $, newlines, tabs, unicode,
backslashes and very long values are carried to the program byte-exact and never run by a shell;
NUL, traversal in names and out-of-range numbers are refused with an error naming the key.

Anchor: systemd passes ExecStart= words to execve() without a shell (and documents its own quoting
and specifier rules), s6 runs ``run`` scripts by execve only; the SCM takes an ImagePath whose quoting
is the classic unquoted-path vulnerability. Here, a canary file proves no shell ever ran. The same for
Windows .cmd launchers, through real cmd.exe under Wine, is tests/windows/test_cmdline.py (Windows lane).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import PY, QUICK, Sandbox, wait_for

# Writes its argv, chosen env vars and cwd as JSON, then stays up.
ECHO = ("import json, os, sys, time\n"
        "out = {'argv': sys.argv[1:], 'env': {k: os.environ.get(k) for k in ('HOSTILE', 'UNICODE', 'LONG')},"
        " 'cwd': os.getcwd()}\n"
        "open(os.environ['ECHO_TO'], 'w', encoding='utf-8', errors='surrogateescape').write(json.dumps(out))\n"
        "time.sleep(3600)\n")


def _hostile(canary: Path) -> list[str]:
    c = str(canary)
    return [
        f"$(touch {c})", f"`touch {c}`", f"; touch {c}", f"&& touch {c}", f"| touch {c}", f"' ; touch {c} ; '",
        f'" ; touch {c} ; "', "%PATH%", "%%", "100%", "$HOME", "${HOME}", "$((1+1))", "!!", "~", "*", "?",
        "a\nb", "line1\r\nline2", "tab\there", "back\\slash\\", "C:\\Program Files\\x y\\", '"', "'", "''",
        "", " ", "--", "-p", "--spec=/etc/passwd", "héllo ✓ 日本語 🚀", "\u202eRTL", "=", "a=b", "^&|<>",
        "x" * 100_000,
    ]


def _read_echo(path: Path) -> dict:  # type: ignore[type-arg]
    wait_for(lambda: path.exists() and path.stat().st_size > 0, 20, what="the program reported its argv")
    time.sleep(0.1)
    return json.loads(path.read_text(encoding="utf-8"))



def test_hostile_argv_env_cwd_through_a_spec(sandbox: Sandbox) -> None:
    canary = sandbox.work / "CANARY"
    echo_to = sandbox.work / "echo.json"
    cwd = sandbox.work / "dir with spaces $HOME ; 'q' ✓"
    cwd.mkdir()
    argv = _hostile(canary)
    env = {"ECHO_TO": str(echo_to), "HOSTILE": f"$(touch {canary}) ; `x` %PATH% \"'\n",
           "UNICODE": "日本語 ✓ \u202e", "LONG": "y" * 50_000}
    sandbox.start_spec("hostile", {"app": {"argv": [PY, "-c", ECHO, *argv], "cwd": str(cwd), "env": env,
                                           "backoff": QUICK}})
    seen = _read_echo(echo_to)
    assert seen["argv"] == argv
    assert seen["env"] == {k: env[k] for k in ("HOSTILE", "UNICODE", "LONG")}
    assert seen["cwd"] == str(cwd)
    # status / logs / list render it without crashing, and still nothing ran a shell.
    for command in (["status", "hostile"], ["status", "hostile", "--json"], ["logs", "hostile"], ["list"]):
        result = sandbox.cli(*command)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr)
    assert sandbox.cli("restart", "hostile").returncode == 0
    assert sandbox.cli("stop", "hostile").returncode == 0
    assert not canary.exists(), "a shell ran one of the arguments"


def test_hostile_argv_through_the_cli(sandbox: Sandbox) -> None:
    canary = sandbox.work / "CANARY"
    echo_to = sandbox.work / "echo.json"
    argv = _hostile(canary)[:-1]  # the 100 KB one is covered above; keep the command line sane
    added = sandbox.cli("add", "h2", "--env", f"ECHO_TO={echo_to}", "--env", "HOSTILE=a=b=c;$(x)", "--", PY, "-c",
                        ECHO, *argv)
    assert added.returncode == 0, added.stderr
    assert sandbox.cli("start", "h2").returncode == 0
    seen = _read_echo(echo_to)
    assert seen["argv"] == argv and seen["env"]["HOSTILE"] == "a=b=c;$(x)"
    assert sandbox.cli("stop", "h2").returncode == 0
    assert not canary.exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".", ".hidden", "-rf", "x" * 65, "日本", "a b", "a\nb",
                                  "/abs", "C:evil", "con\x00", "trailing."])
def test_hostile_daemon_names_are_refused(sandbox: Sandbox, name: str) -> None:
    result = sandbox.cli("add", name, "--", PY, "-c", "pass") if "\x00" not in name else None
    if result is not None:
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "name" in result.stderr.lower()
    # Through a spec file too (where NUL can be written).
    spec = sandbox.work / "n.toml"
    spec.write_text(f'name = {json.dumps(name)}\n[programs.app]\nargv = ["true"]\n')
    result = sandbox.cli("start", "--spec", str(spec))
    assert result.returncode == 2 and "Traceback" not in result.stderr, (name, result.stderr)
    assert "n.toml" in result.stderr  # names the file
    # Nothing was created anywhere near the sandbox root.
    assert not sandbox.root.exists() or not any(p.name != "." for p in sandbox.root.parent.glob("evil*"))
    sandbox.assert_nothing_running(timeout=2)


@pytest.mark.parametrize("program, key", [
    ('[programs."../x"]\nargv = ["true"]', "programs"),
    ('[programs.app]\nargv = ["tr\\u0000ue"]', "argv"),
    ('[programs.app]\nargv = ["true"]\nenv = { "A=B" = "x" }', "env"),
    ('[programs.app]\nargv = ["true"]\nenv = { A = "x\\u0000y" }', "env"),
    ('[programs.app]\nargv = ["true"]\nstop_grace = 1e308', "stop_grace"),
    ('[programs.app]\nargv = ["true"]\nstop_grace = nan', "stop_grace"),
    ('[programs.app]\nargv = ["true"]\nstop_grace = inf', "stop_grace"),
    ('[programs.app]\nargv = ["true"]\nstop_grace = -1', "stop_grace"),
    ('[programs.app]\nargv = ["true"]\n[programs.app.logs]\nbackups = 1000000', "backups"),
    ('[programs.app]\nargv = ["true"]\n[programs.app.logs]\nmax_bytes = 10', "max_bytes"),
    ('[programs.app]\nargv = ["true"]\n[programs.app.backoff]\ncrashloop_restarts = 0', "crashloop_restarts"),
    ('[programs.app]\nargv = ["true"]\nstop_signal = "SEGV"', "stop_signal"),
    ('[programs.app]\nargv = []', "argv"),
    ('[programs.app]\nargv = "rm -rf /"', "argv"),
    ('[programs.app]\nargv = ["true"]\n[programs.app.ready]\ntcp = "127.0.0.1:99999"', "tcp"),
    ('[programs.app]\nargv = ["true"]\n[programs.app.ready]\nhttp = "file:///etc/passwd"', "http"),
    ('[programs.app]\nargv = ["true"]\nunknown_key = 1', "unknown_key"),
])
def test_hostile_spec_values_are_refused_naming_the_key(sandbox: Sandbox, program: str, key: str) -> None:
    spec = sandbox.work / "bad.toml"
    spec.write_text(f'name = "bad"\n{program}\n')
    result = sandbox.cli("start", "--spec", str(spec))
    assert result.returncode == 2, (program, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and key in result.stderr and "bad.toml" in result.stderr, result.stderr
    sandbox.assert_nothing_running(timeout=2)
