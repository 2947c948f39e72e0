"""Helpers for the supervisor engine tests: start real supervisors on real programs, read their state."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import psutil

import _wait

from daemonkit import api
from daemonkit.paths import Home
from daemonkit.spec import Backoff, Program, Readiness, Spec
from daemonkit.store.events import read_events
from daemonkit.supervisor.control import request

PY = sys.executable
SLEEP = ("sleep", "100000")

__all__ = ["Backoff", "Program", "Readiness", "Spec", "PY", "SLEEP", "start", "state", "prog", "wait_for",
           "events", "gone", "supervisor_pid", "sentinel_of", "cli_status", "program_of"]


def start(spec: Spec, timeout: float = 60.0) -> Home:
    home = api.home_for_spec(spec)
    api.start(spec, home, timeout=timeout)
    return home


def state(home: Home) -> dict[str, Any]:
    """The live supervisor's own view (fresh, not the coalesced state.json)."""
    answer = request(home.control_socket, {"op": "status"}, timeout=20.0)
    assert answer.get("ok"), answer
    return answer["state"]


def prog(home: Home, name: str) -> dict[str, Any]:
    return state(home)["programs"][name]




def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02) -> Any:
    """A state that is being rewritten, a program not listed yet: "not yet", not a failure."""
    return _wait.wait_for(predicate, timeout, interval, ignore=(KeyError, OSError, AssertionError))


def events(home: Home, kind: str | None = None, program: str | None = None) -> list[dict[str, Any]]:
    return [e for e in read_events(home.events_file)
            if (kind is None or e["event"] == kind) and (program is None or e["program"] == program)]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def cli_status(cli: Callable[..., Any], name: str) -> dict[str, Any]:
    """``daemonkit status NAME --json`` through the ``cli`` fixture, parsed (running or not)."""
    result = cli("status", name, "--json")
    assert result.returncode in (0, 3), result.stderr
    return json.loads(result.stdout)


def program_of(status: dict[str, Any], name: str) -> dict[str, Any]:
    """One program's entry of a ``status --json`` answer."""
    return next(p for p in status["programs"] if p["name"] == name)


def supervisor_pid(home: Home) -> int:
    return int(state(home)["supervisor"]["pid"])


def sentinel_of(pid: int) -> psutil.Process | None:
    for child in psutil.Process(pid).children():
        try:
            if any("sentinel_main" in arg for arg in child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def run_detached(spec: Spec) -> Home:
    """Start the supervisor without waiting for its programs (for specs whose programs cannot come up,
    where ``start`` would fail and stop everything); returns once it answers on its control socket."""
    from daemonkit.backends.base import supervisor_argv
    from daemonkit.proc.spawn import spawn_detached

    home = api.save_spec(spec)
    spawn_detached(supervisor_argv(home, sys.executable), log_path=home.supervisor_log, cwd=home.path)
    wait_for(lambda: home.control_socket.exists() and request(home.control_socket, {"op": "status"})["ok"])
    return home


def since_last_start(home: Home, kind: str, program: str | None = None) -> list[dict[str, Any]]:
    """Events of this supervisor incarnation only."""
    all_events = events(home)
    starts = [i for i, e in enumerate(all_events) if e["event"] == "supervisor-start"]
    tail = all_events[starts[-1]:] if starts else all_events
    return [e for e in tail if e["event"] == kind and (program is None or e["program"] == program)]


def shutdown(home: Home) -> None:
    request(home.control_socket, {"op": "shutdown"}, timeout=30.0)
