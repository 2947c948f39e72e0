"""Everything the probes judge, gathered once: records first (fast, local), then the slow look-ups
(service manager, readiness, control socket, disk) in parallel, each bounded in time.

The probes themselves are pure functions of ``Facts``; that keeps each one testable and the whole
``status --deep`` as fast as its slowest look-up instead of the sum of them. Nothing here changes
anything: files are only read, the lock is only probed, readiness checks only connect.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..proc.identity import ProcessIdentity
from ..store.events import EVENTS_MAX_BYTES
from ..store.lock import LockProbe, probe_lock
from ..store.records import ReadResult, read_pid_record, read_record, read_state
from .bounded import CappedRunner, Outcome, map_bounded, run_bounded
from .osproc import ProcInfo, flock_holders, inspect, inspect_many

if TYPE_CHECKING:
    from ..paths import Home
    from ..spec import Program, Spec

INSTALL_RECORD = "install.json"
EVENTS_TAIL_BYTES = 128 * 1024  # the ledger's last part: enough for the recent story, cheap to parse
DEFAULT_BUDGET = 5.0  # seconds for all slow look-ups together


@dataclass
class Records:
    pid: ReadResult
    lock: LockProbe
    state: ReadResult
    install: ReadResult
    events: list[dict[str, Any]]  # the ledger's tail, oldest first
    events_problem: str = ""
    pid_mtime: float | None = None
    state_mtime: float | None = None

    @property
    def lock_identity(self) -> tuple[int, float] | None:
        return _identity(self.lock.record)

    @property
    def pid_identity(self) -> tuple[int, float] | None:
        return _identity(self.pid.data)

    @property
    def state_supervisor(self) -> dict[str, Any]:
        sup = (self.state.data or {}).get("supervisor")
        return sup if isinstance(sup, dict) else {}


@dataclass
class ProgramFacts:
    name: str
    entry: dict[str, Any] | None  # its state.json (or live) entry
    proc: ProcInfo | None  # the recorded pid, inspected
    check: Outcome[tuple[bool, str]] | None = None  # a readiness check run now (tcp/http/file)


@dataclass
class FileFacts:
    path: str
    size: int
    cap: int | None  # None: no cap known for this file


@dataclass
class Storage:
    files: list[FileFacts]
    writable: dict[str, str]  # directory -> "" when writable, else why not
    free: dict[str, tuple[int, int]]  # directory -> (free bytes, total bytes)


@dataclass
class Platform:
    system: str
    python: str
    admin: bool
    wsl: Any = None  # backends.wsl.WslInfo on Linux
    install_python: str | None = None
    install_python_exists: bool | None = None
    breakaway: bool | None = None  # Windows: may a child of ours leave our job object? (None: not asked)


@dataclass
class Facts:
    spec: "Spec"
    home: "Home"
    budget: float
    records: Records
    holders: list[ProcInfo] | None  # who holds the lock per the OS (Linux), when that matters
    supervisor: ProcInfo | None  # the process the lock or pid record names
    live: Outcome[Any]  # api.status_of: the plain status, asked from the supervisor when it runs
    backend: Outcome[Any] | None  # BackendStatus, or None when not installed with a manager
    backend_name: str | None
    programs: list[ProgramFacts]
    storage: Outcome[Storage]
    platform: Outcome[Platform]
    timings: dict[str, float] = field(default_factory=dict)
    now: float = field(default_factory=time.time)

    @property
    def running(self) -> bool:
        return self.records.lock.held


def _identity(data: Any) -> tuple[int, float] | None:
    # The record format is identity's; the doctor works on plain (pid, create_time) tuples.
    identity = ProcessIdentity.from_record(data)
    return None if identity is None else (identity.pid, identity.create_time)


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def read_events_tail(path: Path, limit: int = EVENTS_TAIL_BYTES) -> tuple[list[dict[str, Any]], str]:
    """The last events of the ledger, oldest first; reads the previous generation too when the current
    file was just rotated and holds little. Torn or foreign lines are skipped, never fatal."""
    chunks: list[bytes] = []
    want = limit
    for candidate in (path, path.with_name(path.name + ".1")):
        try:
            with open(candidate, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - want))
                data = f.read(want)
                if size > want:
                    data = data.split(b"\n", 1)[1] if b"\n" in data else b""  # drop the partial first line
        except FileNotFoundError:
            continue
        except OSError as exc:
            return [], f"cannot read {candidate}: {exc.strerror or exc}"
        chunks.insert(0, data)
        want -= len(data)
        if want <= 4096:
            break
    events = []
    for line in b"\n".join(chunks).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            events.append(record)
    return events, ""


def read_records(home: "Home") -> Records:
    events, problem = read_events_tail(home.events_file)
    return Records(
        pid=read_pid_record(home.pid_file),
        lock=probe_lock(home.lock_file),
        state=read_state(home.state_file),
        install=read_record(home.path / INSTALL_RECORD, required=("backend",)),
        events=events,
        events_problem=problem,
        pid_mtime=_mtime(home.pid_file),
        state_mtime=_mtime(home.state_file),
    )


# ------------------------------------------------------------------------------------------ slow parts


def _live_status(spec: "Spec", home: "Home") -> Any:
    from .. import api

    return api.status_of(spec, home)


def _backend_status(spec: "Spec", home: "Home", name: str, install: dict[str, Any], ctx: Any,
                    deadline: float) -> Any:
    from ..backends import default_context, get_backend

    import dataclasses

    base = ctx if ctx is not None else default_context()
    python = install.get("python")
    # A copy: the caller's context keeps its own runner. Drift is judged against the python that
    # install recorded, not the one running `status`.
    ctx = dataclasses.replace(base, runner=CappedRunner(base.runner, deadline),
                              python=python if isinstance(python, str) and python else base.python)
    return get_backend(name, ctx).status(spec, home)


def _storage(spec: "Spec", home: "Home") -> Storage:
    caps: dict[str, int] = {}
    for program in spec.programs:
        for stream in ("out", "err"):
            base = f"{program.name}.{stream}.log"
            caps[base] = program.logs.max_bytes
            for i in range(1, program.logs.backups + 1):
                caps[f"{base}.{i}"] = program.logs.max_bytes
    files: list[FileFacts] = []
    try:
        with os.scandir(home.logs_dir) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        files.append(FileFacts(entry.path, entry.stat(follow_symlinks=False).st_size,
                                               caps.get(entry.name)))
                except OSError:
                    continue
    except OSError:
        pass
    for i in ("", ".1", ".2", ".3"):
        path = home.events_file.with_name(home.events_file.name + i)
        try:
            files.append(FileFacts(str(path), os.stat(path).st_size, EVENTS_MAX_BYTES))
        except OSError:
            continue
    writable: dict[str, str] = {}
    free: dict[str, tuple[int, int]] = {}
    for directory in (home.path, home.logs_dir):
        writable[str(directory)] = _why_not_writable(directory)
        try:
            usage = shutil.disk_usage(directory)
            free[str(directory)] = (usage.free, usage.total)
        except OSError:
            continue
    return Storage(files, writable, free)


def _why_not_writable(directory: Path) -> str:
    """"" when we could write in ``directory``; else why not. Asks without writing anything."""
    if not directory.exists():
        return "it does not exist"
    if hasattr(os, "statvfs"):
        try:
            if os.statvfs(directory).f_flag & os.ST_RDONLY:
                return "its file system is mounted read-only"
        except OSError:
            pass
    if not os.access(directory, os.W_OK | os.X_OK):
        return "no write permission for this user"
    return ""


def _platform(install: dict[str, Any] | None) -> Platform:
    if sys.platform == "win32":
        from ..backends.chooser import is_admin

        admin = is_admin()
    else:
        admin = os.geteuid() == 0  # the chooser's test too, without importing the chooser (and inspect)
    wsl = None
    if sys.platform.startswith("linux"):
        from ..backends.wsl import detect, read_inputs

        wsl = detect(read_inputs())
    info = Platform(system=sys.platform, python=sys.executable, admin=admin, wsl=wsl)
    if sys.platform == "win32":
        # Asked for real (a suspended child with CREATE_BREAKAWAY_FROM_JOB), not read from job flags.
        from ..errors import DaemonkitError
        from ..proc.winjob import breakaway_allowed

        try:
            info.breakaway = breakaway_allowed()
        except (DaemonkitError, OSError):
            info.breakaway = None
    python = (install or {}).get("python")
    if isinstance(python, str) and python:
        info.install_python = python
        info.install_python_exists = os.path.exists(python)
    return info


def _program_facts(spec: "Spec", entries: dict[str, Any], budget: float) -> list[ProgramFacts]:
    out: list[ProgramFacts] = []
    to_check: list[tuple[int, "Program"]] = []
    recorded: list[tuple[int, tuple[int, float]]] = []  # (index in out, identity): inspected in one batch
    for program in spec.programs:
        entry = entries.get(program.name)
        entry = entry if isinstance(entry, dict) else None
        identity = _identity(entry)
        if identity is not None:
            recorded.append((len(out), identity))
        out.append(ProgramFacts(program.name, entry, None))
    for (index, _), proc in zip(recorded, inspect_many([identity for _, identity in recorded])):
        out[index].proc = proc
    for index, program in enumerate(spec.programs):
        proc = out[index].proc
        if (program.ready is not None and program.ready.kind in ("tcp", "http", "file")
                and proc is not None and proc.liveness == "alive"):
            to_check.append((index, program))
    if to_check:
        from ..supervisor.readiness import check_once  # the supervisor's own check, not a copy of it

        results = map_bounded(lambda item: check_once(item[1].ready), to_check, budget, workers=16)
        for (index, _), outcome in zip(to_check, results):
            out[index].check = outcome
    return out


def gather(spec: "Spec", home: "Home", *, budget: float = DEFAULT_BUDGET, ctx: Any = None) -> Facts:
    """Read every signal once. ``ctx``: the backend context (tests pass a recording runner)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    records = read_records(home)
    timings["records"] = time.perf_counter() - start

    # The supervisor the records name: the lock's holder first (it cannot go stale), else supervisor.pid.
    named = records.lock_identity if records.lock.held else None
    named = named or records.pid_identity
    supervisor = inspect(*named) if named is not None else None
    holders = None
    if records.lock.held and (supervisor is None or supervisor.liveness != "alive"
                              or named != records.lock_identity):
        pids = flock_holders(home.lock_file)
        holders = [inspect(pid, None) for pid in pids] if pids is not None else None

    install = records.install.data
    backend_name = str(install["backend"]) if install else None
    jobs: dict[str, Any] = {
        "live": lambda: _live_status(spec, home),
        "storage": lambda: _storage(spec, home),
        "platform": lambda: _platform(install),
    }
    if install and backend_name != "detached":
        # Commands end a little before the budget, so their timeouts (not our abandoning them) stop them.
        deadline = time.monotonic() + budget * 0.9
        jobs["backend"] = lambda: _backend_status(spec, home, backend_name, install, ctx, deadline)
    entries = (records.state.data or {}).get("programs") or {}
    jobs["programs"] = lambda: _program_facts(spec, entries, budget * 0.8)
    outcomes = run_bounded(jobs, budget)
    for name, outcome in outcomes.items():
        timings[name] = outcome.elapsed
    programs_outcome = outcomes["programs"]
    programs = programs_outcome.value if programs_outcome.ok else [
        ProgramFacts(p.name, entries.get(p.name) if isinstance(entries.get(p.name), dict) else None, None)
        for p in spec.programs]
    timings["total"] = time.perf_counter() - start
    return Facts(
        spec=spec, home=home, budget=budget, records=records, holders=holders, supervisor=supervisor,
        live=outcomes["live"], backend=outcomes.get("backend"), backend_name=backend_name,
        programs=programs, storage=outcomes["storage"], platform=outcomes["platform"], timings=timings,
    )
