"""The supervisor's lean entry (``python -m daemonkit supervise``): the CLI's answers, without its imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemonkit.supervisor.entry import parse

PY = sys.executable


@pytest.mark.parametrize(("words", "expected"), [
    (["supervise", "--home", "/h"], ("/h", None)),
    (["supervise", "--home=/h", "--backend", "systemd"], ("/h", "systemd")),
    (["supervise", "--backend=launchd", "--home", "/h"], ("/h", "launchd")),
    (["supervise", "--home", "/a", "--home", "/b"], ("/b", None)),  # argparse keeps the last one too
    (["supervise"], None),
    (["supervise", "--help"], None),
    (["supervise", "--home"], None),
    (["supervise", "--home", "--backend", "x"], None),
    (["supervise", "--home", "/h", "extra"], None),
    (["supervise", "--backend", "x"], None),
    (["status", "--home", "/h"], None),
])
def test_parse_takes_only_what_argparse_would_take_the_same_way(words: list[str], expected: object) -> None:
    assert parse(words) == expected


def test_supervise_process_imports_neither_the_cli_nor_psutil(cli, dk_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """The supervisor lives as long as the daemon: argparse, the CLI, psutil, hashlib, dataclasses
    (inspect, ast, ...) and the TOML parser (spec.cache.json) are memory it would keep for nothing
    (docs/benchmarks.md, Memory). Checked on a real ``supervise`` run: one
    program started, its state written, then SIGTERM; the process prints its modules on the way out."""
    assert cli("add", "lean", "--", "sleep", "60").returncode == 0
    home = Path(dk_env["DAEMONKIT_HOME"]) / "lean"
    code = ("import atexit, os, runpy, signal, sys, threading\n"
            "atexit.register(lambda: sys.stdout.write(' '.join(sorted(sys.modules))))\n"
            "threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
            "sys.argv = ['daemonkit', 'supervise', '--home', sys.argv[1]]\n"
            "runpy.run_module('daemonkit', run_name='__main__', alter_sys=True)\n")
    result = subprocess.run([PY, "-c", code, str(home)], env=dk_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    events = (home / "events.jsonl").read_text()
    assert '"event":"spawn"' in events and '"event":"supervisor-stop"' in events
    state = json.loads((home / "state.json").read_text())
    assert state["programs"]["lean"]["last_exit"]["signal"] == "SIGTERM"
    modules = set(result.stdout.split())
    assert "daemonkit.supervisor.engine" in modules
    heavy = modules & {"argparse", "daemonkit.cli", "psutil", "hashlib", "dataclasses", "inspect", "tomllib"}
    assert not heavy, heavy


def test_unusual_supervise_arguments_still_get_argparse_answers(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("supervise").returncode == 2  # --home is required
    helped = cli("supervise", "--help")
    assert helped.returncode == 0 and "--home" in helped.stdout


@pytest.mark.parametrize("response", [
    {"ok": True},
    {"ok": False, "error": "no program named 'x' (known: a, b)"},
    {"ok": True, "state": {"name": "d", "programs": {}, "supervisor": {"pid": 1}}},
    {"ok": True, "failed": {}, "state": {"programs": {"a": {"pid": 3, "last_exit": {"code": None, "at": 1.5}},
                                                      "ü": {"reason": "é\n\"", "path": Path("/x")}}}},
    {"ok": True, "odd": {1: "int keys", "s": [1, 2.5, None]}},
])
def test_streamed_control_reply_is_byte_for_byte_json_dumps(response: dict[str, object]) -> None:
    from daemonkit.supervisor.control import encode_reply

    assert encode_reply(response) == (json.dumps(response, default=str) + "\n").encode()


def test_live_views_in_a_reply_encode_like_the_dicts_they_stand_for() -> None:
    from daemonkit.supervisor.control import encode_reply

    class Live:
        def __init__(self, pairs: list[tuple[str, object]]) -> None:
            self.pairs = pairs

        def json_items(self):  # type: ignore[no-untyped-def]
            return iter(self.pairs)

    programs = [("a", {"pid": 1}), ("b", {"pid": None, "reason": "x"})]
    live = {"ok": True, "state": Live([("name", "d"), ("programs", Live(programs)), ("empty", Live([]))])}
    plain = {"ok": True, "state": {"name": "d", "programs": dict(programs), "empty": {}}}
    assert encode_reply(live) == (json.dumps(plain) + "\n").encode()
