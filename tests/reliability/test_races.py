"""Races: many CLIs at once, and seeded random command sequences.

Anchor: systemd serialises jobs per unit (a second `start` of an active unit is a no-op, never a second
main process); s6-supervise exits 100 if another s6-supervise already monitors the service directory;
the SCM answers a second StartService with ERROR_SERVICE_ALREADY_RUNNING (1056). daemonkit's equivalent
is its home lock: one supervisor per home, and every other start says "already running".
"""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from .conftest import PY, SLEEP, Sandbox, wait_for

STARTERS = 50
SEEDS = [int(s) for s in os.environ.get("DK_RELIABILITY_SEEDS", "1,2,3").split(",")]


def test_50_concurrent_starts_make_one_supervisor(sandbox: Sandbox) -> None:
    assert sandbox.cli("add", "race", "--restart", "always", "--", PY, "-c", SLEEP).returncode == 0
    procs = [sandbox.popen("start", "race") for _ in range(STARTERS)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        results.append((proc.returncode, out, err))
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) == 1, f"{len(winners)} starts claimed success: {[w[1][:200] for w in winners]}"
    for code, out, err in losers:
        assert code == 1 and "already running" in err, (code, out, err)
    # Exactly one supervisor and one program, and they are what status reports.
    wait_for(lambda: len(sandbox.supervisors()) == 1, 20, what="losing supervisors have exited")
    time.sleep(0.5)
    assert len(sandbox.supervisors()) == 1
    assert len(sandbox.programs()) == 1
    status = sandbox.status("race")
    assert status["running"] and status["supervisor_pid"] == sandbox.supervisors()[0].pid
    assert sandbox.programs()[0].pid == status["programs"][0]["pid"]
    assert sandbox.cli("stop", "race").returncode == 0
    sandbox.assert_nothing_running()


# Each command and the state it must leave when it is the last one to finish.
COMMANDS = ("start", "stop", "restart", "install", "uninstall")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_random_command_sequences_end_in_the_last_commands_state(sandbox: Sandbox, seed: int) -> None:
    """Bounded, seeded: waves of 2-3 overlapping commands, then one final command run alone. The end
    state must match that final command, with no orphan and consistent records."""
    rng = random.Random(seed)
    assert sandbox.cli("add", "seq", "--restart", "always", "--", PY, "-c", SLEEP).returncode == 0
    log = []
    for _wave in range(4):
        batch = [rng.choice(COMMANDS) for _ in range(rng.randint(2, 3))]
        procs = [(cmd, sandbox.popen(*_argv(cmd))) for cmd in batch]
        for cmd, proc in procs:
            out, err = proc.communicate(timeout=120)
            log.append((cmd, proc.returncode, err.strip()[-300:]))
            # Overlapping commands may lose a race, but only with a clear, known refusal.
            assert proc.returncode in (0, 1, 4), (cmd, proc.returncode, out, err)
            if proc.returncode == 1:
                assert _known_refusal(err), (cmd, err)
    final = rng.choice(COMMANDS)
    result = sandbox.cli(*_argv(final))
    log.append((final, result.returncode, result.stderr.strip()[-300:]))
    refused = final == "uninstall" and result.returncode == 4  # not installed: the right answer
    running_already = final == "start" and result.returncode == 1 and "already running" in result.stderr
    if not (refused or running_already):
        assert result.returncode == 0, (final, result.stdout, result.stderr, log)
    _assert_end_state(sandbox, final, refused, log)


def _argv(cmd: str) -> list[str]:
    return [cmd, "seq", "--backend", "detached"] if cmd == "install" else [cmd, "seq"]


def _known_refusal(err: str) -> bool:
    return any(s in err for s in ("already running", "not running", "is shutting down", "did not start",
                                  "not installed", "exited during start", "cannot restart", "failed to restart"))


def _assert_end_state(sandbox: Sandbox, final: str, refused: bool, log: list) -> None:  # type: ignore[type-arg]
    """``refused``: the final command was an ``uninstall`` of a daemon that was not installed, which
    changes nothing; then only consistency is checked."""
    home = sandbox.home("seq")
    want_up = None if refused else final in ("start", "restart", "install")
    # Give a losing supervisor of an earlier wave its moment to notice the lock and exit.
    wait_for(lambda: len(sandbox.supervisors()) <= 1, 20, what=f"at most one supervisor ({log})")
    if want_up is not False:
        time.sleep(1.0)  # let the program settle (a started program survives min_uptime)
    supervisors, programs = sandbox.supervisors(), sandbox.programs()
    if want_up is None:
        want_up = bool(supervisors)
    if want_up:
        assert len(supervisors) == 1 and len(programs) == 1, (supervisors, programs, log)
        status = sandbox.status("seq")
        assert status["running"] and status["supervisor_pid"] == supervisors[0].pid, log
        assert status["programs"][0]["pid"] == programs[0].pid, log
        lock = json.loads((home / "supervisor.lock").read_text())
        pid_record = json.loads((home / "supervisor.pid").read_text())
        assert lock["pid"] == pid_record["pid"] == status["supervisor_pid"], log
    else:
        sandbox.assert_nothing_running()
        status = sandbox.status("seq")
        assert not status["running"], log
        assert not (home / "supervisor.pid").exists(), log
        assert all(p["pid"] is None for p in status["programs"]), (status, log)
    installed = (home / "install.json").exists()
    if final == "install":
        assert installed, log
    if final == "uninstall":
        assert not installed, log
