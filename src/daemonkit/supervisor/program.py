"""One supervised program: its process, its state machine, its output and its readiness.

States (see docs/concepts.md): stopped, starting, running, ready, backoff, crashloop, stopping,
exited, config-error. ``running`` means up with no readiness check (it survived ``min_uptime``);
``ready`` means up and its readiness check passed.

The program's main process is our child and is reaped only by the engine, so until we reap it its pid
(and its process group, which it leads) cannot be reused: signalling ``self.pid`` before the reap is
identity-safe by construction, with no create-time lookup on the hot path.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from ..proc.identity import create_time as process_create_time
from ..proc.launch import LaunchPlan, forget_lookups, launch, plan
from ..spec import Program
from ..store.rotating import RotatingFile
from . import policy
from .readiness import NotifyListener, check_once

if TYPE_CHECKING:
    from .engine import Engine
    from .timers import Timer

UP_STATES = ("running", "ready")
# States in which a start request has an answer: up, or failed in a way that needs a human or time.
SETTLED_FAILED = ("backoff", "crashloop", "config-error", "exited", "stopped")
READ_CHUNK = 65536


class ProgramRunner:
    # One per program, N of them for the supervisor's whole life: slots instead of a __dict__ (with this
    # many attributes a dict costs ~1.2 KiB more per program; docs/benchmarks.md, Memory).
    # "__dict__" stays available for attributes added later or by a subclass (WinProgramRunner), at the
    # cost of a dict only for the instances that use one.
    __slots__ = ("engine", "program", "name", "state", "reason", "status_text", "pid", "pgid_alive", "generation",
                 "started_mono", "started_wall", "since", "restarts", "quick_deaths", "recent_starts", "last_exit",
                 "ready", "want_up", "ready_timed_out", "restart_after_stop", "_timer", "_deadline_timer",
                 "_out_fd", "_err_fd", "_out_w", "_err_w", "out_log", "err_log", "notify", "_create_time", "_create_time_gen", "plan",
                 "__dict__")

    def __init__(self, engine: "Engine", program: Program) -> None:
        self.engine = engine
        self.program = program
        self.name = program.name
        self.state = "stopped"
        self.reason = ""  # why it is in this state (human-readable)
        self.status_text = ""  # the program's own STATUS= message, if it sends one
        self.pid: int | None = None
        self.pgid_alive = False
        self.generation = 0
        self.started_mono = 0.0
        self.started_wall = 0.0
        self.since = time.time()
        self.restarts = 0
        self.quick_deaths = 0
        self.recent_starts: list[float] = []  # a deque would take a 64-slot block (~600 B) per program
        self.last_exit: dict[str, Any] | None = None
        self.ready = False
        self.want_up = False
        self.ready_timed_out = False
        self.restart_after_stop = False
        self._timer: "Timer | None" = None
        self._deadline_timer: "Timer | None" = None
        self._out_fd: int | None = None  # read ends of the output pipes (see _output_writers)
        self._err_fd: int | None = None
        self._out_w: int | None = None
        self._err_w: int | None = None
        home = engine.home
        self.out_log = RotatingFile(home.program_log_name(self.name, "out"), program.logs.max_bytes, program.logs.backups)
        self.err_log = RotatingFile(home.program_log_name(self.name, "err"), program.logs.max_bytes, program.logs.backups)
        self.notify: NotifyListener | None = None
        self._create_time: float | None = None
        self._create_time_gen = -1
        if program.ready is not None and program.ready.kind == "notify":
            self.notify = NotifyListener(engine.home.notify_socket(self.name))
            engine.loop.add_reader(self.notify.fileno(), self._on_notify)
        self.plan = self._prepare()

    # ------------------------------------------------------------------ preparation (once, not per restart)
    def _prepare(self) -> LaunchPlan:
        env = dict(self.program.env)
        if self.notify is not None:
            env["NOTIFY_SOCKET"] = str(self.notify.path)
        env["DAEMONKIT_PROGRAM"] = self.name
        env["DAEMONKIT_HOME"] = self.engine.root_str
        return plan(self.program.argv, self.engine.base_env, self.program.cwd, env)

    # ------------------------------------------------------------------ requests
    def start(self, reason: str = "start requested") -> None:
        """Explicit start: clears crash-loop, backoff and config-error holds."""
        self.want_up = True
        if self.pid is not None:
            if self.state == "stopping":
                self.restart_after_stop = True
            return
        self._cancel_timer()
        self.quick_deaths = 0
        self.recent_starts.clear()
        self._spawn(reason)

    def stop(self, reason: str = "stop requested") -> None:
        self.want_up = False
        self.restart_after_stop = False
        self._cancel_timer()
        self._cancel_deadline()
        if self.pid is None:
            if self.state != "stopped":
                self._set_state("stopped", reason)
            return
        if self.state == "stopping":
            return
        self._set_state("stopping", reason)
        self._signal_group(self.program.signal_number)
        self.engine.events.emit("stop", self.name, self.pid, reason=reason)
        self._timer = self.engine.loop.call_later(self.program.stop_grace, self._kill_after_grace)

    def restart(self) -> None:
        if self.pid is None:
            self.start("restart requested")
            return
        self.engine.events.emit("restart", self.name, self.pid)
        self.stop("restart requested")
        self.want_up = True
        self.restart_after_stop = True

    # ------------------------------------------------------------------ spawning
    def _spawn(self, reason: str) -> None:
        self.generation += 1
        self.ready = False
        self.ready_timed_out = False
        now = time.monotonic()
        self.recent_starts.append(now)
        if self.plan.executable is None:
            # Looked up again each time: the executable may have been (re)installed meanwhile.
            forget_lookups()
            self.plan = self._prepare()
            if self.plan.executable is None:
                self._spawn_failed(f"executable not found: {self.program.argv[0]!r}")
                return
        try:
            # Inside the try: at the descriptor limit (EMFILE) the pipes themselves fail, and that must
            # be a failed spawn (retried with backoff), not an exception that ends the supervisor.
            out_w, err_w = self._output_writers()
            pid = self._launch(out_w, err_w)
        except OSError as exc:
            self._output_not_used()
            if isinstance(exc, FileNotFoundError):
                forget_lookups()
                self.plan = self._prepare()  # it vanished: forget the stale path
            self._spawn_failed(f"cannot start {self.program.argv[0]!r}: {exc.strerror or exc}")
            return
        self.pid = pid
        self.pgid_alive = True
        self.started_mono = now
        self.started_wall = time.time()
        self.engine.register_pid(self)
        self._output_used()
        self.engine.events.emit("spawn", self.name, self.pid, reason=reason)
        self._set_state("starting", reason)
        self._arm_readiness()

    def _launch(self, out_w: int, err_w: int) -> int:
        """The OS step of a spawn (Windows overrides it: winprogram.py)."""
        return launch(self.plan, self.engine.devnull, out_w, err_w)

    def _spawn_failed(self, why: str) -> None:
        self.engine.events.emit("spawn-failed", self.name, None, reason=why)
        self.last_exit = {"code": None, "signal": None, "at": time.time(), "error": why}
        self._after_death(returncode=127, signalled=False, uptime=0.0, why=why)

    # ------------------------------------------------------------------ output
    def _output_writers(self) -> tuple[int, int]:
        """The write ends that become the program's stdout and stderr.

        POSIX: two pipes made at the first spawn and kept, write ends included, for every later run of
        the program. A restart then creates no pipe and changes nothing in the selector, and a dying
        program wakes the supervisor once (its exit), not also for EOF on its pipes just before. Output
        of children it left behind still reaches its logs. (Windows overrides this: winprogram.py.)
        """
        if self._out_fd is None or self._err_fd is None:
            out_r, out_w, err_r, err_w = output_pipes()
            for fd in (out_r, err_r):
                os.set_blocking(fd, False)
            self._out_fd, self._out_w, self._err_fd, self._err_w = out_r, out_w, err_r, err_w
            self.engine.loop.add_reader(out_r, self._pump_out)
            self.engine.loop.add_reader(err_r, self._pump_err)
        assert self._out_w is not None and self._err_w is not None
        return self._out_w, self._err_w

    def _output_used(self) -> None:
        """After a successful launch (the pipes stay as they are on POSIX)."""

    def _output_not_used(self) -> None:
        """After a failed launch: give the pipes back. A program that cannot start may be failing for
        want of descriptors (EMFILE), and four idle ones per retrying program would starve the rest
        of the supervisor (its control socket's accept first)."""
        self._drain_output()
        self._close_output()

    def _pump_out(self) -> None:
        self._pump(self._out_fd, self.out_log, "out")

    def _pump_err(self) -> None:
        self._pump(self._err_fd, self.err_log, "err")

    def _pump(self, fd: int | None, log: RotatingFile, stream: str) -> bool:
        """Move one chunk from the pipe to the log. Returns False when there was nothing to read."""
        if fd is None:
            return False
        # One bounded read per wakeup: a flooding program gets its turn like everyone else and
        # never starves the restarts of others.
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            # EOF (every write end closed) or a broken pipe: stop reading it; the next spawn makes a new one.
            self._close_output()
            return False
        if not log.write(data) and log.dropped_bytes == len(data):
            self.engine.events.emit("log-write-failed", self.name, self.pid, stream=stream, error=log.last_error)
        return True

    def _drain_output(self) -> None:
        """Read what the program wrote before it ended (a stop's last lines), bounded: a program's
        leftover child may still be writing."""
        for _ in range(64):
            if not (self._pump(self._out_fd, self.out_log, "out") | self._pump(self._err_fd, self.err_log, "err")):
                return

    def _close_output(self) -> None:
        for fd in (self._out_fd, self._err_fd):
            if fd is not None:
                self.engine.loop.remove_reader(fd)
        for fd in (self._out_fd, self._out_w, self._err_fd, self._err_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._out_fd = self._out_w = self._err_fd = self._err_w = None

    # ------------------------------------------------------------------ readiness
    def _arm_readiness(self) -> None:
        ready = self.program.ready
        generation = self.generation
        if ready is None:
            # No check: "up" means it survived min_uptime, so a program that dies on import is never
            # reported as started.
            delay = min(self.program.backoff.min_uptime, 1.0)
            self._timer = self.engine.loop.call_later(delay, lambda: self._mark_up(generation, "running", "alive after start"))
            return
        self._deadline_timer = self.engine.loop.call_later(ready.timeout, lambda: self._ready_deadline(generation))
        if ready.kind == "notify":
            return
        self._attempt(generation, 0.02)

    def _attempt(self, generation: int, delay: float) -> None:
        def run() -> None:
            if generation != self.generation or self.state != "starting":
                return
            ready = self.program.ready
            assert ready is not None
            if ready.kind == "file":
                self._attempt_done(generation, delay, *check_once(ready))
                return
            future = self.engine.pool().submit(check_once, ready)
            future.add_done_callback(lambda f: self.engine.loop.call_soon_threadsafe(
                lambda: self._attempt_done(generation, delay, *_result(f))))

        self._timer = self.engine.loop.call_later(delay, run)

    def _attempt_done(self, generation: int, delay: float, ok: bool, evidence: str) -> None:
        if generation != self.generation or self.state != "starting":
            return
        if ok:
            self._mark_up(generation, "ready", evidence)
        else:
            self.reason = f"waiting for readiness: {evidence}"
            self._attempt(generation, min(delay * 2 if delay else 0.05, 0.5))

    def _on_notify(self) -> None:
        assert self.notify is not None
        for fields in self.notify.read_messages():
            if "STATUS" in fields:
                self.status_text = fields["STATUS"][:200]
                self.engine.mark_dirty()
            if fields.get("READY") == "1" and self.state == "starting":
                self._mark_up(self.generation, "ready", "READY=1 received")

    def _ready_deadline(self, generation: int) -> None:
        if generation != self.generation or self.state != "starting":
            return
        ready = self.program.ready
        assert ready is not None
        why = f"not ready within {ready.timeout:g}s ({self.reason or ready.kind})"
        self.engine.events.emit("ready-timeout", self.name, self.pid, reason=why)
        self.ready_timed_out = True
        self.want_up = True
        self.restart_after_stop = False
        self._set_state("stopping", why)
        self._cancel_timer()
        self._signal_group(self.program.signal_number)
        self._timer = self.engine.loop.call_later(self.program.stop_grace, self._kill_after_grace)

    def _mark_up(self, generation: int, state: str, evidence: str) -> None:
        if generation != self.generation or self.state != "starting":
            return
        self._cancel_deadline()
        self.ready = True
        if state == "ready":
            self.engine.events.emit("ready", self.name, self.pid, evidence=evidence)
        self._set_state(state, evidence)

    # ------------------------------------------------------------------ death
    def on_exit(self, pid: int, code: int) -> None:
        """Called by the child watcher after it reaped our main process (``code`` < 0: killed by a signal)."""
        signalled = code < 0
        uptime = time.monotonic() - self.started_mono
        self.pid = None
        self.engine.unregister_pid(pid)
        self._cancel_timer()
        self._cancel_deadline()
        self.ready = False
        sig_name = _signal_name(-code) if signalled else None
        self.last_exit = {"code": None if signalled else code, "signal": sig_name, "at": time.time(),
                          "uptime": round(uptime, 3)}
        self.engine.events.emit("exit", self.name, pid, code=None if signalled else code, signal=sig_name,
                                uptime=round(uptime, 3))
        if self.state == "stopping" and not self.ready_timed_out:
            if self.restart_after_stop and self.want_up:
                self.restart_after_stop = False
                self.restarts += 1
                self._spawn("restart requested")
            else:
                self._set_state("stopped", "stopped on request")
            return
        why = f"exited with {'signal ' + str(sig_name) if signalled else 'code ' + str(code)} after {uptime:.2f}s"
        if self.ready_timed_out:
            why = self.reason
            signalled, code = False, 1
            uptime = 0.0  # never became ready: a quick death however long it waited, so it backs off
        self._after_death(returncode=code, signalled=signalled, uptime=uptime, why=why)

    def _after_death(self, *, returncode: int, signalled: bool, uptime: float, why: str) -> None:
        backoff = self.program.backoff
        if uptime >= backoff.min_uptime:
            self.quick_deaths = 0
        else:
            self.quick_deaths += 1
        if not self.want_up:
            self._set_state("stopped", why)
            return
        decision = policy.decide(
            self.program.restart, backoff, returncode=returncode, signalled=signalled, uptime=uptime,
            quick_deaths=self.quick_deaths, recent_starts=self.recent_starts, now=time.monotonic(),
            rng=self.engine.rng,
        )
        if decision.action == "config-error":
            self.want_up = False
            self.engine.events.emit("config-error", self.name, None, reason=why)
            self._set_state("config-error", f"{why}; fix the configuration, then start it again")
        elif decision.action == "stay-exited":
            self._set_state("exited", f"{why}; {decision.reason}")
        elif decision.action == "crashloop":
            self.engine.events.emit("crashloop", self.name, None, reason=decision.reason, retry_in=decision.delay)
            self._set_state("crashloop", f"{why}; {decision.reason}; retrying in {decision.delay:g}s")
            self._timer = self.engine.loop.call_later(decision.delay, self._retry_after_cooldown)
        elif decision.delay <= 0:
            self.restarts += 1
            self._spawn(decision.reason or why)
        else:
            self.engine.events.emit("backoff", self.name, None, delay=round(decision.delay, 3), reason=why)
            self._set_state("backoff", f"{why}; restarting in {decision.delay:.2f}s")
            self._timer = self.engine.loop.call_later(decision.delay, self._restart_after_backoff)

    def _restart_after_backoff(self) -> None:
        self._timer = None
        if self.want_up and self.pid is None:
            self.restarts += 1
            self._spawn("restart after backoff")

    def _retry_after_cooldown(self) -> None:
        self._timer = None
        if self.want_up and self.pid is None:
            self.quick_deaths = 0
            self.recent_starts.clear()
            self.restarts += 1
            self._spawn("retry after crash-loop cooldown")

    def _kill_after_grace(self) -> None:
        self._timer = None
        if self.pid is not None:
            self.engine.events.emit("kill", self.name, self.pid, grace=self.program.stop_grace)
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: int) -> None:
        """Signal the program's process group. Only called while ``self.pid`` is unreaped (see module doc)."""
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, sig)
            if sig != signal.SIGKILL:
                # A suspended (SIGSTOP'd) program would hold its stop signal pending until the grace
                # ran out; continue it so it can act on it now (as systemd does).
                os.killpg(self.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(self.pid, sig)
            except OSError:
                pass

    def kill_leftovers(self, pid: int | None = None) -> None:
        """The main process has exited but is not reaped yet, so its group id is still reserved:
        end whatever else is left in the group (double-forked children), as systemd does with a
        service's cgroup when its main process exits."""
        if self.pid is not None and sys.platform != "win32":
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
            # Adopted orphans (a double fork with setsid() leaves the group, but as a subreaper we
            # adopted the grandchild) are swept a moment later, once for every program that exited
            # meanwhile: listing our children reads one entry per program, an O(N) cost that must not
            # sit on every restart's path.
            self.engine.sweep_orphans_of(self)

    def started_after(self, create_time: float) -> bool:
        """Whether the program's current run started at or after ``create_time`` (a process it forked
        then belongs to this run, not to one that exited). Same-tick starts count as this run's."""
        started = self.run_create_time()
        return started is not None and started <= create_time

    def run_create_time(self) -> float | None:
        """The create time of the current run's main process (None when not running or unreadable);
        read from /proc once per run."""
        if self.pid is None:
            return None
        if self._create_time_gen != self.generation:
            try:
                # Our unreaped child: the pid is this program's, no identity re-check needed.
                self._create_time = process_create_time(self.pid)
                self._create_time_gen = self.generation
            except ProcessLookupError:
                self._create_time = None
                self._create_time_gen = self.generation
            except OSError:
                self._create_time = None  # out of descriptors (EMFILE): retried next time
        return self._create_time

    # ------------------------------------------------------------------ bookkeeping
    def _set_state(self, state: str, reason: str = "") -> None:
        self.state = state
        self.reason = reason
        self.since = time.time()
        self.engine.on_state_change(self)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cancel_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def snapshot(self) -> dict[str, Any]:
        create_time = self.run_create_time()  # off the restart path: snapshots are coalesced
        return {
            "state": self.state,
            "reason": self.reason,
            "status_text": self.status_text,
            "pid": self.pid,
            "create_time": create_time,
            "pgid": self.pid,
            "ready": self.ready,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "since": self.since,
            "started_at": self.started_wall if self.pid is not None else None,
            "autostart": self.program.autostart,
        }

    def close(self) -> None:
        self._drain_output()
        self._close_output()
        self.out_log.close()
        self.err_log.close()
        if self.notify is not None:
            self.engine.loop.remove_reader(self.notify.fileno())
            self.notify.close()


def output_pipes() -> tuple[int, int, int, int]:
    """Two pipes, stdout's and stderr's: ``(out_r, out_w, err_r, err_w)``; none left open on failure
    (EMFILE half-way)."""
    out_r, out_w = os.pipe()
    try:
        err_r, err_w = os.pipe()
    except OSError:
        os.close(out_r)
        os.close(out_w)
        raise
    return out_r, out_w, err_r, err_w


def _result(future: Any) -> tuple[bool, str]:
    try:
        return future.result()
    except Exception as exc:  # a check must never take the loop down
        return False, f"check failed: {exc}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
