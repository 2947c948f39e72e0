"""Process identity: zombies are dead, recycled pids are someone else, nothing signals a bare pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from daemonkit.proc.identity import ProcessIdentity, liveness, signal_tree, terminate_tree


def _sleeper(*extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *extra])


def test_live_process_identity() -> None:
    proc = _sleeper()
    try:
        identity = ProcessIdentity.of(proc.pid)
        assert identity is not None and identity.is_alive()
        assert liveness(identity) == "alive"
        assert ProcessIdentity.from_record(identity.to_record()) == identity
    finally:
        proc.kill()
        proc.wait()


def test_zombie_counts_as_dead() -> None:
    proc = _sleeper()
    identity = ProcessIdentity.of(proc.pid)
    assert identity is not None
    os.kill(proc.pid, signal.SIGKILL)
    for _ in range(200):  # not reaped yet: a zombie
        if psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.01)
    assert not identity.is_alive()
    assert liveness(identity) == "zombie"
    assert ProcessIdentity.of(proc.pid) is None
    proc.wait()
    assert liveness(identity) == "dead"


def test_recycled_pid_is_a_different_process() -> None:
    victim = _sleeper()
    try:
        real = ProcessIdentity.of(victim.pid)
        assert real is not None
        # A record with this live pid but another create time, as a recycled pid would look.
        stale = ProcessIdentity(victim.pid, real.create_time - 3600)
        assert not stale.is_alive()
        assert liveness(stale) == "recycled"
        assert signal_tree(stale, signal.SIGKILL) == 0
        assert terminate_tree(stale, grace=0.1) is True  # nothing of *ours* to stop ...
        time.sleep(0.1)
        assert victim.poll() is None  # ... and the unrelated process was never signalled
    finally:
        victim.kill()
        victim.wait()


def test_malformed_records() -> None:
    for bad in (None, [], {}, {"pid": "1", "create_time": 1.0}, {"pid": 0, "create_time": 1.0},
                {"pid": True, "create_time": 1.0}, {"pid": 5, "create_time": "x"}):
        assert ProcessIdentity.from_record(bad) is None


def test_terminate_tree_ends_children_and_double_forked_orphans(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        f"        open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(60)\n"
    )
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        for _ in range(500):
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.01)
        grandchild = psutil.Process(int(pidfile.read_text()))
        assert grandchild.ppid() != leader.pid  # reparented: not a descendant any more
        identity = ProcessIdentity.of(leader.pid)
        assert identity is not None
        assert terminate_tree(identity, grace=2.0)
        leader.wait(timeout=5)
        grandchild.wait(timeout=5)
        assert not grandchild.is_running()
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()


def test_terminate_tree_kills_after_grace_when_term_is_ignored() -> None:
    proc = subprocess.Popen([sys.executable, "-c",
                             "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    identity = ProcessIdentity.of(proc.pid)
    assert identity is not None
    started = time.monotonic()
    assert terminate_tree(identity, grace=0.3)
    # psutil reaped our child while waiting for it, so Popen only sees it gone.
    proc.wait(timeout=5)
    assert not identity.is_alive()
    assert time.monotonic() - started >= 0.3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the /proc reader is Linux only; elsewhere create_time() is psutil's")
def test_create_time_from_proc_equals_psutils_exactly() -> None:
    """The supervisor records its programs' create times without psutil (proc/identity.create_time
    reads /proc); anything that later compares them with psutil's must see the very same float."""
    from daemonkit.proc.identity import create_time

    proc = _sleeper()
    try:
        for pid in (os.getpid(), proc.pid, 1):
            assert create_time(pid) == psutil.Process(pid).create_time()
        assert ProcessIdentity.current() == ProcessIdentity.of(os.getpid())
        proc.kill()
        time.sleep(0.2)  # a zombie until waited for: psutil still answers, and so must we
        assert create_time(proc.pid) == psutil.Process(proc.pid).create_time()
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(ProcessLookupError):
        create_time(proc.pid)
