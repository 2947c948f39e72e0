"""Crash loops and hangs: a program that fails forever is restarted at a bounded rate, marked
``crashloop`` and retried after the cooldown (never given up for good); its logs stay bounded; a
program that ignores SIGTERM is killed after its grace; a double-forked child dies with its program;
hundreds of restarts leak no descriptor.

Anchors: systemd's RestartSec + StartLimitBurst/IntervalSec (bounded rate) and KillMode=control-group
with TimeoutStopSec then SIGKILL; daemontools' supervise pauses a second after starting ./run "so that it
does not loop too quickly"; the SCM's failure actions with dwResetPeriod. Unlike systemd's start-limit and supervisord's FATAL,
daemonkit always retries after the cooldown, as runit and s6 do.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest

from .conftest import PY, QUICK, Sandbox, wait_for

LOOP_BACKOFF = {"initial": 0.05, "max": 0.2, "min_uptime": 0.5, "crashloop_restarts": 5,
                "crashloop_window": 30.0, "crashloop_cooldown": 2.0}


@pytest.mark.slow
def test_crash_loop_is_bounded_then_recovers_after_cooldown(sandbox: Sandbox) -> None:
    flag = sandbox.work / "healed"
    # Fails loudly (100 KB of output a run) until the flag exists; then it stays up.
    code = (f"import os, sys, time\nif not os.path.exists({str(flag)!r}):\n"
            "    sys.stderr.write('boom ' * 20000 + '\\n'); sys.exit(1)\nprint('healthy', flush=True); time.sleep(3600)")
    spec = sandbox.write_spec("cl", {
        "ok": {"argv": [PY, "-c", "import time; time.sleep(3600)"], "restart": "always", "backoff": QUICK},
        "bad": {"argv": [PY, "-c", code], "restart": "always", "autostart": False, "backoff": LOOP_BACKOFF,
                "logs": {"max_bytes": 32 * 1024, "backups": 1}},
    })
    assert sandbox.cli("start", "cl", "--spec", str(spec)).returncode == 0
    began = time.time()
    result = sandbox.cli("start", "cl", "--program", "bad")
    assert result.returncode != 0 and "bad" in result.stderr  # it fails, and says which program
    wait_for(lambda: sandbox.program("cl", "bad")["state"] == "crashloop", 30, what="crashloop")
    time.sleep(4.5)  # two cooldowns: it must be retried, and fall back into crashloop each time
    spawns = [e for e in sandbox.events("cl") if e["event"] == "spawn" and e["program"] == "bad"]
    elapsed = time.time() - began
    # Bounded: at most crashloop_restarts per cooldown cycle (plus the first), never a busy loop.
    cycles = 1 + elapsed / LOOP_BACKOFF["crashloop_cooldown"]
    assert len(spawns) <= LOOP_BACKOFF["crashloop_restarts"] * cycles + 1, (len(spawns), elapsed)
    retries = [e for e in spawns if "cooldown" in e["detail"].get("reason", "")]
    assert retries, "never retried after the cooldown"
    assert any(e["event"] == "crashloop" for e in sandbox.events("cl"))
    # The crash loop's output stayed under its cap (100 KB a run, 32 KB x 2 allowed).
    logs = sandbox.home("cl") / "logs"
    assert sum(p.stat().st_size for p in logs.glob("bad.err.log*")) <= 2 * 32 * 1024
    # The other program was never disturbed.
    assert sandbox.program("cl", "ok")["restarts"] == 0
    # Recovery: once the cause is gone, the next retry sticks, with no human action.
    flag.touch()
    wait_for(lambda: sandbox.program("cl", "bad")["state"] == "running", 20, what="recovered after cooldown")
    assert sandbox.cli("stop", "cl").returncode == 0
    sandbox.assert_nothing_running()


def test_sigterm_ignored_is_killed_after_grace(sandbox: Sandbox) -> None:
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(3600)")
    sandbox.start_spec("hang", {"app": {"argv": [PY, "-c", code], "restart": "always", "stop_grace": 1.0,
                                        "backoff": QUICK}})
    began = time.monotonic()
    assert sandbox.cli("stop", "hang").returncode == 0
    took = time.monotonic() - began
    sandbox.assert_nothing_running()
    assert took >= 1.0  # the grace was honoured
    kills = [e for e in sandbox.events("hang") if e["event"] == "kill"]
    assert kills and kills[0]["detail"]["grace"] == 1.0


@pytest.mark.parametrize("new_session", [False, True], ids=["same-group", "setsid"])
def test_double_forked_child_ends_with_its_program(sandbox: Sandbox, new_session: bool) -> None:
    pidfile = sandbox.work / "grandchild.pid"
    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            f"    {'os.setsid()' if new_session else 'pass'}\n"
            "    if os.fork() == 0:\n"
            f"        open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(3600)\n"
            "    os._exit(0)\n"
            "print('parent up', flush=True); time.sleep(3600)")
    sandbox.start_spec("tree", {"app": {"argv": [PY, "-c", code], "restart": "always", "stop_grace": 2.0,
                                        "backoff": QUICK}})
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, what="grandchild pid")
    grandchild = psutil.Process(int(pidfile.read_text()))
    assert grandchild.is_running()
    assert sandbox.cli("stop", "tree").returncode == 0
    wait_for(lambda: not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE, 10,
             what="the double-forked grandchild ended with its program")
    sandbox.assert_nothing_running()


def test_orphan_sweep_ends_the_old_runs_orphans_not_the_new_runs(sandbox: Sandbox) -> None:
    """A program that double-forks (setsid) a worker and exits: each exit ends the worker its run left
    behind (swept shortly after the respawn), while the worker the restarted run just forked lives."""
    workers = sandbox.work / "workers"
    code = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            f"        open({str(workers)!r}, 'a').write(str(os.getpid()) + '\\n'); time.sleep(3600)\n"
            "    os._exit(0)\n"
            "time.sleep(1.5); raise SystemExit(1)")  # a stable-enough run, then a failure: restarted at once
    backoff = {**QUICK, "min_uptime": 0.3}
    sandbox.start_spec("sweep", {"app": {"argv": [PY, "-c", code], "restart": "always", "backoff": backoff}})

    def pids() -> list[int]:
        return [int(line) for line in workers.read_text().split()] if workers.exists() else []

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    for run in (2, 3):
        wait_for(lambda: len(pids()) >= run, 20, what=f"run {run} and its worker")
        time.sleep(0.4)  # past the sweep (50 ms after the exit), well inside the 1.5 s run
        old, new = pids()[run - 2], pids()[run - 1]
        assert not alive(old), f"run {run - 1}'s worker outlived its run"
        assert alive(new), f"run {run}'s own worker was ended with the previous run's leftovers"
    assert sandbox.cli("stop", "sweep").returncode == 0
    sandbox.assert_nothing_running()


@pytest.mark.slow
def test_no_descriptor_leak_over_many_restarts(sandbox: Sandbox) -> None:
    """300 restarts (exit 75: restart at once, no backoff) leave the supervisor with the descriptors it
    had before, and its memory roughly where it was."""
    counter = sandbox.work / "runs"
    counter.write_text("0")
    # Exits 75 until it has run N times, then stays up; /bin/sh keeps each run ~1 ms.
    script = (f'n=$(cat {counter}); n=$((n+1)); echo $n > {counter}; echo "run $n"; echo "err $n" >&2; '
              f'if [ $n -lt "$RUNS" ]; then exit 75; fi; exec sleep 3600')
    spec = {"app": {"argv": ["/bin/sh", "-c", script], "restart": "always", "backoff": QUICK,
                    "env": {"RUNS": "1"}}}
    sandbox.start_spec("leak", spec)
    (supervisor,) = sandbox.supervisors()
    wait_for(lambda: sandbox.program("leak", "app")["state"] == "running", 10)
    fds_before, rss_before = supervisor.num_fds(), supervisor.memory_info().rss
    spec["app"]["env"] = {"RUNS": "301"}
    counter.write_text("0")
    # The same daemon, asked to restart its program with the new run count.
    sandbox.cli("stop", "leak")
    sandbox.start_spec("leak", spec)
    (supervisor,) = sandbox.supervisors()
    wait_for(lambda: sandbox.program("leak", "app")["state"] == "running" and int(counter.read_text()) >= 301, 120,
             what="300 restarts done")
    program = sandbox.program("leak", "app")
    assert program["restarts"] == 300, program
    fds_after, rss_after = supervisor.num_fds(), supervisor.memory_info().rss
    # Measured on a fresh supervisor in the same state (program up), so the counts compare directly.
    assert fds_after <= fds_before, (fds_before, fds_after, _fds(supervisor))
    assert rss_after - rss_before < 8 * 1024 * 1024, (rss_before, rss_after)
    assert sandbox.cli("stop", "leak").returncode == 0


def _fds(proc: psutil.Process) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{proc.pid}/fd"):
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/{proc.pid}/fd/{fd}')}")
        except OSError:
            continue
    return out
