"""One supervised program on Windows: the POSIX ``ProgramRunner`` with Windows process mechanics.

The state machine, restart policy, readiness and logs are the shared ones; only what touches the OS
differs:

* launch: ``winspawn.spawn_in_job`` — a hidden console, a new process group, created suspended and put
  into the program's own job (``KILL_ON_JOB_CLOSE`` + ``BREAKAWAY_OK``) before its first instruction, so
  a killed supervisor takes the whole program tree with it (the POSIX sentinel's job);
* output: the program writes into pipes read by ``OutputPump`` threads (Windows cannot select on pipes);
* stop: the program's named stop event is set (``DAEMONKIT_STOP_EVENT``; see ``daemonkit.worker``),
  and after the grace ``TerminateJobObject`` ends the tree at once (SIGKILL's role);
* the main process exited: what is left of its tree in the job is ended, like a POSIX process group
  is swept when its leader exits (a child that asked for breakaway is not in the job and survives).
"""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING, Any

from ..proc.launch import LaunchPlan
from ..proc.winjob import Job
from ..proc.winspawn import spawn_in_job
from ..proc.winstop import ENV_STOP_EVENT, StopEvent, new_name
from .program import ProgramRunner, output_pipes
from .winloop import OutputPump

if TYPE_CHECKING:
    from ..spec import Program
    from .engine import Engine


class WinProgramRunner(ProgramRunner):
    def __init__(self, engine: "Engine", program: "Program") -> None:
        self.stop_event = StopEvent(new_name(program.name))
        self.job: Job | None = None
        self._pumps: list[OutputPump] = []
        self._fresh: tuple[int, ...] = ()  # this run's pipe ends, between _output_writers and the launch
        super().__init__(engine, program)

    def _prepare(self) -> LaunchPlan:
        plan = super()._prepare()
        return plan._replace(extra_env={**plan.extra_env, ENV_STOP_EVENT: self.stop_event.name})

    def _launch(self, out_w: int, err_w: int) -> int:
        self._close_job()
        self.stop_event.reset()
        self.job = Job(kill_on_close=True, breakaway_ok=True)
        plan = self.plan
        argv = [plan.executable or plan.argv[0], *plan.argv[1:]]
        try:
            proc = spawn_in_job(argv, self.job, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                                cwd=plan.cwd, env=plan.env)
        except OSError:
            self._close_job()
            raise
        self._proc = proc  # keeps the process handle open: the pid cannot be reused before we saw the exit
        proc.returncode = 0  # the watcher reports the exit; Popen must not warn in its destructor
        return proc.pid

    def _output_writers(self) -> tuple[int, int]:
        """Fresh pipes for each run: the pump threads own the read ends and end at EOF, when the
        program's tree is gone (Windows cannot select on pipes; see OutputPump)."""
        self._fresh = output_pipes()
        return self._fresh[1], self._fresh[3]

    def _output_used(self) -> None:
        out_r, out_w, err_r, err_w = self._fresh
        self._fresh = ()
        os.close(out_w)  # the program holds its own copies now: EOF comes when its tree is gone
        os.close(err_w)
        self._pumps = [
            OutputPump(os.fdopen(out_r, "rb", buffering=0), lambda d: self._write(self.out_log, d, "out"),
                       name=f"daemonkit-out-{self.name}"),
            OutputPump(os.fdopen(err_r, "rb", buffering=0), lambda d: self._write(self.err_log, d, "err"),
                       name=f"daemonkit-err-{self.name}"),
        ]

    def _output_not_used(self) -> None:
        for fd in self._fresh:
            os.close(fd)
        self._fresh = ()

    def _write(self, log: Any, data: bytes, stream: str) -> None:
        if not log.write(data) and log.dropped_bytes == len(data):
            pid = self.pid
            self.engine.loop.call_soon_threadsafe(lambda: self.engine.events.emit(
                "log-write-failed", self.name, pid, stream=stream, error=log.last_error))

    def _drain_output(self) -> None:
        """The pumps read until EOF on their own."""

    def _close_output(self) -> None:
        # The pumps own (and close) the read ends; they end at EOF, when the program's tree is gone.
        self._pumps = []

    def _signal_group(self, sig: int) -> None:
        """Any stop signal: set the stop event (Windows has no SIGTERM; the program waits on the event)."""
        if self.pid is not None:
            self.stop_event.set()

    def _kill_after_grace(self) -> None:
        self._timer = None
        if self.pid is not None:
            self.engine.events.emit("kill", self.name, self.pid, grace=self.program.stop_grace)
            if self.job is not None:
                try:
                    self.job.terminate(1)  # the whole tree at once: Windows' SIGKILL of a group
                except Exception:  # noqa: BLE001 - the tree may be gone already
                    pass

    def kill_leftovers(self, pid: int | None = None) -> None:
        self._close_job()

    def on_exit(self, pid: int, code: int) -> None:
        self._close_job()  # KILL_ON_JOB_CLOSE: the rest of the program's tree ends with its main process
        self._proc = None
        super().on_exit(pid, code)

    def _close_job(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.close()

    def close(self) -> None:
        self._close_job()
        super().close()
        self.stop_event.close()
