"""Orphans: a SIGKILLed supervisor leaves no program running unnoticed."""

from __future__ import annotations

import os
import signal

import psutil
from _supervisor_util import (
    SLEEP,
    Program,
    Spec,
    events,
    gone,
    prog,
    sentinel_of,
    start,
    state,
    supervisor_pid,
    wait_for,
)

from daemonkit import api


def test_sigkill_of_the_supervisor_ends_its_programs(dk_env) -> None:  # type: ignore[no-untyped-def]
    stubborn = ("sh", "-c", "trap '' TERM; sleep 100000 & wait")  # ignores TERM, has a child in its group
    spec = Spec("guarded", (Program("a", SLEEP), Program("b", SLEEP), Program("c", stubborn, stop_grace=0.5)))
    home = start(spec)
    pids = [prog(home, name)["pid"] for name in ("a", "b", "c")]
    group_c = [p.pid for p in psutil.Process(pids[2]).children()]
    sup = supervisor_pid(home)
    guard = sentinel_of(sup)
    assert guard is not None and guard.status() != psutil.STATUS_ZOMBIE
    os.kill(sup, signal.SIGKILL)
    for pid in pids + group_c:
        wait_for(lambda pid=pid: gone(pid), timeout=30)
    wait_for(lambda: gone(guard.pid), timeout=30)
    guarded = wait_for(lambda: events(home, "orphan-guard"))
    assert {e["program"] for e in guarded} == {"a", "b", "c"}
    assert next(e for e in guarded if e["program"] == "c")["detail"]["killed"] is True  # TERM ignored: killed


def test_a_killed_sentinel_is_replaced(dk_env) -> None:  # type: ignore[no-untyped-def]
    spec = Spec("reguard", (Program("a", SLEEP),))
    home = start(spec)
    sup = supervisor_pid(home)
    first = sentinel_of(sup)
    assert first is not None
    first.kill()
    second = wait_for(lambda: (s := sentinel_of(sup)) is not None and s.pid != first.pid and s)
    assert events(home, "sentinel-lost")
    pid = prog(home, "a")["pid"]
    os.kill(sup, signal.SIGKILL)  # the new sentinel knows about the program started before it
    wait_for(lambda: gone(pid), timeout=30)
    wait_for(lambda: gone(second.pid), timeout=30)


def test_new_supervisor_ends_programs_left_by_a_dead_one(dk_env) -> None:  # type: ignore[no-untyped-def]
    spec = Spec("adopt", (Program("a", SLEEP), Program("b", SLEEP)))
    home = start(spec)
    old = {name: prog(home, name)["pid"] for name in ("a", "b")}
    sup = psutil.Process(supervisor_pid(home))
    sup.suspend()  # freeze it, so it cannot replace its sentinel: both die, as in a crash of the service
    sentinel = sentinel_of(sup.pid)
    assert sentinel is not None
    sentinel.kill()
    sup.kill()
    wait_for(lambda: not api.status_of(spec, home).running)
    assert all(not gone(pid) for pid in old.values())  # really left behind
    home = start(spec)
    assert all(gone(pid) for pid in old.values())
    ended = [e for e in events(home, "orphan-ended")]
    assert {e["program"] for e in ended} >= {"a", "b"}
    assert all(prog(home, name)["pid"] not in old.values() for name in ("a", "b"))
    assert state(home)["supervisor"]["state"] == "running"
