"""Probes [7]-[12]: the service manager, the programs' health now, the disk, the platform.

The service-manager probes read the backend's own ``status()`` (the same code that installs the
registration computes its drift), asked once and shared by [7], [8] and [9].
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from .facts import Facts
from .model import FAIL, PASS, SKIP, WARN, Check, Item
from .probes_records import UP, Cmd, _worse

_NOT_INSTALLED = ("not installed with a service manager: started by 'start' only, so nothing starts it at "
                  "login/boot or restarts its supervisor if that dies")


def _backend(f: Facts, number: int, key: str, title: str, cmd: Cmd) -> tuple[Any, Check | None]:
    """The backend status, or the Check to return instead (not installed, unreadable, timed out)."""
    r = f.records
    if r.install.problem:
        return None, Check(number, key, title, FAIL, f"install.json is unusable: {r.install.problem}",
                           f"'{cmd('install')}' writes it again", {"path": str(f.home.path / 'install.json')})
    if f.backend_name is None:
        return None, Check(number, key, title, SKIP, _NOT_INSTALLED if number == 7 else "not installed")
    if f.backend_name == "detached":
        return None, Check(number, key, title, SKIP,
                           "installed without a service manager (detached): " + _NOT_INSTALLED.split(": ", 1)[1]
                           if number == 7 else "detached: no service manager to ask", evidence={"backend": "detached"})
    outcome = f.backend
    assert outcome is not None
    if not outcome.ok:
        why = outcome.problem(f.budget)
        return None, Check(number, key, title, FAIL, f"{f.backend_name}: could not ask the service manager: {why}",
                           _manager_hint(f, cmd), {"backend": f.backend_name, "problem": why})
    return outcome.value, None


def _manager_hint(f: Facts, cmd: Cmd) -> str:
    name = f.backend_name
    if name == "systemd":
        flag = " --user" if f.spec.scope == "user" else ""
        return f"check that 'systemctl{flag} status' answers (a hung or unreachable manager); then '{cmd('status')} --deep'"
    if name == "launchd":
        return "check that 'launchctl print gui/$(id -u)' answers; then retry"
    if name == "schtasks":
        return "check that 'schtasks /Query' answers (Task Scheduler service running?); then retry"
    return f"check the {name} service manager; then '{cmd('status')} --deep'"


def _evidence(status: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"backend": status.backend}
    for i, line in enumerate(status.evidence[:4]):
        ev[f"read{i + 1}" if i else "read"] = line[:300]
    return ev


Say = Callable[..., Check]  # say(result, summary, hint="", extra=None) -> this probe's Check
Judge = Callable[[Facts, Cmd, Any, Say], Check]  # judge(facts, cmd, backend status, say)
Probe = Callable[[Facts, Cmd], Check]


def _asks_manager(number: int, key: str, title: str) -> Callable[[Judge], Probe]:
    """[7], [8] and [9] start alike: the backend's status, or the Check that stands in for it (not
    installed, install.json unusable, the manager did not answer), and its evidence. The decorated
    judge gets the status and ``say(result, summary, hint="", extra=None)``, which builds this probe's
    Check with that evidence (plus ``extra``)."""
    def wrap(judge: Judge) -> Probe:
        @functools.wraps(judge)
        def probe(f: Facts, cmd: Cmd) -> Check:
            status, early = _backend(f, number, key, title, cmd)
            if early is not None:
                return early
            ev = _evidence(status)

            def say(result: str, summary: str, hint: str = "", extra: dict[str, Any] | None = None) -> Check:
                return Check(number, key, title, result, summary, hint, {**ev, **(extra or {})})

            return judge(f, cmd, status, say)
        return probe
    return wrap


@_asks_manager(7, "registration", "service-manager registration present")
def registration(f: Facts, cmd: Cmd, status: Any, say: Say) -> Check:
    if not status.installed:
        return say(FAIL, f"install.json says {f.backend_name}, but {status.detail or 'the registration is gone'}",
                   f"'{cmd('install')}' registers it again")
    enabled = {True: "enabled", False: "not enabled at login/boot", None: "enablement unknown"}[status.enabled]
    if status.enabled is False:
        return say(WARN, f"{f.backend_name}: registered but {enabled}", f"'{cmd('install')}' enables it again")
    return say(PASS, f"{f.backend_name}: registered, {enabled}")


@_asks_manager(8, "drift", "registration matches the spec")
def drift(f: Facts, cmd: Cmd, status: Any, say: Say) -> Check:
    if not status.installed and not status.drift:
        return say(SKIP, "nothing registered to compare (see [7])")
    if status.drift:
        return say(FAIL, f"{len(status.drift)} difference(s) from what install writes now: {status.drift[0]}",
                   f"'{cmd('install')}' rewrites the registration from the spec (keep local changes in a drop-in "
                   "or in the spec instead)",
                   {f"drift{i + 1}": line[:300] for i, line in enumerate(status.drift[:6])})
    return say(PASS, "identical to what install would write now")


@_asks_manager(9, "manager-active", "service manager says active")
def manager_active(f: Facts, cmd: Cmd, status: Any, say: Say) -> Check:
    if not status.installed:
        return say(SKIP, "nothing registered to ask about (see [7])")
    if status.active is None:
        why = "; ".join(status.notes[:1]) or status.detail or "no answer"
        # A manager that does not answer in time is a failure of its own (a hung systemctl/schtasks),
        # not an "I don't know".
        hung = "timed out" in why
        return say(FAIL if hung else WARN,
                   f"{f.backend_name} " + ("did not answer: " if hung else "could not say: ") + why,
                   _manager_hint(f, cmd))
    if not status.active:
        hint = f"'{cmd('start')}' starts it through {f.backend_name}"
        if f.backend_name == "systemd":
            flag = " --user" if f.spec.scope == "user" else ""
            hint += f"; 'journalctl{flag} -u daemonkit-{f.spec.name} -n 50' shows why it stopped"
        return say(FAIL, f"{f.backend_name}: {status.detail or 'not active'}", hint)
    return say(PASS, f"{f.backend_name}: {status.detail or 'active'}")


# ------------------------------------------------------------------------------------------ [10]


def program_health(f: Facts, cmd: Cmd) -> Check:
    title = "programs alive and ready now"
    items: list[Item] = []
    worst = SKIP
    hint = ""
    running = f.records.lock.held
    specs = {p.name: p for p in f.spec.programs}  # Spec.program() searches: O(N^2) at N=1000
    for program in f.programs:
        state = str((program.entry or {}).get("state", ""))
        proc = program.proc
        spec_program = specs[program.name]
        if proc is None:
            if running and state in UP:
                items.append(Item(program.name, FAIL, f"state says {state} but no pid is recorded"))
                hint = hint or f"'{cmd('restart')} --program {program.name}'"
            continue
        if not running:
            if proc.liveness == "alive":
                items.append(Item(program.name, FAIL, f"pid {proc.pid} still runs without a supervisor (orphaned)"))
                hint = hint or f"'{cmd('stop')}' ends it (by identity); then '{cmd('start')}'"
            continue
        if proc.liveness != "alive":
            if state in UP:
                items.append(Item(program.name, FAIL, f"state says {state} with pid {proc.pid}, but the OS says "
                                                      f"that pid is {proc.liveness}"))
                hint = hint or f"'{cmd('restart')} --program {program.name}'"
            continue
        if program.check is not None:
            outcome = program.check
            if outcome.ok and outcome.value and outcome.value[0]:
                items.append(Item(program.name, PASS, f"pid {proc.pid} alive; {outcome.value[1]}"))
            else:
                why = outcome.value[1] if outcome.ok and outcome.value else outcome.problem(f.budget)
                items.append(Item(program.name, FAIL, f"pid {proc.pid} alive but not ready now: {why}"))
                hint = hint or (f"see what it says: '{cmd('logs')} --program {program.name} -n 50'; "
                                f"'{cmd('restart')} --program {program.name}' if it is stuck")
            continue
        kind = spec_program.ready.kind if spec_program.ready else ""
        if kind == "notify":
            ready = bool((program.entry or {}).get("ready"))
            items.append(Item(program.name, PASS if ready else WARN,
                              f"pid {proc.pid} alive; " + ("reported READY=1" if ready else "has not sent READY=1")))
            hint = hint or ("" if ready else f"'{cmd('logs')} --program {program.name}'")
            continue
        items.append(Item(program.name, PASS, f"pid {proc.pid} alive (no readiness check configured)"))
    for item in items:
        worst = _worse(worst, item.result)
    if not items:
        return Check(10, "health", title, SKIP, "no program is running" if not running else "nothing to check")
    bad = [i for i in items if i.result != PASS]
    if bad:
        summary = "; ".join(f"{i.name}: {i.summary}" for i in bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")
    else:
        summary = f"{len(items)} program(s) alive" + (f"; {items[0].summary}" if len(items) == 1 else "")
    return Check(10, "health", title, worst, summary, hint if worst in (FAIL, WARN) else "", items=items)


# ------------------------------------------------------------------------------------------ [11]

LOW_FREE_BYTES = 64 * 1024 * 1024  # below this the next rotation of a busy log may not fit
OVER_CAP_SLACK = 64 * 1024  # a write in flight may pass the cap by one chunk


def logs_and_disk(f: Facts, cmd: Cmd) -> Check:
    title = "logs within caps, home writable, disk space"
    if not f.storage.ok:
        return Check(11, "storage", title, FAIL, f"could not inspect the home: {f.storage.problem(f.budget)}",
                     f"check {f.home.path} and its disk", {"path": str(f.home.path)})
    s = f.storage.value
    ev: dict[str, Any] = {"logs": str(f.home.logs_dir)}
    total = sum(x.size for x in s.files)
    ev["log_bytes"] = total
    for directory, why in s.writable.items():
        if why:
            ev["not_writable"] = directory
            return Check(11, "storage", title, FAIL, f"{directory} is not writable: {why}",
                         "make it writable for the daemon's user (remount read-write, fix ownership), or set "
                         "DAEMONKIT_HOME to a writable directory", ev)
    for directory, (free, size) in s.free.items():
        ev["free_bytes"] = free
        if free < LOW_FREE_BYTES:
            return Check(11, "storage", title, FAIL if free < 1024 * 1024 else WARN,
                         f"only {_size(free)} free of {_size(size)} on the file system of {directory}: output "
                         "and records will be dropped when it fills",
                         f"free space there; '{cmd('logs')}' rotates by itself and keeps at most its caps", ev)
    over = [x for x in s.files if x.cap is not None and x.size > x.cap + OVER_CAP_SLACK]
    if over:
        worst = max(over, key=lambda x: x.size - (x.cap or 0))
        ev.update(file=worst.path, size=worst.size, cap=worst.cap)
        return Check(11, "storage", title, FAIL,
                     f"{len(over)} log file(s) over their cap: {worst.path} is {_size(worst.size)} (cap {_size(worst.cap or 0)}): "
                     "rotation is not working", f"'{cmd('restart')}' reopens the logs; report it if it recurs", ev)
    uncapped = [x for x in s.files if x.cap is None and x.size > 50 * 1024 * 1024]
    if uncapped:
        ev.update(file=uncapped[0].path, size=uncapped[0].size)
        return Check(11, "storage", title, WARN, f"{uncapped[0].path} is {_size(uncapped[0].size)} and has no cap",
                     f"truncate it while {f.spec.name} is stopped, or remove it if stale", ev)
    free_text = ", ".join(f"{_size(free)} free" for free, _ in list(s.free.values())[:1])
    return Check(11, "storage", title, PASS,
                 f"{len(s.files)} log file(s), {_size(total)} in all, within caps; home writable; {free_text}",
                 evidence=ev)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# ------------------------------------------------------------------------------------------ [12]


def platform_notes(f: Facts, cmd: Cmd) -> Check:
    title = "platform notes"
    if not f.platform.ok:
        return Check(12, "platform", title, WARN, f"could not inspect the platform: {f.platform.problem(f.budget)}",
                     "retry; report it if it persists")
    p = f.platform.value
    ev: dict[str, Any] = {"platform": p.system, "python": p.python, "elevated": p.admin}
    notes: list[str] = []
    if p.install_python is not None:
        ev["registered_python"] = p.install_python
        if not p.install_python_exists:
            return Check(12, "platform", title, FAIL,
                         f"the registration runs {p.install_python}, which no longer exists (venv removed or "
                         "Python upgraded?): the service manager cannot start the supervisor",
                         f"run '{cmd('install')}' again from the environment daemonkit is installed in", ev)
    if p.wsl is not None and p.wsl.is_wsl:
        from ..backends.wsl import guidance

        ev["wsl"] = f"WSL {p.wsl.version or '?'}, systemd {'on' if p.wsl.systemd else 'off'}, distro {p.wsl.distro or '?'}"
        lines = guidance(p.wsl, f.spec.name)
        return Check(12, "platform", title, WARN, lines[0], lines[-1], ev)
    backend_notes: list[str] = []
    if f.backend is not None and f.backend.ok and f.backend.value is not None:
        backend_notes = list(f.backend.value.notes)
        for i, line in enumerate(backend_notes[:3]):
            ev[f"note{i + 1}"] = line[:300]
    linger_off = next((n for n in backend_notes if n.startswith("linger is off")), None)
    if linger_off:
        return Check(12, "platform", title, WARN, linger_off.split(":", 1)[0] + f": {f.spec.name} stops when you log out",
                     "sudo loginctl enable-linger $USER keeps it running (and starts it at boot)", ev)
    if p.admin:
        notes.append("running as root/administrator" + (": this user-scope daemon belongs to root" if f.spec.scope == "user" else ""))
    breakaway = [e for e in f.records.events if e.get("event") == "breakaway-denied"]
    if breakaway:
        ev["breakaway"] = "denied (recorded in events.jsonl)"
        return Check(12, "platform", title, WARN, "job breakaway was denied: the supervisor lives inside another "
                     "app's job object and dies with it", f"'{cmd('install')}' registers it with a service manager", ev)
    if p.breakaway is False:
        ev["breakaway"] = "forbidden by the job object this command runs in"
        return Check(12, "platform", title, WARN,
                     "this terminal runs inside a job object that forbids breakaway: a supervisor started from "
                     "here without a service manager dies when that job closes (an IDE, an Electron app, ...)",
                     f"'{cmd('install')}' registers it with Task Scheduler or the service manager", ev)
    if p.system == "win32":
        ev["breakaway"] = "allowed" if p.breakaway else "not asked"
    summary = {"linux": "Linux", "darwin": "macOS", "win32": "Windows"}.get(p.system, p.system)
    summary += f", Python at {p.python}" + (f"; {'; '.join(notes)}" if notes else "")
    return Check(12, "platform", title, PASS, summary, evidence=ev)


PROBES = (registration, drift, manager_active, program_health, logs_and_disk, platform_notes)
