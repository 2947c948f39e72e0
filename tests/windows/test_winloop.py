"""The Windows loop parts for real: loop timers and cross-thread calls with no idle wakeups, process
exits seen through handles (more than one wait group), the named-pipe control channel, output pumps."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from .helpers import wait_until
from daemonkit.supervisor.winloop import (HandleWatcher, OutputPump, PipeControlError, PipeControlServer,
                                          WinLoop, pipe_name, pipe_request)


@pytest.fixture
def loop():
    loop = WinLoop()
    thread = threading.Thread(target=loop.run, daemon=True, name="daemonkit-test-loop")
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_timers_threadsafe_calls_and_no_idle_wakeups():
    loop = WinLoop()
    seen: list[str] = []
    loop.call_later(0.2, lambda: seen.append("late"))
    loop.call_later(0.05, lambda: seen.append("early"))
    cancelled = loop.call_later(0.1, lambda: seen.append("cancelled"))
    cancelled.cancel()
    loop.call_later(0.3, loop.stop)
    threading.Timer(0.1, lambda: loop.call_soon_threadsafe(lambda: seen.append("thread"))).start()
    loop.run()
    assert seen == ["early", "thread", "late"]
    # Idle: nothing pending, so one wait and no wakeups until someone calls in.
    before = loop.wakeups
    threading.Timer(1.0, lambda: loop.call_soon_threadsafe(loop.stop)).start()
    loop.run()
    assert loop.wakeups - before <= 2
    loop.close()


def test_watcher_reports_real_exit_codes_across_wait_groups(loop, monkeypatch):
    monkeypatch.setattr(HandleWatcher, "PER_THREAD", 3)  # several wait threads with a few processes
    watcher = HandleWatcher(loop)
    codes = [0, 1, 3, 42, 75, 78, 255]
    exits: dict[int, int] = {}
    procs = [subprocess.Popen([sys.executable, "-c", f"import sys, time; time.sleep(0.5); sys.exit({c})"])
             for c in codes]
    for proc in procs:
        watcher.watch(proc.pid, lambda pid, rc: exits.__setitem__(pid, rc))
    assert len(watcher.groups) == 3
    assert wait_until(lambda: len(exits) == len(codes), 30)
    assert [exits[p.pid] for p in procs] == codes
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    forgotten = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    watcher.watch(killed.pid, lambda pid, rc: exits.__setitem__(pid, rc))
    watcher.watch(forgotten.pid, lambda pid, rc: exits.__setitem__(pid, rc))
    watcher.forget(forgotten.pid)
    killed.kill()  # TerminateProcess: exit code 1
    assert wait_until(lambda: killed.pid in exits, 15) and exits[killed.pid] == 1
    forgotten.wait(10)
    time.sleep(0.3)
    assert forgotten.pid not in exits
    for proc in procs:
        proc.wait()
    watcher.close()


def test_control_pipe_round_trip_and_deferred_answers(loop, tmp_path):
    name = pipe_name(tmp_path)
    assert name.startswith("\\\\.\\pipe\\daemonkit-") and name == pipe_name(str(tmp_path).upper())
    assert name != pipe_name(tmp_path / "other")
    handled: list[str] = []

    def handler(request, reply):
        handled.append(threading.current_thread().name)  # the loop's thread, never a pipe thread
        if request["op"] == "later":
            loop.call_later(0.3, lambda: reply({"ok": True, "op": "later"}))
        else:
            reply({"ok": True, "echo": request})

    server = PipeControlServer(name, loop, handler)
    try:
        assert pipe_request(name, {"op": "status"}) == {"ok": True, "echo": {"op": "status"}}
        t0 = time.monotonic()
        assert pipe_request(name, {"op": "later"}) == {"ok": True, "op": "later"}
        assert time.monotonic() - t0 >= 0.25
        results: list[dict] = []
        threads = [threading.Thread(target=lambda i=i: results.append(pipe_request(name, {"op": "n", "i": i})))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert sorted(r["echo"]["i"] for r in results) == list(range(8))
        assert set(handled) == {"daemonkit-test-loop"}
    finally:
        server.close()
    with pytest.raises(PipeControlError):
        pipe_request(name, {"op": "status"}, timeout=2)


def test_output_pump_copies_a_flood_without_the_loop(loop):
    chunks: list[bytes] = []
    done = threading.Event()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'x' * 3_000_000)"],
                            stdout=subprocess.PIPE)
    OutputPump(proc.stdout, chunks.append, loop, done.set)
    assert done.wait(30)
    assert sum(map(len, chunks)) == 3_000_000
    proc.wait(10)


def test_a_silent_pipe_client_is_answered_dropped_and_counted(loop, tmp_path):
    """A client that connects to the control pipe and never sends is answered why and dropped after the
    request deadline, recorded through on_refused in the loop's thread; others are served meanwhile."""
    from multiprocessing.connection import Client

    from daemonkit.supervisor.control import REQUEST_TIMEOUT

    name = pipe_name(tmp_path)
    refused: list[tuple[str, str]] = []
    server = PipeControlServer(name, loop, lambda request, reply: reply({"ok": True}),
                               on_refused=lambda why: refused.append((threading.current_thread().name, why)))
    silent = Client(name, family="AF_PIPE")
    try:
        began = time.monotonic()
        assert pipe_request(name, {"op": "status"}) == {"ok": True}  # not held up by the silent one
        assert silent.poll(REQUEST_TIMEOUT + 30), "the silent client was never answered"
        answer = silent.recv_bytes()
        waited = time.monotonic() - began
        assert waited >= REQUEST_TIMEOUT - 0.5, f"dropped after {waited:.2f}s, before the deadline"
        assert b"no complete request within" in answer and b'"ok": false' in answer, answer
        with pytest.raises((EOFError, OSError)):
            silent.recv_bytes()  # and the server closed its end
        assert wait_until(lambda: refused, 10)
        assert refused == [("daemonkit-test-loop", f"no complete request within {REQUEST_TIMEOUT:g}s: "
                                                   "connection dropped")]
    finally:
        silent.close()
        server.close()
