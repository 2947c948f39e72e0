"""``osproc.inspect_many`` (the batch look-up behind probe [10]) answers exactly as ``inspect`` (psutil)
does, for real processes in every state a probe distinguishes: alive, recycled, zombie, stopped, dead,
and a process whose name holds spaces and parentheses (the /proc/PID/stat trap)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from daemonkit.doctor.osproc import inspect, inspect_many

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process states (zombie, SIGSTOP)")


def _wait_status(pid: int, wanted: str) -> None:
    deadline = time.monotonic() + 20
    while psutil.Process(pid).status() != wanted:
        assert time.monotonic() < deadline, f"pid {pid} never became {wanted}"
        time.sleep(0.01)


def test_batch_answers_match_psutil_for_every_state(tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    odd = tmp_path / "a) b (c"  # comm holds ") (": a naive split of /proc/PID/stat misreads every field
    odd.symlink_to(sleep)
    procs = {
        "alive": subprocess.Popen([sleep, "60"]),
        "odd": subprocess.Popen([str(odd), "60"]),
        "stopped": subprocess.Popen([sleep, "60"]),
        "zombie": subprocess.Popen([sys.executable, "-c", "pass"]),  # never waited for: stays a zombie
        "dead": subprocess.Popen([sys.executable, "-c", "pass"]),
    }
    try:
        procs["dead"].wait(20)
        os.kill(procs["stopped"].pid, signal.SIGSTOP)
        _wait_status(procs["stopped"].pid, psutil.STATUS_STOPPED)
        _wait_status(procs["zombie"].pid, psutil.STATUS_ZOMBIE)
        created = {k: psutil.Process(p.pid).create_time() for k, p in procs.items() if k != "dead"}
        identities = [(p.pid, created.get(k, 1.0)) for k, p in procs.items()]
        identities.append((procs["alive"].pid, created["alive"] - 5.0))  # the same pid, another process
        batch = inspect_many(identities)
        one_by_one = [inspect(pid, ctime, describe=False) for pid, ctime in identities]
        got = dict(zip([*procs, "recycled"], batch))
        assert {k: v.liveness for k, v in got.items()} == {
            "alive": "alive", "odd": "alive", "stopped": "stopped", "zombie": "zombie", "dead": "dead",
            "recycled": "recycled"}
        for fast, slow in zip(batch, one_by_one):
            assert (fast.pid, fast.liveness, fast.status) == (slow.pid, slow.liveness, slow.status)
            if slow.create_time is None:
                assert fast.create_time is None
            else:  # the same formula as psutil's, so the same float: records match exactly
                assert fast.create_time == pytest.approx(slow.create_time, abs=1e-6)
        assert inspect_many([]) == []
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            if p.returncode is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except OSError:
                    pass
            p.wait(20)
