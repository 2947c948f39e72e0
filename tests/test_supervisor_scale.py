"""Many programs, an idle supervisor that never wakes, and the status --json fast path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from _supervisor_util import SLEEP, Backoff, Program, Spec, gone, prog, start, state, supervisor_pid, wait_for

from daemonkit import api


def _ctx_switches(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def test_1000_programs_start_restart_and_stop_together(dk_env) -> None:  # type: ignore[no-untyped-def]
    quick = Backoff(min_uptime=0.05)
    spec = Spec("many", tuple(Program(f"p{i:04d}", SLEEP, restart="always", stop_grace=20.0, backoff=quick)
                              for i in range(1000)))
    home = start(spec, timeout=240)
    programs = state(home)["programs"]
    assert len(programs) == 1000 and all(p["state"] == "running" for p in programs.values())
    pids = [p["pid"] for p in programs.values()]
    assert len(set(pids)) == 1000
    victim = programs["p0500"]["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: prog(home, "p0500")["pid"] not in (None, victim), timeout=60)
    # Stop graces run in parallel: 1000 programs with a 20 s grace each stop well within one grace.
    started = time.monotonic()
    api.stop(spec, home, timeout=120)
    assert time.monotonic() - started < 20
    assert all(gone(pid) for pid in pids if pid != victim)


def test_idle_supervisor_does_not_wake(dk_env) -> None:  # type: ignore[no-untyped-def]
    spec = Spec("idle", tuple(Program(f"p{i}", SLEEP) for i in range(20)))
    home = start(spec)
    sup = supervisor_pid(home)
    time.sleep(1.5)  # let the coalesced state write and the min_uptime timers pass
    before = _ctx_switches(sup)
    time.sleep(2.0)
    woke = _ctx_switches(sup) - before
    # No periodic timer: expect 0. A bound of 2 leaves room for a stray kernel event, not for a tick.
    assert woke <= 2, f"the idle supervisor woke {woke} times in 2 s"
    api.stop(spec, home)


def test_status_json_fast_path_matches_the_full_path(dk_env) -> None:  # type: ignore[no-untyped-def]
    spec = Spec("fast", tuple(Program(f"p{i}", SLEEP) for i in range(30)))
    home = start(spec)
    env = dict(dk_env)
    fast = subprocess.run([sys.executable, "-m", "daemonkit", "status", "fast", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert fast.returncode == 0, fast.stderr
    assert "\n" not in fast.stdout.strip()  # compact
    full = api.status_of(spec, home).to_json()
    assert json.loads(fast.stdout) == json.loads(json.dumps(full))
    # The fast path did not import the spec loader, psutil or the API layer.
    probe = ("import sys, runpy; sys.argv = ['daemonkit', 'status', 'fast', '--json'];"
             "import daemonkit.cli as c; rc = c.main(); "
             "print(sorted(m for m in ('psutil', 'tomllib', 'daemonkit.api', 'daemonkit.spec') if m in sys.modules),"
             " file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.stderr.strip().endswith("[]"), out.stderr
    api.stop(spec, home)
    stopped = subprocess.run([sys.executable, "-m", "daemonkit", "status", "fast", "--json"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 3 and json.loads(stopped.stdout)["running"] is False
