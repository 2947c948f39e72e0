"""Faults, with real supervisors and real programs: each is handled, visible in state and events, and
never stops the supervisor from serving the other programs."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from _supervisor_util import (
    PY,
    SLEEP,
    Backoff,
    Program,
    Readiness,
    Spec,
    events,
    gone,
    prog,
    run_detached,
    shutdown,
    since_last_start,
    start,
    state,
    wait_for,
)

from daemonkit.supervisor.control import request

FAST = Backoff(initial=0.05, max=0.2, min_uptime=0.3, crashloop_restarts=4, crashloop_window=30.0,
               crashloop_cooldown=1.0)


def test_kill_9_restarts_at_once_and_others_are_untouched(dk_env) -> None:  # type: ignore[no-untyped-def]
    spec = Spec("k9", (Program("a", SLEEP, restart="always"), Program("b", SLEEP, restart="always")))
    home = start(spec)
    a, b = prog(home, "a")["pid"], prog(home, "b")["pid"]
    time.sleep(1.1)  # a stable run (min_uptime) first: the restart is then immediate, not backed off
    os.kill(a, signal.SIGKILL)
    new = wait_for(lambda: (p := prog(home, "a"))["pid"] not in (None, a) and p)
    assert new["restarts"] == 1 and new["last_exit"]["signal"] == "SIGKILL"
    assert not events(home, "backoff", "a")
    assert prog(home, "b")["pid"] == b and prog(home, "b")["restarts"] == 0


def test_sigstopped_program_is_still_stopped_promptly(dk_env) -> None:  # type: ignore[no-untyped-def]
    spec = Spec("frozen", (Program("p", SLEEP, stop_grace=30.0),))
    home = start(spec)
    pid = prog(home, "p")["pid"]
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED)
    assert prog(home, "p")["state"] == "running"  # a suspended program has not died
    started = time.monotonic()
    from daemonkit import api

    api.stop(spec, home, program="p", timeout=60)
    # SIGCONT follows the stop signal, so it did not sit out the 30 s grace.
    assert time.monotonic() - started < 20
    assert gone(pid)
    assert not events(home, "kill", "p")


def test_crashloop_then_cooldown_retry_never_gives_up(dk_env) -> None:  # type: ignore[no-untyped-def]
    spec = Spec("loop", (Program("bad", (PY, "-c", "import sys; sys.exit(3)"), restart="always", backoff=FAST),
                         Program("good", SLEEP)))
    home = run_detached(spec)
    wait_for(lambda: since_last_start(home, "crashloop", "bad"), timeout=60)
    assert since_last_start(home, "backoff", "bad")  # quick deaths backed off before the crash loop
    assert prog(home, "bad")["state"] in ("crashloop", "starting", "backoff")
    crash_at = since_last_start(home, "crashloop", "bad")[0]["ts"]
    # After the 1 s cooldown it is tried again: never a permanent give-up.
    retry = wait_for(lambda: [e for e in since_last_start(home, "spawn", "bad") if e["ts"] > crash_at], timeout=60)
    assert "cooldown" in retry[0]["detail"]["reason"]
    assert prog(home, "good")["state"] == "running" and prog(home, "good")["restarts"] == 0
    shutdown(home)


def test_readiness_timeout_counts_as_a_quick_death(dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    never = tmp_path / "never-created"
    spec = Spec("slow", (Program("s", SLEEP, restart="always", ready=Readiness("file", str(never), 0.5),
                                 backoff=FAST, stop_grace=1.0),))
    home = run_detached(spec)
    timeout = wait_for(lambda: since_last_start(home, "ready-timeout", "s"))
    assert "not ready within 0.5s" in timeout[0]["detail"]["reason"]
    # Counted as a quick death: backed off, not restarted at once.
    backoff = wait_for(lambda: since_last_start(home, "backoff", "s"))
    assert "not ready within 0.5s" in backoff[0]["detail"]["reason"]
    never.touch()  # now it can become ready
    wait_for(lambda: prog(home, "s")["state"] == "ready", timeout=60)
    shutdown(home)


def test_exit_75_and_78(dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    count = tmp_path / "n"
    code75 = (f"import pathlib, sys, time; p = pathlib.Path({str(count)!r}); n = int(p.read_text() or 0) "
              "if p.exists() else 0; p.write_text(str(n + 1)); time.sleep(0.4);"
              "sys.exit(75) if n < 3 else time.sleep(100000)")
    spec = Spec("codes", (Program("t", (PY, "-c", code75), backoff=FAST),
                          Program("c", (PY, "-c", "import time, sys; time.sleep(0.5); sys.exit(78)"), restart="always")))
    home = run_detached(spec)
    wait_for(lambda: prog(home, "t")["restarts"] >= 3 and prog(home, "t")["state"] == "running")
    assert not events(home, "backoff", "t") and not events(home, "crashloop", "t")
    wait_for(lambda: prog(home, "c")["state"] == "config-error")
    time.sleep(0.5)
    assert prog(home, "c")["state"] == "config-error" and prog(home, "c")["restarts"] == 0
    assert events(home, "config-error", "c")
    shutdown(home)


def test_missing_executable_double_fork_flood_and_term_ignored(dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "grandchild.pid"
    double_fork = (f"import os, time\nif os.fork() == 0:\n    if os.fork() == 0:\n"
                   f"        open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(100000)\n"
                   "    os._exit(0)\ntime.sleep(0.6)\n")
    flood = "import sys\nchunk = b'x' * 65536\nwhile True: sys.stdout.buffer.write(chunk)"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(100000)"
    spec = Spec("zoo", (
        Program("ghost", (str(tmp_path / "no-such-binary"),), restart="always", backoff=FAST),
        Program("forker", (PY, "-c", double_fork), restart="never"),
        Program("flood", (PY, "-c", flood), restart="always"),
        Program("stubborn", (PY, "-c", stubborn), stop_grace=0.5),
        Program("k", SLEEP, restart="always"),
    ))
    home = run_detached(spec)
    # missing executable: visible, retried, never fatal
    failed = wait_for(lambda: events(home, "spawn-failed", "ghost"))
    assert "not found" in failed[0]["detail"]["reason"]
    # double fork: when its main process exits, the rest of its group goes too
    grandchild = int(wait_for(lambda: marker.exists() and marker.read_text()))
    wait_for(lambda: prog(home, "forker")["state"] == "exited")
    wait_for(lambda: gone(grandchild))
    # a flood of output does not stall the restart of another program
    time.sleep(1.2)
    k = prog(home, "k")["pid"]
    os.kill(k, signal.SIGKILL)
    wait_for(lambda: prog(home, "k")["pid"] not in (None, k), timeout=30)
    log = home.logs_dir / "flood.out.log"
    assert log.stat().st_size <= spec.program("flood").logs.max_bytes
    # SIGTERM ignored: killed after its grace
    stubborn_pid = prog(home, "stubborn")["pid"]
    request(home.control_socket, {"op": "stop", "program": "stubborn"}, timeout=30)
    assert gone(stubborn_pid) and events(home, "kill", "stubborn")
    assert state(home)["supervisor"]["state"] == "running"
    shutdown(home)


def test_control_request_from_another_user_is_refused(dk_env) -> None:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user (runs as root in CI)")
    import pwd
    import subprocess
    import sys

    nobody = pwd.getpwnam("nobody")
    spec = Spec("private", (Program("p", SLEEP),))
    home = start(spec)
    pid = prog(home, "p")["pid"]
    attack = ("import os, socket, sys; os.setgid(%d); os.setuid(%d); s = socket.socket(socket.AF_UNIX);"
              "s.connect(sys.argv[1]); s.sendall(b'{\"op\": \"shutdown\"}\\n'); print(s.recv(4096))"
              % (nobody.pw_gid, nobody.pw_uid))
    result = subprocess.run([sys.executable, "-c", attack, str(home.control_socket)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "PermissionError" in result.stderr  # the 0700 home keeps it out
    assert prog(home, "p")["pid"] == pid and state(home)["supervisor"]["state"] == "running"


def test_last_words_before_a_stop_and_every_runs_output_reach_the_log(dk_env) -> None:  # type: ignore[no-untyped-def]
    """The output pipes outlive a run (the supervisor keeps them for the next one), so nothing may be
    lost at the end: what a program prints on SIGTERM, and what each run printed, is in its log."""
    code = ("import os, signal, sys, time\n"
            "def bye(*_):\n    print('goodbye from', os.getpid(), flush=True); sys.stderr.write('err-bye\\n'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\nprint('hello from', os.getpid(), flush=True)\ntime.sleep(100000)\n")
    spec = Spec("words", (Program("p", (PY, "-c", code), restart="always"),))
    home = start(spec)
    first = prog(home, "p")["pid"]
    time.sleep(1.1)  # a stable run: restarted at once
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (p := prog(home, "p"))["state"] == "running" and p["pid"] != first and p["pid"])
    shutdown(home)
    wait_for(lambda: not home.pid_file.exists())  # removed after the logs are closed
    out = (home.logs_dir / "p.out.log").read_text()
    assert f"hello from {first}" in out and f"hello from {second}" in out
    assert f"goodbye from {second}" in out, out
    assert "err-bye" in (home.logs_dir / "p.err.log").read_text()
