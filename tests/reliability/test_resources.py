"""Resource faults: a full disk, a read-only home, too many open files, a program that floods output.
The supervisor keeps serving (status answers, killed programs are restarted), logs stay under their
caps, and the event ledger says what happened.

Anchors: journald and s6-log keep running and drop or rotate when the disk is full rather than block
the service; systemd keeps supervising with a read-only /var (it degrades, it does not die); every
supervisor must survive EMFILE (s6-svscan documents its fd budget; systemd raises its own limits).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .conftest import PY, QUICK, SLEEP, Sandbox, wait_for

DRIVER = Path(__file__).with_name("fault_driver.py")


def _namespace_driver(sandbox: Sandbox, mode: str) -> dict:  # type: ignore[type-arg]
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs root on Linux to mount a tmpfs in a private mount namespace")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is missing: run bash tests/envs/setup-reliability.sh")
    sandbox.root.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", PY, str(DRIVER), mode, str(sandbox.root)],
                            capture_output=True, text=True, env=sandbox.env, timeout=240)
    assert result.returncode == 0, result.stderr
    sandbox.assert_nothing_running()  # the namespace is gone with its last process
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_disk_full(sandbox: Sandbox) -> None:
    out = _namespace_driver(sandbox, "diskfull")
    assert out["start_rc"] == 0, out
    assert out["filled"], out
    assert out["running_when_full"] and out["supervisor_alive"], out
    assert out["states_when_full"] == {"flood": "running", "sleeper": "running"}, out
    assert out["restarted"], "a killed program was not restarted while the disk was full"
    assert out["recovered_writing"], "output was not written again once space was freed"
    assert "log-write-failed" in out["events"], out["events"]
    assert out["stop_rc"] == 0 and not out["after_stop"], out


def test_read_only_home(sandbox: Sandbox) -> None:
    out = _namespace_driver(sandbox, "readonly")
    assert out["start_rc"] == 0, out
    assert out["remount_rc"] == 0, out
    assert out["ro_status_rc"] == 3 and "Traceback" not in out["ro_status_err"], out
    # A program either died with its supervisor (the orphan guard) or is reported as orphaned.
    assert out["orphan_reported"] or not out["program_alive_after_kill"], out
    assert out["stop_rc"] == 0 and "Traceback" not in out["stop_err"], out
    assert out["program_gone"], "stop did not end the orphan in a read-only home"
    assert out["ro_start_rc"] != 0 and "Traceback" not in out["ro_start_err"], out
    assert "Read-only file system" in out["ro_start_err"], out
    assert out["after_status_rc"] == 3


def test_flooding_program_stays_under_its_log_cap(sandbox: Sandbox) -> None:
    flood = "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536 + b'\\n')"
    cap, backups = 64 * 1024, 2
    sandbox.start_spec("fl", {
        "flood": {"argv": [PY, "-c", flood], "restart": "always", "backoff": QUICK,
                  "logs": {"max_bytes": cap, "backups": backups}},
        "sleeper": {"argv": [PY, "-c", SLEEP], "restart": "always", "backoff": QUICK},
    })
    time.sleep(2.0)
    # While it floods, the supervisor still restarts others promptly and answers status.
    sleeper = sandbox.program("fl", "sleeper")
    os.kill(sleeper["pid"], signal.SIGKILL)
    wait_for(lambda: sandbox.program("fl", "sleeper")["pid"] not in (None, sleeper["pid"]), 15,
             what="sleeper restarted during the flood")
    logs = sandbox.home("fl") / "logs"
    assert sandbox.cli("stop", "fl").returncode == 0  # measured at rest: rotation renames files under us
    total = sum(p.stat().st_size for p in logs.glob("flood.out.log*"))
    assert len(list(logs.glob("flood.out.log*"))) <= backups + 1
    assert total <= (backups + 1) * cap, total
    assert (logs / "flood.out.log.1").exists(), "never rotated: was anything written?"
    sandbox.assert_nothing_running()


@pytest.mark.parametrize("limit", [60, 61, 62])
def test_too_many_open_files(sandbox: Sandbox, limit: int) -> None:
    """30 programs under a 60-62 descriptor limit: they cannot all start. Three neighbouring limits make
    the descriptors run out at every step of a spawn (each program holds about three). The supervisor
    must report the programs it could not start, with the reason, and shut down cleanly; never crash."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is missing: run bash tests/envs/setup-reliability.sh")
    programs = {f"p{i}": {"argv": [PY, "-c", SLEEP], "restart": "always", "backoff": QUICK} for i in range(30)}
    spec = sandbox.write_spec("fd", programs)
    started = subprocess.run(["prlimit", f"--nofile={limit}:{limit}", PY, "-m", "daemonkit", "start", "fd",
                              "--spec", str(spec)], capture_output=True, text=True, env=sandbox.env, timeout=120)
    assert started.returncode == 1, started.stdout + started.stderr
    assert "Traceback" not in started.stderr and "exited during start" not in started.stderr, started.stderr
    assert "Too many open files" in started.stderr, started.stderr
    sandbox.assert_nothing_running()
    log = (sandbox.home("fd") / "logs" / "supervisor.log").read_text()
    assert "Traceback" not in log, log[-2000:]
    events = sandbox.events("fd")
    assert any(e["event"] == "spawn-failed" and "open files" in e["detail"]["reason"] for e in events)
    assert events[-1]["event"] == "supervisor-stop" and events[-1]["detail"]["exit_code"] == 0, events[-3:]


def test_control_channel_abuse_does_not_hang_or_leak(sandbox: Sandbox) -> None:
    """Idle, partial, oversized, malformed and unknown requests from the owner's own processes: status
    still answers at once, and the supervisor's descriptors return to their baseline afterwards."""
    sandbox.start_spec("ctl", {"app": {"argv": [PY, "-c", SLEEP], "restart": "always", "backoff": QUICK}})
    (supervisor,) = sandbox.supervisors()
    baseline = supervisor.num_fds()
    from daemonkit.paths import Home

    path = str(Home(sandbox.home("ctl")).control_socket)
    clients = []
    payloads = [b"", b'{"op": "sta', b"x" * (200 * 1024), b"not json\n", b"[1, 2]\n", b'{"op": "explode"}\n',
                b'{"op": "start", "program": "../../etc"}\n', b"\x00\xff\xfe\n"]
    for i in range(40):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        payload = payloads[i % len(payloads)]
        if payload:
            try:
                s.sendall(payload)
            except OSError:
                pass  # the supervisor may already have answered "too large" and closed
        clients.append(s)
    began = time.monotonic()
    status = sandbox.cli("status", "ctl", "--json", timeout=30)
    assert status.returncode == 0 and json.loads(status.stdout)["running"]
    assert time.monotonic() - began < 20
    for s in clients:
        s.close()
    wait_for(lambda: supervisor.num_fds() <= baseline, 15, what=f"fds back to {baseline}")
    assert sandbox.cli("stop", "ctl").returncode == 0


def test_clients_that_never_read_their_answer_do_not_stall_the_supervisor(sandbox: Sandbox) -> None:
    """A status answer larger than a socket buffer (here ~300 KB: a program whose 150 KB executable path
    was not found) sent to clients that never read it: the supervisor keeps answering others and
    restarting programs (it used to block up to 2 s in sendall per such client, one after the other)."""
    huge = "/nonexistent/" + "x" * 150_000
    sandbox.start_spec("stall", {
        "ok": {"argv": [PY, "-c", SLEEP], "restart": "always", "backoff": QUICK},
        "big": {"argv": [huge], "restart": "never", "autostart": False},
    })
    assert sandbox.cli("start", "stall", "--program", "big").returncode != 0  # fails, with a huge reason
    from daemonkit.paths import Home

    path = str(Home(sandbox.home("stall")).control_socket)
    stuck = []
    for _ in range(10):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(b'{"op": "status"}\n')
        stuck.append(s)  # and never read
    try:
        time.sleep(1.0)  # the supervisor has read all ten requests and is answering them
        # Another client that does read gets its whole answer at once. Sending each stuck answer with a
        # blocking 2 s timeout, one after the other, made it wait ~20 s.
        from daemonkit.supervisor.control import request

        began = time.monotonic()
        answer = request(Path(path), {"op": "status"}, timeout=30)
        assert answer["ok"] and time.monotonic() - began < 10, time.monotonic() - began
        (old,) = sandbox.programs("ok")
        old.kill()
        # Blocking 2 s per stuck client would take 20 s; an event-driven supervisor restarts at once.
        wait_for(lambda: [p for p in sandbox.programs("ok") if p.pid != old.pid], 10,
                 what="ok restarted while 10 clients sit on big answers")
    finally:
        for s in stuck:
            s.close()
    assert sandbox.status("stall")["running"]
    assert sandbox.cli("stop", "stall").returncode == 0


def _context_switches(proc: psutil.Process) -> int:
    return sum(sum(psutil.Process(t.id).num_ctx_switches()) for t in proc.threads())


def test_silent_and_half_request_clients_are_timed_out_and_counted(sandbox: Sandbox) -> None:
    """A client that connects and sends nothing, and one that sends half a request and then stays silent,
    are each answered "no complete request within 5s", hung up on by the supervisor (their descriptors
    come back while the clients still hold their ends) and recorded as refused control requests. The
    deadline is a loop timer that exists only while such a connection is open: once they are gone the
    supervisor is idle again, with no periodic wakeup."""
    from daemonkit.paths import Home
    from daemonkit.supervisor.control import REQUEST_TIMEOUT

    sandbox.start_spec("idlec", {"app": {"argv": [PY, "-c", SLEEP], "restart": "always", "backoff": QUICK}})
    (supervisor,) = sandbox.supervisors()
    time.sleep(0.5)  # the start's own control connections are closed
    baseline = supervisor.num_fds()
    path = str(Home(sandbox.home("idlec")).control_socket)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    began = time.monotonic()
    try:
        silent.connect(path)
        half.connect(path)
        half.sendall(b'{"op": "sta')  # no newline, ever
        wait_for(lambda: supervisor.num_fds() >= baseline + 2, 10, what="the supervisor accepted both clients")
        # Meanwhile a whole request is answered at once: pending clients do not block anyone.
        assert sandbox.status("idlec")["running"]
        answers = []
        for client in (silent, half):
            client.settimeout(REQUEST_TIMEOUT + 30)
            data = b""
            while not data.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
            answers.append(json.loads(data))
            assert client.recv(1) == b"", "the supervisor kept the connection open after answering"
        waited = time.monotonic() - began
        assert waited >= REQUEST_TIMEOUT - 0.5, f"dropped after {waited:.2f}s, before the {REQUEST_TIMEOUT}s deadline"
        for answer in answers:
            assert answer["ok"] is False and "no complete request within" in answer["error"], answer
        assert "0 bytes" in answers[0]["error"] and "11 bytes" in answers[1]["error"], answers
        # Closed by the supervisor while both clients still hold their sockets.
        wait_for(lambda: supervisor.num_fds() <= baseline, 15, what=f"fds back to {baseline}")
    finally:
        silent.close()
        half.close()
    refused = [e["detail"]["refused"] for e in sandbox.events("idlec")
               if e["event"] == "control" and "refused" in (e.get("detail") or {})]
    assert len([r for r in refused if "no complete request" in r]) == 2, refused
    # No timer is left behind: the supervisor sleeps (a tick would show as a steady stream of switches).
    time.sleep(0.5)
    before = _context_switches(supervisor)
    time.sleep(2.0)
    woke = _context_switches(supervisor) - before
    assert woke <= 2, f"the idle supervisor woke {woke} times in 2 s after the clients were dropped"
    assert sandbox.cli("stop", "idlec").returncode == 0
