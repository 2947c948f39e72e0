"""The library layer behind every CLI command: plain functions that return result objects.

Nothing here prints. Host apps call these directly to build their own UI; ``daemonkit.cli`` renders
their results. Errors are ``DaemonkitError``s whose message says what failed, why and what to do.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import AlreadyRunningError, DaemonkitError, NotInstalledError, NotRunningError
from .paths import Home, root_dir
from .spec import Spec, dump_spec, load_spec, validate_name

STATUS_SCHEMA = "daemonkit.status/1"
START_MARGIN = 10.0  # seconds on top of the slowest readiness timeout
STOP_MARGIN = 5.0


# ------------------------------------------------------------------------------------------ locating


def home_of(name: str, app: str = "daemonkit") -> Home:
    """The home of daemon ``name``: the user-scope home, or the system-scope one if only that exists."""
    validate_name(name, source="<command line>", key="NAME")
    user = Home.for_spec_name(name, app, "user")
    if user.exists():
        return user
    system = Home.for_spec_name(name, app, "system")
    try:
        if system.path != user.path and system.exists():
            return system
    except OSError:
        pass
    return user


def home_for_spec(spec: Spec) -> Home:
    """The home of ``spec``: under its app's own state dir (platformdirs) and scope, or ``DAEMONKIT_HOME``."""
    return Home.for_spec_name(spec.name, spec.app, spec.scope)


def load_installed(name: str, app: str = "daemonkit") -> tuple[Spec, Home]:
    home = home_of(name, app)
    if not home.spec_file.exists():
        known = ", ".join(d.name for d in _known_homes(app)) or "none yet"
        raise NotInstalledError(f"no daemon named {name!r}", f"{home.spec_file} does not exist (known: {known})",
                                f"daemonkit add {name} -- COMMAND ARGS..., or daemonkit demo")
    from .paths import check_private_file

    check_private_file(home.spec_file)
    return load_spec(home.spec_file), home


def save_spec(spec: Spec, home: Home | None = None) -> Home:
    """Write ``spec`` into its home (created 0700 if needed) as ``spec.toml``; returns the home."""
    home = (home or home_for_spec(spec)).ensure()
    if not _same_spec(home, spec):
        dump_spec(spec, home.spec_file, cache=home.spec_cache)
    return home


def _known_homes(app: str = "daemonkit") -> list[Home]:
    root = root_dir(app, "user")
    try:
        return sorted((Home(p) for p in root.iterdir() if (p / "spec.toml").exists()), key=lambda h: h.name)
    except OSError:
        return []


# ------------------------------------------------------------------------------------------ status


@dataclass
class ProgramStatus:
    name: str
    state: str
    reason: str = ""
    pid: int | None = None
    ready: bool = False
    restarts: int = 0
    since: float | None = None
    last_exit: dict[str, Any] | None = None
    status_text: str = ""

    def to_json(self) -> dict[str, Any]:
        data = dict(vars(self))
        if isinstance(self.last_exit, dict):
            data["last_exit"] = dict(self.last_exit)
        return data


@dataclass
class DaemonStatus:
    """What ``status`` reports. ``source`` tells where it came from: ``live`` (asked the running
    supervisor), ``files`` (the supervisor is gone; last recorded state) or ``none`` (never ran)."""

    name: str
    home: str
    running: bool
    source: str
    supervisor_pid: int | None = None
    supervisor_started_at: float | None = None
    backend: str = ""
    programs: list[ProgramStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.running and all(p.state in ("running", "ready") for p in self.programs if p.state != "stopped")

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies value by value (30 ms at 1000 programs, on every
        # `status --json` and `status --deep`); the fields are plain values, last_exit a flat dict.
        data = dict(vars(self))
        data["programs"] = [p.to_json() for p in self.programs]
        data["problems"] = list(self.problems)
        data["schema"] = STATUS_SCHEMA
        data["version"] = __version__
        data["healthy"] = self.healthy
        return data


def status(name: str, app: str = "daemonkit") -> DaemonStatus:
    spec, home = load_installed(name, app)
    return status_of(spec, home)


def status_of(spec: Spec, home: Home) -> DaemonStatus:
    """The daemon's state: asked from the live supervisor when it runs, else read from its records, with
    every inconsistency (stale pid record, orphaned programs, unreadable files) listed in ``problems``."""
    from .proc.identity import ProcessIdentity
    from .store.lock import probe_lock
    from .store.records import read_pid_record, read_state
    from .supervisor.control import ControlError, request

    problems: list[str] = []
    lock = probe_lock(home.lock_file)
    if lock.held:
        try:
            answer = request(home.control_socket, {"op": "status"}, timeout=3.0)
            if answer.get("ok"):
                return _status_from_state(spec, home, answer["state"], running=True, source="live")
            problems.append(f"the supervisor refused the status request: {answer.get('error')}")
        except ControlError as exc:
            problems.append(f"the supervisor holds the lock but its control socket failed: {exc}")
    state = read_state(home.state_file)
    if state.problem:
        problems.append(f"state.json unusable ({state.problem}); the next supervisor rewrites it")
    pid = read_pid_record(home.pid_file)
    if pid.problem:
        problems.append(f"supervisor.pid unusable ({pid.problem})")
    elif pid.data is not None and not lock.held:
        from .proc.identity import liveness

        recorded = ProcessIdentity(pid.data["pid"], float(pid.data["create_time"]))
        problems.append(f"supervisor.pid is stale: it names pid {recorded.pid}, which is {liveness(recorded)} (the supervisor "
                        f"did not exit cleanly); 'daemonkit stop {spec.name}' clears it, "
                        f"'daemonkit status {spec.name} --deep' shows every signal")
    running = lock.held
    if state.data is not None:
        result = _status_from_state(spec, home, state.data, running=running, source="files")
        if not running:
            for program in result.programs:
                identity = None
                entry = state.data["programs"].get(program.name)
                if isinstance(entry, dict):
                    identity = ProcessIdentity.from_record(entry)
                if identity is not None and identity.is_alive():
                    problems.append(f"program {program.name} (pid {identity.pid}) is still running without a "
                                    "supervisor; 'daemonkit stop' ends it")
                    program.state, program.reason = "orphaned", "its supervisor is gone"
                elif program.state not in ("stopped", "exited", "config-error"):
                    program.reason = f"was {program.state} when the supervisor stopped"
                    program.state = "stopped"
                program.pid = identity.pid if identity is not None and identity.is_alive() else None
        result.problems = problems + result.problems
        return result
    programs = [ProgramStatus(p.name, "stopped") for p in spec.programs]
    return DaemonStatus(spec.name, str(home.path), running, "none", programs=programs, problems=problems)


def _status_from_state(spec: Spec, home: Home, data: dict[str, Any], *, running: bool, source: str) -> DaemonStatus:
    sup = data.get("supervisor") or {}
    entries = data.get("programs") or {}
    programs = []
    for program in spec.programs:
        entry = entries.get(program.name)
        if not isinstance(entry, dict):
            programs.append(ProgramStatus(program.name, "stopped", "not started by this supervisor"))
            continue
        programs.append(ProgramStatus(
            name=program.name, state=str(entry.get("state", "unknown")), reason=str(entry.get("reason", "")),
            pid=entry.get("pid"), ready=bool(entry.get("ready")), restarts=int(entry.get("restarts") or 0),
            since=entry.get("since"), last_exit=entry.get("last_exit"), status_text=str(entry.get("status_text", "")),
        ))
    return DaemonStatus(
        name=spec.name, home=str(home.path), running=running, source=source,
        supervisor_pid=sup.get("pid") if running else None,
        supervisor_started_at=sup.get("started_at") if running else None,
        backend=str(sup.get("backend", "")), programs=programs,
    )


# ------------------------------------------------------------------------------------------ start / stop


@dataclass
class StartResult:
    name: str
    home: str
    supervisor_pid: int | None
    started: list[str]
    already_running: bool = False
    backend: str = "detached"
    notes: list[str] = field(default_factory=list)
    status: DaemonStatus | None = None


def start(spec: Spec, home: Home | None = None, *, program: str | None = None, timeout: float | None = None,
          save: bool = True) -> StartResult:
    """Start the daemon (or one of its programs) and return once it is ready.

    An installed daemon is started through its service manager (so the manager keeps supervising
    it); otherwise the supervisor is spawned detached. Fails with the reason and the last log lines
    when the supervisor or a program does not come up; in that case nothing is left running.
    """
    from .store.lock import probe_lock

    home = (home or home_for_spec(spec)).ensure()
    if program is not None:
        spec.program(program)  # validates the name
    lock = probe_lock(home.lock_file)
    if lock.held:
        if program is None:
            pid = (lock.record or {}).get("pid")
            raise AlreadyRunningError(f"{spec.name} is already running", f"supervisor pid {pid}",
                                      f"daemonkit restart {spec.name}, or daemonkit status {spec.name}")
        return _control_start(spec, home, program, timeout)
    if save:
        save_spec(spec, home)
    marks = LogMarks.take(spec, home)
    record = read_install_record(home)
    if record is not None and record.get("backend") not in (None, "detached"):
        return _start_with_manager(spec, home, str(record["backend"]), timeout, marks=marks)
    return start_supervisor(spec, home, timeout, marks=marks)


def _same_spec(home: Home, spec: Spec) -> bool:
    """Whether the home's spec file already says ``spec``: then it is left alone, keeping the user's
    comments and layout (rewriting it on every start lost them)."""
    try:
        # Through the home's parse cache: an unchanged file is not parsed as TOML again (~40 ms at 500
        # programs, on every start).
        return load_spec(home.spec_file, cache=home.spec_cache) == spec
    except DaemonkitError:
        return False


def _wait_budget(spec: Spec, timeout: float | None) -> float:
    if timeout is not None:
        return timeout
    slowest = max((p.ready.timeout if p.ready else p.backoff.min_uptime) for p in spec.programs)
    return slowest + START_MARGIN


def start_supervisor(spec: Spec, home: Home, timeout: float | None = None, *,
                     marks: "LogMarks | None" = None) -> StartResult:
    """Spawn the supervisor detached (no service manager) and wait until its programs are ready."""
    from .backends.base import supervisor_argv
    from .proc.spawn import spawn_detached

    marks = marks or LogMarks.take(spec, home)
    argv = supervisor_argv(home, sys.executable)
    spawned = spawn_detached(argv, log_path=home.supervisor_log, cwd=home.path)
    notes = [spawned.note] if spawned.note else []
    if spawned.breakaway is False:
        # Recorded for `status --deep`: this daemon dies with the job of whoever started it.
        from .store.events import EventLog

        ledger = EventLog(home.events_file)
        ledger.emit("breakaway-denied", None, spawned.identity.pid, note=spawned.note)
        ledger.close()
    _await_ready(spec, home, timeout, supervisor=spawned.identity, marks=marks)
    return StartResult(spec.name, str(home.path), spawned.identity.pid, [p.name for p in spec.programs if p.autostart],
                       notes=notes, status=status_of(spec, home))


def _start_with_manager(spec: Spec, home: Home, backend_name: str, timeout: float | None, *,
                        marks: "LogMarks | None" = None) -> StartResult:
    from .backends import get_backend

    marks = marks or LogMarks.take(spec, home)
    backend = get_backend(backend_name)
    try:
        backend.start(spec, home)
    except DaemonkitError as exc:
        # The manager may keep retrying a unit whose start failed (Restart=): nothing half-started.
        _stop_quietly(spec, home, None)
        exc.details = _join(exc.details, marks.program_details(spec, home))
        raise
    _await_ready(spec, home, timeout, backend=backend, marks=marks)
    status = status_of(spec, home)
    return StartResult(spec.name, str(home.path), status.supervisor_pid,
                       [p.name for p in spec.programs if p.autostart], backend=backend_name, status=status)


def _await_ready(spec: Spec, home: Home, timeout: float | None, *, supervisor: Any = None,
                 backend: Any = None, marks: "LogMarks | None" = None) -> None:
    """Wait until the supervisor answers on its control socket and its autostart programs have settled.
    On failure, stop what was started and raise with the reason and this start's log lines (not those
    of earlier runs: ``marks`` holds where each log ended before the start)."""
    from .supervisor.control import ControlError, request

    marks = marks or LogMarks.take(spec, home)
    budget = _wait_budget(spec, timeout)
    deadline = time.monotonic() + budget
    answer: dict[str, Any] | None = None
    while answer is None:
        if supervisor is not None and not supervisor.is_alive():
            _raise_if_rival(spec, home, supervisor)
            last = marks.tail(home.supervisor_log, 1).strip().removeprefix("daemonkit supervise: ")
            _stop_quietly(spec, home, None)  # programs it may have started before dying
            raise DaemonkitError(f"the supervisor of {spec.name} exited during start", last or "no output",
                                 "" if "(try:" in last else f"daemonkit logs {spec.name}",
                                 details=_join(marks.tail(home.supervisor_log, 15), marks.program_details(spec, home)))
        if home.control_socket.exists():
            try:
                answer = request(home.control_socket, {"op": "wait"}, timeout=max(0.1, deadline - time.monotonic()))
                break
            except ControlError:
                pass
        if time.monotonic() > deadline:
            via = f" (started by {backend.name})" if backend is not None else ""
            details = [marks.tail(home.supervisor_log, 15), marks.program_details(spec, home)]
            recent = getattr(backend, "recent_log", None)
            if recent is not None:  # the manager's view: did it start the supervisor at all, and why not
                details.append(recent(spec, home, since=marks.wall, lines=20))
            _stop_quietly(spec, home, supervisor)
            raise DaemonkitError(f"{spec.name} did not start in time", f"no answer within {budget:g}s{via}",
                                 f"daemonkit status {spec.name} --deep", details=_join(*details))
        time.sleep(0.005)  # the supervisor answers ~50 ms after its spawn: poll finely
    if supervisor is not None:
        holder = ((answer.get("state") or {}).get("supervisor") or {}).get("pid")
        if holder is not None and holder != supervisor.pid:
            # Another start won the race between our lock probe and our spawn: its supervisor
            # answered. Ours gives up on the lock by itself; make sure it is gone, then say so.
            _await_exit(supervisor, 5.0)
            _raise_if_rival(spec, home, supervisor)
    if answer.get("ok"):
        return
    failed = answer.get("failed") or {}
    details = []
    for name, why in failed.items():
        details.append(f"--- {name}: {why}")
        details.append(marks.tail(home.program_log(name, "err"), 10) or marks.tail(home.program_log(name, "out"), 10)
                       or "(no output from this start)")
    if not failed:
        details.append(str(answer.get("error", "")))
    _stop_quietly(spec, home, supervisor)
    first = next(iter(failed.items()), ("", answer.get("error", "unknown error")))
    raise DaemonkitError(f"{spec.name} failed to start" + (f": program {first[0]}" if first[0] else ""),
                         str(first[1]), f"daemonkit logs {spec.name}" + (f" --program {first[0]}" if first[0] else ""),
                         details="\n".join(details))


def _await_exit(identity: Any, timeout: float) -> None:
    from .proc.identity import terminate_tree

    deadline = time.monotonic() + timeout
    while identity.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if identity.is_alive():
        terminate_tree(identity, grace=2.0)


def _raise_if_rival(spec: Spec, home: Home, ours: Any) -> None:
    """Raise ``AlreadyRunningError`` when the home's lock is held by a supervisor other than ``ours``."""
    from .store.lock import probe_lock

    lock = probe_lock(home.lock_file)
    pid = (lock.record or {}).get("pid")
    if lock.held and pid != ours.pid:
        raise AlreadyRunningError(f"{spec.name} is already running", f"supervisor pid {pid} (started concurrently)",
                                  f"daemonkit restart {spec.name}, or daemonkit status {spec.name}")


def _control_start(spec: Spec, home: Home, program: str, timeout: float | None) -> StartResult:
    from .supervisor.control import ControlError, request

    try:
        answer = request(home.control_socket, {"op": "start", "program": program}, timeout=_wait_budget(spec, timeout))
    except ControlError as exc:
        raise DaemonkitError(f"cannot start program {program}", str(exc), f"daemonkit status {spec.name} --deep") from None
    if not answer.get("ok"):
        why = (answer.get("failed") or {}).get(program) or answer.get("error", "")
        raise DaemonkitError(f"program {program} of {spec.name} failed to start", str(why),
                             f"daemonkit logs {spec.name} --program {program}",
                             details=_tail(home.program_log(program, "err"), 10))
    return StartResult(spec.name, str(home.path), None, [program], already_running=True, status=status_of(spec, home))


@dataclass
class StopResult:
    name: str
    was_running: bool
    stopped: list[str]
    killed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def stop(spec: Spec, home: Home | None = None, *, program: str | None = None, timeout: float | None = None) -> StopResult:
    """Stop the daemon (or one program). Idempotent: stopping a stopped daemon succeeds, and programs
    left behind by a killed supervisor are ended too (by identity). An installed daemon is stopped
    through its service manager, which would otherwise start it again."""
    from .store.lock import probe_lock

    home = home or home_for_spec(spec)
    record = read_install_record(home)
    notes: list[str] = []
    was_running = False
    if program is None and record is not None and record.get("backend") not in (None, "detached"):
        from .backends import get_backend

        was_running = probe_lock(home.lock_file).held
        try:
            get_backend(str(record["backend"])).stop(spec, home)
        except NotInstalledError as exc:  # registration gone (removed by hand): stop what runs anyway
            notes.append(f"{exc.message}; stopping the supervisor directly")
            return _with_notes(stop_supervisor(spec, home, timeout=timeout), notes, was_running)
        notes.append(f"stopped through {record['backend']}; it starts again at the next "
                     f"{'login' if spec.scope == 'user' else 'boot'} (daemonkit uninstall {spec.name} prevents that)")
    return _with_notes(stop_supervisor(spec, home, program=program, timeout=timeout), notes, was_running)


def _with_notes(result: "StopResult", notes: list[str], was_running: bool) -> "StopResult":
    result.was_running = result.was_running or was_running
    result.notes[:0] = notes
    return result


def stop_supervisor(spec: Spec, home: Home, *, program: str | None = None, timeout: float | None = None) -> StopResult:
    """Ask the running supervisor to stop (or one program), wait for it, and end leftovers by identity."""
    from .proc.identity import ProcessIdentity, terminate_tree
    from .store.lock import probe_lock
    from .store.records import read_pid_record, read_state
    from .supervisor.control import ControlError, request

    budget = timeout if timeout is not None else spec.max_stop_grace + STOP_MARGIN
    lock = probe_lock(home.lock_file)
    if program is not None:
        spec.program(program)
        if not lock.held:
            raise NotRunningError(f"{spec.name} is not running", "", f"daemonkit start {spec.name}")
        try:
            answer = request(home.control_socket, {"op": "stop", "program": program}, timeout=budget)
        except ControlError as exc:
            raise DaemonkitError(f"cannot stop program {program}", str(exc), f"daemonkit status {spec.name} --deep") from None
        if not answer.get("ok"):
            raise DaemonkitError(f"cannot stop program {program}", str(answer.get("error")))
        return StopResult(spec.name, True, [program])

    notes: list[str] = []
    stopped: list[str] = []
    supervisor = ProcessIdentity.from_record(lock.record) if lock.held else None
    if supervisor is None and lock.held:
        record = read_pid_record(home.pid_file).data
        supervisor = ProcessIdentity.from_record(record)
    if lock.held:
        try:
            answer = request(home.control_socket, {"op": "shutdown"}, timeout=5.0)
            stopped = list(answer.get("stopping") or [])
        except ControlError as exc:
            notes.append(f"control request failed ({exc}); terminating the supervisor instead")
            if supervisor is not None:
                terminate_tree(supervisor, grace=budget)
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline and probe_lock(home.lock_file).held:
            time.sleep(0.01)
        if probe_lock(home.lock_file).held:
            notes.append(f"the supervisor did not exit within {budget:g}s; killed")
            if supervisor is not None:
                terminate_tree(supervisor, grace=1.0)
        # The lock is released during the supervisor's last steps; "stopped" means the process is gone.
        while supervisor is not None and supervisor.is_alive() and time.monotonic() < deadline + 2.0:
            time.sleep(0.005)
    # Programs recorded by a supervisor that died (kill -9) are ended by identity, never by bare pid.
    killed = []
    state = read_state(home.state_file)
    if state.data is not None and not probe_lock(home.lock_file).held:
        for name, entry in state.data["programs"].items():
            identity = ProcessIdentity.from_record(entry) if isinstance(entry, dict) else None
            if identity is not None and identity.is_alive():
                terminate_tree(identity, grace=spec.program(name).stop_grace if name in {p.name for p in spec.programs} else 5.0)
                killed.append(str(name))
    if killed:
        notes.append(f"ended program(s) left behind by a dead supervisor: {', '.join(killed)}")
    if not probe_lock(home.lock_file).held:
        cleared = _clear_stale_records(home)
        if cleared:
            notes.append(f"cleared the stale records of a supervisor that did not exit cleanly: {', '.join(cleared)}")
    return StopResult(spec.name, lock.held, stopped, killed, notes)


def _clear_stale_records(home: Home) -> list[str]:
    """After a supervisor died without cleaning up (kill -9, OOM, power loss), make the records say what
    is true: no supervisor.pid, and a state.json whose supervisor and programs are stopped. Only called
    when nobody holds the lock, and after leftovers were ended, so nothing alive is described."""
    from .store.atomic import write_json_atomic
    from .store.records import read_pid_record, read_state

    cleared = []
    pid = read_pid_record(home.pid_file)
    if pid.exists:
        try:
            home.pid_file.unlink()
            cleared.append("supervisor.pid")
        except OSError:
            pass  # gone already, or not a file (a directory in the way): the next start reports it
    state = read_state(home.state_file)
    sup = (state.data or {}).get("supervisor")
    if isinstance(sup, dict) and sup.get("state") in ("running", "stopping"):
        data = dict(state.data or {})
        data["supervisor"] = {**sup, "state": "stopped", "stopped_by": "daemonkit stop (the supervisor was gone)"}
        programs = {}
        for name, entry in (data.get("programs") or {}).items():
            if isinstance(entry, dict) and entry.get("pid") is not None:
                entry = {**entry, "state": "stopped", "pid": None, "create_time": None, "ready": False,
                         "reason": f"its supervisor died while it was {entry.get('state')}", "since": time.time()}
            programs[name] = entry
        data["programs"] = programs
        data["updated_at"] = time.time()
        try:
            write_json_atomic(home.state_file, data)
            cleared.append("state.json")
        except OSError:
            pass  # read-only or full: status still tells the truth from the lock and identities
    if cleared:
        from .store.events import EventLog

        ledger = EventLog(home.events_file)
        dead = (pid.data or {}).get("pid") or (sup or {}).get("pid")
        ledger.emit("stale-cleared", None, dead if isinstance(dead, int) else None, cleared=cleared)
        ledger.close()
    return cleared


def restart(spec: Spec, home: Home | None = None, *, program: str | None = None, timeout: float | None = None) -> StartResult:
    """Stop then start the daemon (through its service manager when installed), or restart one program
    inside the running supervisor; returns once ready, like ``start``."""
    from .store.lock import probe_lock
    from .supervisor.control import ControlError, request

    home = home or home_for_spec(spec)
    if program is None or not probe_lock(home.lock_file).held:
        stop(spec, home)
        return start(spec, home, timeout=timeout, save=False)
    try:
        answer = request(home.control_socket, {"op": "restart", "program": program},
                         timeout=_wait_budget(spec, timeout) + spec.program(program).stop_grace)
    except ControlError as exc:
        raise DaemonkitError(f"cannot restart program {program}", str(exc)) from None
    if not answer.get("ok"):
        raise DaemonkitError(f"program {program} failed to restart", str((answer.get("failed") or {}).get(program, "")),
                             f"daemonkit logs {spec.name} --program {program}")
    return StartResult(spec.name, str(home.path), None, [program], already_running=True, status=status_of(spec, home))


def _stop_quietly(spec: Spec, home: Home, supervisor: Any) -> None:
    try:
        stop(spec, home)
    except DaemonkitError:
        if supervisor is not None:
            from .proc.identity import terminate_tree

            terminate_tree(supervisor, grace=2.0)


def remove(name: str, app: str = "daemonkit") -> list[str]:
    """Stop the daemon and delete its home (spec, records, logs)."""
    spec, home = load_installed(name, app)
    lines = []
    if read_install_record(home) is not None:
        lines += uninstall(spec, home)
    stopped = stop(spec, home)
    if stopped.was_running or stopped.killed:
        lines.append(f"stopped {name}")
    shutil.rmtree(home.path)
    sock_dir = home.control_socket.parent
    if sock_dir != home.path and sock_dir.exists():
        shutil.rmtree(sock_dir, ignore_errors=True)
    return lines + [f"removed {home.path}"]


def list_daemons(app: str = "daemonkit") -> list[DaemonStatus]:
    out = []
    for home in _known_homes(app):
        try:
            spec = load_spec(home.spec_file)
            out.append(status_of(spec, home))
        except DaemonkitError as exc:
            out.append(DaemonStatus(home.name, str(home.path), False, "none", problems=[exc.message]))
    return out


# ------------------------------------------------------------------------------------------ install


INSTALL_RECORD = "install.json"


def read_install_record(home: Home) -> dict[str, Any] | None:
    """What ``install`` registered (``{"backend": ..., "scope": ..., "python": ..., ...}``), or None."""
    from .store.records import read_record

    return read_record(home.path / INSTALL_RECORD, required=("backend",)).data


@dataclass
class InstallResult:
    name: str
    home: str
    backend: str
    scope: str
    reason: str
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: DaemonStatus | None = None


def install(spec: Spec, *, backend: str | None = None, fallback: str | None = None, force: bool = False,
            ctx: Any = None) -> InstallResult:
    """Register the daemon with the best service manager here (or ``backend``) so it starts at login
    (user scope) or boot (system scope), start it and wait until its programs are ready, as ``start``
    does. Idempotent: re-installing the same spec changes nothing; a changed spec or unit is applied
    (drift repaired, the daemon restarted). A start that fails leaves it installed but stopped."""
    from .backends import default_context, detached_backend
    from .backends.base import supervisor_argv
    from .backends.chooser import choose
    from .store.atomic import write_json_atomic
    from .store.lock import probe_lock

    ctx = ctx or default_context()
    ctx.force = force or ctx.force
    choice = choose(spec, ctx, backend=backend, fallback=fallback,
                    factories={"detached": lambda c: detached_backend(c)})
    spec = choice.apply(spec)
    home = home_for_spec(spec).ensure()
    previous = read_install_record(home)
    if previous is not None and previous.get("backend") not in (choice.name, None):
        raise DaemonkitError(f"{spec.name} is installed with {previous['backend']} already",
                             f"asked for {choice.name}", f"daemonkit uninstall {spec.name} first")
    before = _read_bytes(home.spec_file)
    save_spec(spec, home)
    spec_changed = before is not None and before != _read_bytes(home.spec_file)
    lines: list[str] = []
    if probe_lock(home.lock_file).held:
        if choice.name != "detached" and (previous is None or previous.get("backend") == "detached"):
            # One supervisor per home: a detached one would keep the manager's from taking the lock.
            stop_supervisor(spec, home)
            lines.append(f"stopped the supervisor that 'daemonkit start' had started, so {choice.name} runs it")
        elif spec_changed:
            stop(spec, home)  # the running supervisor has the old spec; the start below applies the new one
            lines.append(f"the spec changed: stopped {spec.name} to apply it")
    marks = LogMarks.take(spec, home)
    record = {"backend": choice.name, "scope": choice.scope, "python": ctx.python,
              "argv": supervisor_argv(home, ctx.python), "installed_at": time.time(), "version": __version__}
    # Written before the backend acts, so an interrupted install is seen and undone by `uninstall`.
    write_json_atomic(home.path / INSTALL_RECORD, record)
    try:
        lines += choice.backend.install(spec, home)
        if choice.name == "detached":
            if not probe_lock(home.lock_file).held:
                try:
                    start_supervisor(spec, home, marks=marks)
                    lines.append(f"started {spec.name} (detached)")
                except AlreadyRunningError:
                    # Another command's supervisor for this home (an interrupted install's, a concurrent
                    # start) took the lock meanwhile: the daemon runs, which is what install is for.
                    _await_ready(spec, home, None, marks=marks)
                    lines.append(f"{spec.name} was being started by another command; it is running")
        else:
            # The manager reports "started" once the supervisor is up; wait for the programs too.
            _await_ready(spec, home, None, backend=choice.backend, marks=marks)
    except DaemonkitError as exc:
        if not _registered(choice.backend, spec, home):
            # Refused or failed before anything was registered: leave no record pointing at nothing.
            if previous is None:
                (home.path / INSTALL_RECORD).unlink(missing_ok=True)
            raise
        if choice.name != "detached":
            _stop_quietly(spec, home, None)  # registered, but nothing half-started
            if "---" not in exc.details:
                exc.details = _join(exc.details, marks.program_details(spec, home))
        then = (f"{spec.name} is installed but stopped: fix the cause, then 'daemonkit start {spec.name}' "
                f"(or 'daemonkit uninstall {spec.name}')")
        exc.hint = f"{exc.hint}; {then}" if exc.hint else then
        raise
    return InstallResult(spec.name, str(home.path), choice.name, choice.scope, choice.reason, lines,
                         list(choice.notes), status_of(spec, home))


def uninstall(spec: Spec, home: Home | None = None, *, force: bool = False, ctx: Any = None) -> list[str]:
    """Stop the daemon and remove its registration; its home (spec, logs) stays until ``remove``."""
    from .backends import default_context, get_backend

    home = home or home_for_spec(spec)
    ctx = ctx or default_context()
    ctx.force = force or ctx.force
    record = read_install_record(home)
    if record is None:
        raise NotInstalledError(f"{spec.name} is not installed with a service manager",
                                f"no {home.path / INSTALL_RECORD}", f"daemonkit stop {spec.name} stops it")
    lines = get_backend(str(record["backend"]), ctx).uninstall(spec, home)
    stopped = stop_supervisor(spec, home)
    if stopped.was_running:
        lines.append(f"stopped {spec.name}")
    (home.path / INSTALL_RECORD).unlink(missing_ok=True)
    return lines


# ------------------------------------------------------------------------------------------ helpers


def _tail(path: Path, n: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _last_line(path: Path) -> str:
    return _tail(path, 1).strip()


def _registered(backend: Any, spec: Spec, home: Home) -> bool:
    try:
        return bool(backend.status(spec, home).installed)
    except DaemonkitError:
        return False


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _join(*parts: str) -> str:
    return "\n".join(p for p in parts if p and p.strip())


@dataclass
class LogMarks:
    """Where each log of a home ended just before a start, so a failure shows only that start's lines
    (an old run's traceback next to today's error sends people the wrong way)."""

    offsets: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0  # time.time() at the mark, for managers' journals

    @classmethod
    def take(cls, spec: Spec, home: Home) -> "LogMarks":
        paths = [home.supervisor_log] + [home.program_log(p.name, s) for p in spec.programs for s in ("out", "err")]
        offsets = {}
        for path in paths:
            try:
                offsets[str(path)] = path.stat().st_size
            except OSError:
                offsets[str(path)] = 0
        return cls(offsets, time.time())

    def tail(self, path: Path, n: int) -> str:
        """The last ``n`` lines written to ``path`` since the mark (all of it if it was rotated since)."""
        start = self.offsets.get(str(path), 0)
        try:
            with open(path, "rb") as f:
                size = f.seek(0, 2)
                if size < start:  # rotated: the current file is all new
                    start = 0
                f.seek(max(start, size - 64 * 1024))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def program_details(self, spec: Spec, home: Home, n: int = 10) -> str:
        """The error output (else the output) each program wrote since the mark, headed by its name."""
        parts = []
        for program in spec.programs:
            text = self.tail(home.program_log(program.name, "err"), n) or self.tail(home.program_log(program.name, "out"), n)
            if text.strip():
                parts.append(f"--- {program.name} (output of this start):\n{text}")
        return "\n".join(parts)


tail_file = _tail
