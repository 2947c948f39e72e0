"""The engine's parts on their own, with real processes: child watchers, launch plans, sentinel, spec I/O."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from daemonkit.proc.launch import launch, plan
from daemonkit.proc.sentinel import Sentinel
from daemonkit.spec import Backoff, Program, Spec, dump_spec, dumps_spec, load_spec
from daemonkit.supervisor.loop import Loop
from daemonkit.supervisor.watch import PidfdWatcher, SigchldWatcher


def _spawn(argv: list[str]) -> int:
    p = plan(argv, dict(os.environ))
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        return launch(p, devnull, devnull, devnull)
    finally:
        os.close(devnull)


def _run_until(loop: Loop, done: "callable[[], bool]", timeout: float = 20.0) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        loop.call_later(0.2, lambda: None)  # bound each turn: the test must not hang on a bug
        loop.run_once()
    assert done(), "the watcher did not report in time"


@pytest.mark.parametrize("kind", ["pidfd", "sigchld"])
def test_watcher_reports_exit_codes_and_signals(kind: str) -> None:
    if kind == "pidfd" and not PidfdWatcher.available():
        pytest.skip("pidfd_open is not available on this kernel")
    loop = Loop()
    watcher = PidfdWatcher(loop) if kind == "pidfd" else SigchldWatcher(loop)
    seen: dict[int, int] = {}
    before: list[int] = []
    try:
        a = _spawn([sys.executable, "-c", "import sys; sys.exit(7)"])
        b = _spawn(["sleep", "100"])
        watcher.watch(a, lambda pid, rc: seen.__setitem__(pid, rc), before.append)
        watcher.watch(b, lambda pid, rc: seen.__setitem__(pid, rc), before.append)
        os.kill(b, signal.SIGKILL)
        _run_until(loop, lambda: len(seen) == 2)
        assert seen == {a: 7, b: -signal.SIGKILL}
        assert sorted(before) == sorted([a, b])  # called while each was still unreaped
        assert len(watcher) == 0  # type: ignore[arg-type]
    finally:
        watcher.close()
        loop.close()


def test_stray_children_are_reaped_without_reporting_as_programs() -> None:
    if not PidfdWatcher.available():
        pytest.skip("pidfd_open is not available on this kernel")
    loop = Loop()
    strays: list[tuple[int, int]] = []
    watcher = PidfdWatcher(loop, lambda pid, rc: strays.append((pid, rc)))
    try:
        stray = subprocess.Popen(["sh", "-c", "exit 4"])  # a child nobody watches
        _run_until(loop, lambda: bool(strays))
        stray.returncode = 4  # reaped by the watcher, not by Popen
        assert strays == [(stray.pid, 4)]
    finally:
        watcher.close()
        loop.close()


def test_kqueue_watcher_needs_macos_or_bsd() -> None:
    if not hasattr(select, "kqueue"):
        pytest.skip("kqueue (EVFILT_PROC/NOTE_EXIT) exists only on macOS/BSD; this is "
                    f"{sys.platform}, where the pidfd watcher is used")
    from daemonkit.supervisor.watch_kqueue import KqueueWatcher

    loop = Loop()
    watcher = KqueueWatcher(loop)
    seen: dict[int, int] = {}
    pid = _spawn(["sh", "-c", "exit 3"])
    watcher.watch(pid, lambda p, rc: seen.__setitem__(p, rc))
    _run_until(loop, lambda: bool(seen))
    assert seen == {pid: 3}
    watcher.close()
    loop.close()


def test_launch_plan_session_signals_and_missing_executable(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    p = plan(["sh", "-c", "echo $FOO $DAEMONKIT_X; grep SigIgn /proc/self/status; sleep 100"],
             {"PATH": os.environ["PATH"], "FOO": "base"}, extra_env={"DAEMONKIT_X": "extra"})
    assert p.method == "posix_spawn" and p.executable and os.path.isabs(p.executable)
    pid = launch(p, devnull, fd, fd)
    try:
        assert os.getsid(pid) == pid  # leads its own session and process group
        deadline = time.monotonic() + 20
        while "SigIgn" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        text = out.read_text()
        assert text.startswith("base extra\n")
        ignored = int(text.split("SigIgn:")[1].split()[0], 16)
        assert not ignored & (1 << (signal.SIGPIPE - 1))  # Python's SIG_IGN for SIGPIPE was reset
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    missing = plan([str(tmp_path / "nope")], dict(os.environ))
    assert missing.executable is None
    with pytest.raises(FileNotFoundError):
        launch(missing, devnull, devnull, devnull)
    with_cwd = plan(["pwd"], dict(os.environ), cwd=str(tmp_path))
    assert with_cwd.method == "popen"
    r, w = os.pipe()
    pid = launch(with_cwd, devnull, w, w)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 4096).decode().strip() == str(tmp_path)
    os.close(r)
    os.close(devnull)


def test_sentinel_ends_listed_groups_on_eof_and_nothing_else() -> None:
    listed = subprocess.Popen(["sleep", "100"], start_new_session=True)
    exited = subprocess.Popen(["sleep", "100"], start_new_session=True)
    bystander = subprocess.Popen(["sleep", "100"], start_new_session=True)
    sentinel = Sentinel(grace=1.0)
    sentinel.start()
    try:
        sentinel.add(listed.pid, "listed")
        sentinel.add(exited.pid, "exited")
        sentinel.remove(exited.pid)
        sentinel.flush()
        time.sleep(0.3)  # let it read and record identities
        os.close(sentinel._w)  # what the kernel does when the supervisor dies  # type: ignore[arg-type]
        sentinel._w = None
        assert listed.wait(timeout=20) == -signal.SIGTERM
        assert exited.poll() is None and bystander.poll() is None
        os.waitpid(sentinel.pid, 0)  # type: ignore[arg-type]
    finally:
        for p in (listed, exited, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_spec_dump_is_compact_and_never_rewrites_an_unchanged_file(tmp_path: Path) -> None:
    spec = Spec("big", tuple(Program(f"p{i}", ("sleep", "1")) for i in range(500)))
    text = dumps_spec(spec)
    assert "backoff" not in text and "stop_grace" not in text  # defaults are not written out
    assert len(text.splitlines()) < 8 * 500
    tuned = Spec("t", (Program("p", ("x",), backoff=Backoff(crashloop_restarts=4), stop_grace=3.0),))
    tuned_text = dumps_spec(tuned)
    assert "crashloop_restarts = 4" in tuned_text and "min_uptime" not in tuned_text
    path = tmp_path / "spec.toml"
    dump_spec(spec, path)
    assert load_spec(path) == spec
    before = path.stat().st_mtime_ns
    inode = path.stat().st_ino
    time.sleep(0.01)
    dump_spec(load_spec(path), path)  # start → save_spec of the same spec
    assert path.stat().st_mtime_ns == before and path.stat().st_ino == inode
    path.write_text(path.read_text() + "# a comment the user wrote\n")
    dump_spec(load_spec(path), path)
    assert "# a comment the user wrote" in path.read_text()  # hand edits survive a start


def test_sentinel_is_a_minimal_interpreter() -> None:
    """The sentinel is a separate minimal interpreter (python -I -S): a few MiB, no daemonkit imports."""
    sentinel = Sentinel(grace=1.0)
    pid = sentinel.start()
    try:
        proc = psutil.Process(pid)
        # Started with -I -S and importing only sentinel_main (not daemonkit, not psutil on Linux).
        cmdline = proc.cmdline()
        assert "-I" in cmdline and "-S" in cmdline and any("import sentinel_main" in a for a in cmdline)
        time.sleep(0.5)
        assert proc.memory_full_info().uss < 12 * 1024 * 1024
    finally:
        sentinel.close()
        os.waitpid(pid, 0)
