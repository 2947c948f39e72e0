"""The supervisor engine: one per home, holding its lock, running the spec's programs.

Event-driven throughout: deaths arrive through a child watcher (a pidfd per program on Linux, kqueue
on macOS, SIGCHLD elsewhere; see ``watch.py``); output, readiness messages and control requests arrive
on file descriptors; timers exist only for pending backoffs, readiness deadlines, stop graces and the
coalesced state write. Per-event work is a dict lookup and the program's own handling, independent of
how many programs run. A forked sentinel (``proc/sentinel.py``) ends the programs if the supervisor
is killed; a new supervisor ends, by identity, programs a previous one recorded and left behind.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from typing import Any, Callable, Iterator

from .. import __version__
from ..errors import AlreadyRunningError
from ..paths import Home
from ..proc.identity import ProcessIdentity, terminate_tree, create_time as process_create_time
from ..proc.sentinel import Sentinel
from ..spec import Spec
from ..store.events import EventLog
from ..store.lock import SupervisorLock
from ..store.records import read_state, write_pid_record, write_state_streamed
from .control import ControlServer
from .loop import Loop
from .program import SETTLED_FAILED, UP_STATES, ProgramRunner
from .readiness import notify_systemd
from .watch import ChildWatcher, make_watcher

if sys.platform == "win32":  # the same engine on Windows parts (see winloop.py, winprogram.py)
    from .winloop import WinControlServer as ControlServer, WinLoop as Loop, make_win_watcher as make_watcher  # noqa: F811
    from .winprogram import WinProgramRunner as ProgramRunner  # noqa: F811

ORPHAN_SWEEP_DELAY = 0.05  # one children listing for all programs that exited within this window
STATE_FLUSH_DELAY = 0.02  # coalesce bursts of changes into one state.json write
LOCK_RETRY = 0.5  # a `status` probe may hold the lock for an instant; don't mistake it for a rival


class Engine:
    def __init__(self, spec: Spec, home: Home, *, backend: str = "detached") -> None:
        self.spec = spec
        self.home = home
        self.backend = backend
        self.loop = Loop()
        self.events = EventLog(home.events_file)
        self.events.defer_writes(self.loop.call_soon)  # ledger lines are written after the loop turn
        self.lock = SupervisorLock(home.lock_file)
        self.rng = random.Random()
        self.base_env = dict(os.environ)
        self.base_env.pop("NOTIFY_SOCKET", None)  # the supervisor's own manager socket is not the programs'
        self.root_str = str(home.path.parent)
        self.devnull = os.open(os.devnull, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        self.runners: dict[str, ProgramRunner] = {}
        self._sorted_runners: list[tuple[str, ProgramRunner]] | None = None  # state.json's order, made once
        self._by_pid: dict[int, ProgramRunner] = {}
        self.watcher: ChildWatcher | None = None
        self.sentinel: Sentinel | None = None
        self.strays = 0
        self._pool: Any = None  # concurrent.futures.ThreadPoolExecutor, created on first use
        self._flush_timer: Any = None
        self._sweep_timer: Any = None
        self._sweep_names: set[str] = set()
        self._waiters: list[tuple[Callable[[], dict[str, Any] | None], Callable[[dict[str, Any]], None]]] = []
        self._shutting_down = False
        self._announced_ready = False
        self._checks_pending = False
        self._sentinel_flush_pending = False
        self.exit_code = 0
        self.control: ControlServer | None = None
        self.identity = ProcessIdentity.current()
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle
    def acquire(self) -> None:
        record = {"pid": self.identity.pid, "create_time": self.identity.create_time, "home": str(self.home.path),
                  "version": __version__}
        deadline = time.monotonic() + LOCK_RETRY
        while not self.lock.acquire(record):
            if time.monotonic() >= deadline:
                raise AlreadyRunningError(
                    f"daemon {self.spec.name!r} is already running", "another supervisor holds its lock",
                    f"daemonkit status {self.spec.name}")
            time.sleep(0.02)

    def run(self) -> int:
        """Run until shut down. Returns the supervisor's exit code (0 after a requested shutdown)."""
        self.acquire()
        try:
            # Forked first, while the process has no threads and few descriptors.
            self._start_sentinel()
            _raise_fd_limit()
            _become_subreaper()
            write_pid_record(self.home.pid_file, pid=self.identity.pid, create_time=self.identity.create_time,
                             argv=sys.argv, version=__version__, backend=self.backend)
            self.events.emit("supervisor-start", None, self.identity.pid, version=__version__, backend=self.backend,
                             programs=len(self.spec.programs))
            self.events.flush()  # opens the ledger now, before the programs take the descriptors
            self._end_orphans()
            self.control = ControlServer(self.home.control_socket, self.loop, self.handle_request,
                                         on_refused=self._control_refused)
            self.watcher = make_watcher(self.loop, self._on_stray)
            if self.sentinel is not None and self.sentinel.pid is not None:
                self.watcher.watch(self.sentinel.pid, self._on_sentinel_exit)
            for signum in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", signal.SIGTERM)):
                self.loop.add_signal_handler(signum, lambda s=signum: self.shutdown(f"signal {signal.Signals(s).name}"))
            for program in self.spec.programs:
                self.runners[program.name] = ProgramRunner(self, program)
            for runner in self.runners.values():
                if runner.program.autostart:
                    runner.start("supervisor start")
            self.flush_state()
            self._check_announce()
            self.loop.run()
            return self.exit_code
        finally:
            self._cleanup()

    def shutdown(self, reason: str = "shutdown requested") -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        notify_systemd("STOPPING=1")
        for runner in self.runners.values():
            runner.stop(reason)  # every program gets its stop signal now: graces run in parallel
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._shutting_down and all(r.pid is None for r in self.runners.values()):
            self._sweep_orphans()  # now, not after the delay: the loop ends here
            self.loop.stop()

    def _cleanup(self) -> None:
        for runner in self.runners.values():
            runner.close()
        self._stop_sentinel()
        if self.watcher is not None:
            self.watcher.close()
        if self.control is not None:
            self.control.close()
        if self.lock.held:
            if self.runners:
                self.flush_state(final=True)
            self.events.emit("supervisor-stop", None, self.identity.pid, exit_code=self.exit_code)
            try:
                os.unlink(self.home.pid_file)
            except OSError:
                pass
            self.lock.release()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.events.close()
        self.loop.close()
        os.close(self.devnull)

    # ------------------------------------------------------------------ children
    def register_pid(self, runner: ProgramRunner) -> None:
        pid = runner.pid
        assert pid is not None and self.watcher is not None
        self._by_pid[pid] = runner
        if self.sentinel is not None:
            self.sentinel.add(pid, runner.name)
            self._schedule_sentinel_flush()
        # ``before_reap`` runs while the exited leader is a zombie: its group id is still reserved, so
        # sweeping the group cannot hit a stranger.
        self.watcher.watch(pid, runner.on_exit, runner.kill_leftovers)

    def sweep_orphans_of(self, runner: ProgramRunner) -> None:
        """End, shortly, the adopted orphans this program left behind when its main process exited."""
        self._sweep_names.add(runner.name)
        if self._sweep_timer is None:
            self._sweep_timer = self.loop.call_later(ORPHAN_SWEEP_DELAY, self._sweep_orphans)

    def _sweep_orphans(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        names, self._sweep_names = self._sweep_names, set()
        if not names:
            return
        for orphan in self.adopted_children():
            name = _program_of(orphan)
            runner = self.runners.get(name) if name in names else None
            if runner is None:
                continue
            try:
                if runner.started_after(process_create_time(orphan)):
                    continue  # forked by the program's new run: not a leftover
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile, or /proc cannot tell: left alone
            try:
                os.kill(orphan, signal.SIGKILL)  # our unreaped child: the pid cannot be recycled
            except OSError:
                pass

    def adopted_children(self) -> list[int]:
        """Our children that we did not spawn as programs: orphans re-parented to us (we are a
        subreaper). Linux only (``/proc/self/task/*/children``)."""
        if not sys.platform.startswith("linux"):
            return []
        known = self._by_pid  # looked up, not copied
        sentinel = self.sentinel.pid if self.sentinel is not None else None
        found: list[int] = []
        try:
            for tid in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{tid}/children") as f:
                    for word in f.read().split():
                        pid = int(word)
                        if pid not in known and pid != sentinel:
                            found.append(pid)
        except OSError:
            return []
        return found

    def unregister_pid(self, pid: int) -> None:
        self._by_pid.pop(pid, None)
        if self.sentinel is not None:
            self.sentinel.remove(pid)
            self._schedule_sentinel_flush()

    def _schedule_sentinel_flush(self) -> None:
        if not self._sentinel_flush_pending:
            self._sentinel_flush_pending = True
            self.loop.call_soon(self._flush_sentinel)

    def _flush_sentinel(self) -> None:
        self._sentinel_flush_pending = False
        if self.sentinel is not None:
            self.sentinel.flush()

    def _on_stray(self, pid: int, returncode: int) -> None:
        # A double-forked grandchild re-parented to us (we are a subreaper) exited: reaped, counted.
        self.strays += 1

    def _start_sentinel(self) -> None:
        if sys.platform == "win32" or os.environ.get("DAEMONKIT_NO_SENTINEL"):
            return  # Windows: the job object with KILL_ON_JOB_CLOSE does this job
        self.sentinel = Sentinel(grace=min(self.spec.max_stop_grace, 10.0), events_path=str(self.home.events_file))
        try:
            self.sentinel.start()
        except OSError as exc:
            self.events.emit("sentinel-lost", None, None, error=exc.strerror or str(exc))
            self.sentinel = None

    def _on_sentinel_exit(self, pid: int, returncode: int) -> None:
        sentinel = self.sentinel
        if sentinel is None or self._shutting_down:
            return
        sentinel.lost()
        self.events.emit("sentinel-lost", None, pid, returncode=returncode, action="restarted")
        live = {r.pid: r.name for r in self.runners.values() if r.pid is not None}
        try:
            new_pid = sentinel.start(live)
        except OSError as exc:
            self.events.emit("sentinel-lost", None, None, error=exc.strerror or str(exc))
            self.sentinel = None
            return
        assert self.watcher is not None
        self.watcher.watch(new_pid, self._on_sentinel_exit)

    def _stop_sentinel(self) -> None:
        sentinel = self.sentinel
        if sentinel is None:
            return
        self.sentinel = None
        sentinel.close()  # EOF: the sentinel ends anything still listed, then exits
        if sentinel.pid is None:
            return
        if self.watcher is not None:
            self.watcher.forget(sentinel.pid)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(sentinel.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            time.sleep(0.002)

    def _end_orphans(self) -> None:
        """Programs recorded by a previous supervisor that died without stopping them are ended, by
        identity only (a recycled pid is left alone), all in parallel."""
        previous = read_state(self.home.state_file)
        if previous.data is None:
            return
        survivors: list[tuple[str, ProcessIdentity]] = []
        for name, entry in previous.data.get("programs", {}).items():
            identity = ProcessIdentity.from_record(entry) if isinstance(entry, dict) else None
            if identity is None:
                continue
            if identity.is_alive():
                survivors.append((str(name), identity))
            else:
                self.events.emit("orphan-gone", str(name), identity.pid)
        if not survivors:
            return
        grace = min(self.spec.max_stop_grace, 10.0)
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(survivors))) as pool:
            results = list(pool.map(lambda item: terminate_tree(item[1], grace=grace), survivors))
        for (name, identity), gone in zip(survivors, results):
            self.events.emit("orphan-ended", name, identity.pid, clean=gone)

    def pool(self) -> Any:
        """Worker threads for tcp/http readiness checks (a slow connect must not stall the loop);
        created, and concurrent.futures imported, only when a program has such a check."""
        if self._pool is None:
            import concurrent.futures

            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="readiness")
        return self._pool

    # ------------------------------------------------------------------ state
    def on_state_change(self, runner: ProgramRunner) -> None:
        self.mark_dirty()
        # The checks below look at every program: run them once per loop turn, not once per change
        # (starting 1000 programs would otherwise cost 1000 x 1000 steps).
        if not self._checks_pending and (self._waiters or not self._announced_ready or self._shutting_down):
            self._checks_pending = True
            self.loop.call_soon(self._run_checks)

    def _run_checks(self) -> None:
        self._checks_pending = False
        if self._waiters:
            self._check_waiters()
        if not self._announced_ready:
            self._check_announce()
        if self._shutting_down:
            self._maybe_finish()

    def mark_dirty(self) -> None:
        if self._flush_timer is None:
            self._flush_timer = self.loop.call_later(STATE_FLUSH_DELAY, self.flush_state)

    def flush_state(self, final: bool = False) -> None:
        self._flush_timer = None
        try:
            # Streamed, a program at a time: the whole document at once is ~1 MiB of heap at N = 500.
            if self._sorted_runners is None or len(self._sorted_runners) != len(self.runners):
                self._sorted_runners = sorted(self.runners.items())
            write_state_streamed(self.home.state_file, self._snapshot_head(final),
                                 ((name, runner.snapshot) for name, runner in self._sorted_runners))
        except OSError as exc:
            # A full disk must not take the supervisor down; the live state stays available over the
            # control socket, and the next change retries the write.
            self.events.emit("log-write-failed", None, None, file="state.json", error=exc.strerror or str(exc))

    def snapshot(self, final: bool = False) -> dict[str, Any]:
        state = self._snapshot_head(final)
        updated_at = state.pop("updated_at")  # keep the document's key order: programs, then updated_at
        state["programs"] = {name: runner.snapshot() for name, runner in self.runners.items()}
        state["updated_at"] = updated_at
        return state

    def _state_for_reply(self) -> Any:
        """The snapshot for a control answer. POSIX answers are encoded a piece at a time
        (``control.encode_reply``), so they get the live view: one program's dict at a time instead of
        N of them at once (~0.5 MiB of heap kept after one answer at N = 500). Windows gets the dict."""
        return self.snapshot() if sys.platform == "win32" else _LiveState(self)

    def _snapshot_head(self, final: bool) -> dict[str, Any]:
        """The snapshot without its "programs"."""
        return {
            "name": self.spec.name,
            "supervisor": {
                "pid": self.identity.pid,
                "create_time": self.identity.create_time,
                "state": "stopped" if final else ("stopping" if self._shutting_down else "running"),
                "started_at": self.started_at,
                "version": __version__,
                "backend": self.backend,
            },
            "updated_at": time.time(),
        }

    def _check_announce(self) -> None:
        if all(_settled(r) for r in self.runners.values() if r.program.autostart):
            self._announced_ready = True
            self.events.emit("supervisor-ready", None, self.identity.pid)
            notify_systemd(f"READY=1\nMAINPID={os.getpid()}\nSTATUS={self._status_line()}")

    def _status_line(self) -> str:
        up = sum(1 for r in self.runners.values() if r.state in UP_STATES)
        return f"{up}/{len(self.runners)} programs up"

    # ------------------------------------------------------------------ control requests
    def _control_refused(self, why: str) -> None:
        self.events.emit("control", None, None, refused=why)
        self.events.flush()  # written before the client sees its refusal or its hang-up

    def handle_request(self, request: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
        def reply(answer: dict[str, Any]) -> None:
            self.events.flush()  # a client that reads the ledger after our answer finds what led to it
            send(answer)

        op = request.get("op")
        name = request.get("program")
        if op == "status":
            reply({"ok": True, "state": self._state_for_reply()})
            return
        if op == "shutdown":
            self.events.emit("control", None, None, op="shutdown")
            reply({"ok": True, "stopping": [r.name for r in self.runners.values() if r.pid is not None]})
            self.shutdown("shutdown requested")
            return
        if op not in ("start", "stop", "restart", "wait"):
            reply({"ok": False, "error": f"unknown op {op!r}"})
            return
        if name is not None and name not in self.runners:
            reply({"ok": False, "error": f"no program named {name!r} (known: {', '.join(self.runners)})"})
            return
        if self._shutting_down:
            reply({"ok": False, "error": "the supervisor is shutting down"})
            return
        if name:
            targets = [self.runners[name]]
        elif op == "wait":
            targets = [r for r in self.runners.values() if r.program.autostart]
        else:
            targets = list(self.runners.values())
        if op != "wait":
            self.events.emit("control", name, None, op=op)
        for runner in targets:
            if op == "start":
                runner.start("start requested")
            elif op == "stop":
                runner.stop("stop requested")
            elif op == "restart":
                runner.restart()
        want = "down" if op == "stop" else "up"
        self._waiters.append((lambda: _outcome(targets, want), reply))
        self._check_waiters()

    def _check_waiters(self) -> None:
        pending = []
        for check, reply in self._waiters:
            outcome = check()
            if outcome is None:
                pending.append((check, reply))
            else:
                outcome["state"] = self._state_for_reply()
                reply(outcome)
        self._waiters = pending


class _LiveState:
    """``Engine.snapshot()`` as (key, value) pairs made when asked for (see ``Engine._state_for_reply``)."""

    __slots__ = ("engine",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def json_items(self) -> Iterator[tuple[str, Any]]:
        head = self.engine._snapshot_head(False)
        updated_at = head.pop("updated_at")
        yield from head.items()
        yield "programs", _LivePrograms(self.engine.runners)
        yield "updated_at", updated_at


class _LivePrograms:
    __slots__ = ("runners",)

    def __init__(self, runners: dict[str, ProgramRunner]) -> None:
        self.runners = runners

    def json_items(self) -> Iterator[tuple[str, Any]]:
        return ((name, runner.snapshot()) for name, runner in self.runners.items())


def _settled(runner: ProgramRunner) -> bool:
    if runner.state == "stopped" and runner.want_up:
        return False  # about to start
    return runner.state in UP_STATES or runner.state in SETTLED_FAILED


def _outcome(targets: list[ProgramRunner], want: str) -> dict[str, Any] | None:
    """None while any target is still on its way; otherwise the answer to the request."""
    if want == "down":
        if any(r.pid is not None for r in targets):
            return None
        return {"ok": True}
    if not all(_settled(r) for r in targets):
        return None
    failed = {r.name: f"{r.state}: {r.reason}" for r in targets if r.state not in UP_STATES}
    return {"ok": not failed, "failed": failed}


def _program_of(pid: int) -> str | None:
    """The DAEMONKIT_PROGRAM a process was started with (inherited from its program), if readable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"DAEMONKIT_PROGRAM="):
                    return item.split(b"=", 1)[1].decode("utf-8", "replace")
    except OSError:
        pass
    return None


def _raise_fd_limit() -> None:
    """Each program costs a few descriptors (two pipes, two logs); 1000 programs need more than the
    usual soft limit of 1024."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass


def _become_subreaper() -> None:
    """Linux: orphaned grandchildren of our programs are reparented to us, not to init, so they stay
    in view (and reaped) instead of escaping supervision."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def run_supervisor(spec: Spec, home: Home, *, backend: str = "detached") -> int:
    engine = Engine(spec, home, backend=backend)
    return engine.run()
