"""Probes [1]-[6]: what daemonkit's own records say, and whether the OS agrees with them.

Each is a pure function of ``Facts`` returning one ``Check``. ``cmd(verb)`` spells a follow-up
command for the CLI in use (``daemonkit stop NAME``, or ``myapp gateway stop`` in a host app).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..render import ago
from .facts import Facts
from .model import FAIL, PASS, SKIP, WARN, Check, Item
from .osproc import ProcInfo

Cmd = Callable[[str], str]

# Program states, as the supervisor writes them (design.md "States").
UP = ("running", "ready")
TRANSIENT = ("starting", "stopping")
LIVE_STATES = UP + TRANSIENT + ("backoff",)


def _when(ts: Any, now: float) -> str:
    return f"{ago(float(ts), now)} ago" if isinstance(ts, (int, float)) and ts else "at an unknown time"


def _stale_hint(cmd: Cmd) -> str:
    return f"'{cmd('stop')}' clears the stale records and ends programs left behind; then '{cmd('start')}'"


def _describe(proc: ProcInfo) -> str:
    what = proc.name or "?"
    return f"pid {proc.pid} ({what})"


# ------------------------------------------------------------------------------------------ [1]


def pid_record(f: Facts, cmd: Cmd) -> Check:
    r = f.records
    path = str(f.home.pid_file)
    ev: dict[str, Any] = {"path": path}
    if r.pid.problem:
        return Check(1, "pid-record", "pid record present and parses", FAIL,
                     f"supervisor.pid is unusable: {r.pid.problem}",
                     f"{_stale_hint(cmd)} (a running supervisor rewrites it on restart: '{cmd('restart')}')",
                     {**ev, "problem": r.pid.problem})
    if r.pid.data is None:
        if r.lock.held:
            return Check(1, "pid-record", "pid record present and parses", FAIL,
                         "supervisor.pid is missing, yet a process holds the lock",
                         f"'{cmd('restart')}' makes the supervisor write it again", {**ev, "exists": False})
        return Check(1, "pid-record", "pid record present and parses", SKIP,
                     "absent: no supervisor is running (it removes the record when it stops cleanly)",
                     evidence={**ev, "exists": False})
    data = r.pid.data
    ev.update(pid=data["pid"], exe=str(data.get("exe") or ""), version=str(data.get("version") or ""),
              backend=str(data.get("backend") or ""), written=_when(data.get("started_at") or r.pid_mtime, f.now))
    exe = data.get("exe") or (f.supervisor.name if f.supervisor and f.supervisor.name else "executable not recorded")
    return Check(1, "pid-record", "pid record present and parses", PASS,
                 f"pid {data['pid']} ({exe}), written {ev['written']}", evidence=ev)


# ------------------------------------------------------------------------------------------ [2]


def lock(f: Facts, cmd: Cmd) -> Check:
    r = f.records
    title = "lock held by a live process"
    ev: dict[str, Any] = {"path": str(f.home.lock_file), "held": r.lock.held}
    if r.lock.problem and r.lock.problem not in ("empty", "no lock file"):
        ev["record_problem"] = r.lock.problem
    if not r.lock.held:
        stale = r.pid.data is not None or f.records.state_supervisor.get("state") in ("running", "stopping")
        if stale:
            who = r.pid_identity or _identity_of(f.records.state_supervisor)
            return Check(2, "lock", title, FAIL,
                         f"nobody holds the lock, but the records say supervisor pid {who[0] if who else '?'} runs: "
                         "it died without cleaning up (kill -9, OOM killer, crash, power loss)",
                         _stale_hint(cmd), ev)
        return Check(2, "lock", title, SKIP, "free: no supervisor is running", evidence=ev)
    named = r.lock_identity
    sup = f.supervisor
    if named is not None:
        ev["record_pid"] = named[0]
    if named is not None and sup is not None and sup.pid == named[0] and sup.liveness in ("alive", "stopped"):
        if f.holders is None or sup.pid in [h.pid for h in f.holders] or not f.holders:
            ev["holder"] = sup.command
            return Check(2, "lock", title, PASS, f"held by {_describe(sup)}, started {_when(sup.create_time, f.now)}",
                         evidence=ev)
    if named is not None and sup is not None and sup.liveness == "recycled" and _holds_lock(f, sup.pid):
        # The OS says the recorded pid holds the lock right now: it is the supervisor, and only the
        # create times disagree (see [4]: the wall clock moved).
        ev["holder"] = sup.command
        return Check(2, "lock", title, PASS, f"held by {_describe(sup)} (the OS lock table names it)", evidence=ev)
    # Held, but not by the process its record names: something else sits on the lock.
    holders = f.holders or []
    if holders:
        h = holders[0]
        ev.update(holder_pid=h.pid, holder=h.command)
        return Check(2, "lock", title, FAIL,
                     f"held by {_describe(h)}, which is not the supervisor the lock record names"
                     + (f" (pid {named[0]}, now {sup.liveness if sup else 'unknown'})" if named else
                        " (the record inside is empty)") + f": {h.command}",
                     f"that process blocks every start of {f.spec.name}: end it if it is not yours to keep "
                     f"(kill {h.pid}), then '{cmd('start')}'", ev)
    return Check(2, "lock", title, FAIL,
                 "held, but the process named in the lock record is "
                 + (f"{sup.liveness} (pid {sup.pid})" if sup else "unknown (the record is empty or unreadable)"),
                 f"find the holder with {_who_holds(str(f.home.lock_file))} and end it; then '{cmd('start')}'", ev)


def _who_holds(path: str) -> str:
    import sys

    if sys.platform == "win32":
        return f"Resource Monitor (CPU tab, Associated Handles: search {path!r})"
    return f"'fuser -v {path}' or 'lsof {path}'"


def _holds_lock(f: Facts, pid: int) -> bool:
    return f.holders is not None and pid in [h.pid for h in f.holders]


def _identity_of(data: dict[str, Any]) -> tuple[int, float] | None:
    pid, ctime = data.get("pid"), data.get("create_time")
    if isinstance(pid, int) and isinstance(ctime, (int, float)):
        return pid, float(ctime)
    return None


# ------------------------------------------------------------------------------------------ [3]


def records_agree(f: Facts, cmd: Cmd) -> Check:
    r = f.records
    title = "records agree on one running supervisor"
    sources: dict[str, tuple[int, float] | None] = {}
    if r.lock.held:
        sources["lock"] = r.lock_identity
    if r.pid.data is not None:
        sources["supervisor.pid"] = r.pid_identity
    sup_state = r.state_supervisor
    state_says_running = sup_state.get("state") in ("running", "stopping")
    if state_says_running:
        sources["state.json"] = _identity_of(sup_state)
    ev: dict[str, Any] = {name: (f"pid {ident[0]}" if ident else "unreadable") for name, ident in sources.items()}
    if not r.lock.held:
        ev["lock"] = "free"
        claims = [name for name in ("supervisor.pid", "state.json") if name in sources]
        if claims:
            pid = next((sources[c][0] for c in claims if sources[c]), "?")  # type: ignore[index]
            return Check(3, "records-agree", title, FAIL,
                         f"stale: {' and '.join(claims)} {'say' if len(claims) > 1 else 'says'} supervisor pid {pid} "
                         "runs, the lock says nobody does",
                         _stale_hint(cmd), ev)
        return Check(3, "records-agree", title, PASS, "all records agree: no supervisor is running", evidence=ev)
    resolved = sources.get("lock")
    if resolved is None:
        return Check(3, "records-agree", title, FAIL, "the lock is held but its record names no process",
                     f"'{cmd('restart')}' rewrites the records (see [2] for who holds the lock)", ev)
    ev["resolved_pid"] = resolved[0]
    disagree = [f"{name} says pid {ident[0]}" if ident else f"{name} is unreadable"
                for name, ident in sources.items() if name != "lock" and ident != resolved]
    if r.pid.data is None and not r.pid.problem:
        disagree.append("supervisor.pid is missing")
    if disagree:
        return Check(3, "records-agree", title, FAIL,
                     f"the lock names pid {resolved[0]}, but " + "; ".join(disagree),
                     f"'{cmd('restart')}' makes the running supervisor rewrite its records", ev)
    return Check(3, "records-agree", title, PASS,
                 f"resolved running pid {resolved[0]} (lock, supervisor.pid"
                 + (", state.json" if "state.json" in sources else "") + " agree)", evidence=ev)


# ------------------------------------------------------------------------------------------ [4]


def os_liveness(f: Facts, cmd: Cmd) -> Check:
    title = "OS liveness with create-time match"
    sup = f.supervisor
    if sup is None:
        return Check(4, "os-liveness", title, SKIP, "no supervisor pid recorded to check")
    named = f.records.lock_identity if f.records.lock.held else f.records.pid_identity
    ev: dict[str, Any] = {"pid": sup.pid, "os_state": sup.liveness}
    if named is not None:
        ev["recorded_create_time"] = _stamp(named[1])
    if sup.create_time is not None:
        ev["os_create_time"] = _stamp(sup.create_time)
    if sup.command:
        ev["command"] = sup.command
    if sup.liveness == "dead":
        return Check(4, "os-liveness", title, FAIL, f"pid {sup.pid} is not running", _stale_hint(cmd), ev)
    if sup.liveness == "recycled" and f.records.lock.held and _holds_lock(f, sup.pid) and named is not None:
        shift = (sup.create_time or 0) - named[1]
        ev["create_time_shift_s"] = round(shift, 3)
        return Check(4, "os-liveness", title, WARN,
                     f"pid {sup.pid} holds the lock, but its create time reads {shift:+.2f}s off the record: the "
                     "wall clock was stepped since it started (NTP, VM resume), so its identity no longer matches",
                     f"'{cmd('restart')}' records the identity again (until then, ending it by identity may refuse)",
                     ev)
    if sup.liveness == "recycled":
        return Check(4, "os-liveness", title, FAIL,
                     f"pid {sup.pid} was recycled: it is now {sup.name or '?'} started {_when(sup.create_time, f.now)}, "
                     f"not the supervisor started {_when(named[1] if named else None, f.now)}",
                     f"the record is stale and daemonkit will never signal that pid; {_stale_hint(cmd)}", ev)
    if sup.liveness == "zombie":
        return Check(4, "os-liveness", title, FAIL, f"pid {sup.pid} is a zombie (exited, not yet reaped by its parent)",
                     f"{_stale_hint(cmd)}; if it stays a zombie, its parent is stuck", ev)
    if sup.liveness == "stopped":
        return Check(4, "os-liveness", title, FAIL,
                     f"pid {sup.pid} is stopped (SIGSTOP, Ctrl-Z or a debugger): it restarts nothing while stopped",
                     f"resume it with 'kill -CONT {sup.pid}', or '{cmd('restart')}'", ev)
    if sup.liveness == "unknown":
        return Check(4, "os-liveness", title, WARN, f"pid {sup.pid} exists but the OS refused to describe it",
                     "run the command as the user who started the daemon", ev)
    if not f.records.lock.held:
        return Check(4, "os-liveness", title, FAIL,
                     f"pid {sup.pid} is alive, but does not hold the lock: it is not working as this daemon's supervisor",
                     f"end it by identity with '{cmd('stop')}', then '{cmd('start')}'", ev)
    recorded_exe = str((f.records.pid.data or {}).get("exe") or "")
    if recorded_exe and sup.exe and not _same_file(recorded_exe, sup.exe):
        ev["recorded_exe"] = recorded_exe
        ev["os_exe"] = sup.exe
        return Check(4, "os-liveness", title, WARN,
                     f"pid {sup.pid} runs {sup.exe}, but supervisor.pid recorded {recorded_exe}",
                     f"'{cmd('restart')}' (the interpreter was replaced under the running supervisor)", ev)
    answer = _control_answer(f)
    ev["control"] = answer or "answered"
    if answer:
        return Check(4, "os-liveness", title, FAIL,
                     f"pid {sup.pid} is alive and holds the lock but does not answer control requests: {answer}",
                     f"'{cmd('restart')}'; if that hangs, kill {sup.pid} (the service manager or the next start "
                     "replaces it)", ev)
    return Check(4, "os-liveness", title, PASS,
                 f"pid {sup.pid} alive ({sup.name}), create time matches, answers control requests", evidence=ev)


def _control_answer(f: Facts) -> str:
    """'' when the supervisor answered the status request; otherwise what went wrong."""
    if not f.live.ok:
        return f.live.problem(f.budget)
    status = f.live.value
    if getattr(status, "source", "") == "live":
        return ""
    problems = [p for p in getattr(status, "problems", []) if "control" in p or "refused" in p]
    return problems[0] if problems else "no answer"


def _stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int((ts % 1) * 100):02d}"


def _same_file(a: str, b: str) -> bool:
    import os

    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


# ------------------------------------------------------------------------------------------ [5]


def state_and_age(f: Facts, cmd: Cmd) -> Check:
    title = "state and its age, per program"
    r = f.records
    ev: dict[str, Any] = {"path": str(f.home.state_file)}
    if r.state.problem:
        ev["problem"] = r.state.problem
        return Check(5, "state", title, FAIL, f"state.json is unusable: {r.state.problem}",
                     f"'{cmd('restart')}' rewrites it (a running supervisor rewrites it on its next change)", ev)
    if r.state.data is None:
        return Check(5, "state", title, SKIP, "no state.json: this daemon has not run yet", evidence=ev)
    data = r.state.data
    updated = data.get("updated_at") or r.state_mtime
    ev["written"] = _when(updated, f.now)
    ev["writer_pid"] = r.state_supervisor.get("pid")
    items: list[Item] = []
    worst = PASS
    hint = ""
    for program in f.programs:
        entry = program.entry
        if entry is None:
            items.append(Item(program.name, SKIP, "not started by the last supervisor"))
            continue
        state = str(entry.get("state", "unknown"))
        since = _when(entry.get("since"), f.now)
        restarts = int(entry.get("restarts") or 0)
        reason = str(entry.get("reason") or "")
        text = f"{state} since {since}" + (f", {restarts} restarts" if restarts else "") + (f" ({reason})" if reason else "")
        result = PASS
        if state == "crashloop":
            result = FAIL
            hint = hint or (f"read why it dies: '{cmd('logs')} --program {program.name} -n 50'; fix it, then "
                            f"'{cmd('restart')} --program {program.name}'")
        elif state == "config-error":
            result = FAIL
            hint = hint or (f"it exited 78 (configuration error) and stays down: fix its configuration "
                            f"('{cmd('logs')} --program {program.name}'), then '{cmd('start')} --program {program.name}'")
        elif state == "backoff":
            result = WARN
            hint = hint or f"it died quickly and waits to restart: '{cmd('logs')} --program {program.name}'"
        elif state == "exited":
            last = entry.get("last_exit") or {}
            code = last.get("code") if isinstance(last, dict) else None
            if code not in (0, None):
                result = WARN
                hint = hint or f"it exited {code} and is not restarted by its policy: '{cmd('logs')} --program {program.name}'"
        elif state not in UP + TRANSIENT + ("stopped",):
            result = WARN
            hint = hint or f"unknown state {state!r}: '{cmd('restart')} --program {program.name}'"
        items.append(Item(program.name, result, text))
        worst = _worse(worst, result)
    counts: dict[str, int] = {}
    for program in f.programs:
        state = str((program.entry or {}).get("state", "not started"))
        counts[state] = counts.get(state, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    if not r.lock.held and r.state_supervisor.get("state") in ("running", "stopping"):
        # The supervisor that wrote this is gone: these states are history, not the present.
        return Check(5, "state", title, WARN,
                     f"stale: written {ev['written']} by supervisor pid {ev['writer_pid']}, which is gone; "
                     f"it last said: {summary}", _stale_hint(cmd), ev, items)
    bad = [i for i in items if i.result in (FAIL, WARN)]
    if bad:
        summary = "; ".join(f"{i.name}: {i.summary}" for i in bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")
    else:
        summary = f"{summary} (written {ev['written']})"
    return Check(5, "state", title, worst, summary, hint if worst != PASS else "", ev, items)


def _worse(a: str, b: str) -> str:
    order = {SKIP: 0, PASS: 1, WARN: 2, FAIL: 3}
    return a if order[a] >= order[b] else b


# ------------------------------------------------------------------------------------------ [6]


def last_event(f: Facts, cmd: Cmd) -> Check:
    from ..store.events import EVENTS

    title = "last lifecycle event"
    r = f.records
    ev: dict[str, Any] = {"path": str(f.home.events_file)}
    if r.events_problem:
        return Check(6, "last-event", title, WARN, r.events_problem, f"check the permissions of {f.home.path}", ev)
    events = [e for e in r.events if e.get("event") != "control"]
    if not events:
        return Check(6, "last-event", title, SKIP, "the event ledger is empty (never started)", evidence=ev)
    last = events[-1]
    ev["last"] = _fmt(last, f.now)
    meaning = EVENTS.get(str(last.get("event")), "")
    # The supervisor's own story: its last start without a matching stop, while nobody holds the lock.
    sup_events = [e for e in events if e.get("program") is None
                  and (str(e.get("event", "")).startswith("supervisor-") or e.get("event") == "stale-cleared")]
    if sup_events and not r.lock.held and sup_events[-1].get("event") not in ("supervisor-stop", "stale-cleared"):
        start = next((e for e in reversed(sup_events) if e.get("event") == "supervisor-start"), sup_events[-1])
        ev["supervisor"] = _fmt(start, f.now)
        return Check(6, "last-event", title, WARN,
                     f"supervisor pid {start.get('pid')} started {_when(start.get('ts'), f.now)} and never logged a "
                     "clean stop: it was killed", _stale_hint(cmd), ev)
    # The newest event of each program (and of the supervisor) tells its story; failures that the
    # program has not recovered from since are what a user needs to see.
    current = {p.name: str((p.entry or {}).get("state", "")) for p in f.programs}
    seen: set[Any] = set()
    found: list[tuple[str, dict[str, Any]]] = []
    for event in reversed(events):
        name, kind = event.get("program"), str(event.get("event"))
        key = name if name is not None else ("supervisor", kind)
        if key in seen:
            continue
        seen.add(key)
        if name is not None and kind in _FAIL_EVENTS and current.get(name) not in UP:
            found.append((FAIL, event))
        elif name is not None and kind in _WARN_EVENTS and current.get(name) not in UP:
            found.append((WARN, event))
        elif kind == "breakaway-denied" or (kind == "log-write-failed" and float(event.get("ts") or 0) > f.now - 3600):
            found.append((WARN, event))
    found.sort(key=lambda pair: (pair[0] != FAIL, -float(pair[1].get("ts") or 0)))
    if found:
        result, event = found[0]
        name, kind = event.get("program"), str(event.get("event"))
        ev["event"] = _fmt(event, f.now)
        if len(found) > 1:
            ev["also"] = "; ".join(_fmt(e, f.now) for _, e in found[1:4])
        text = f"{name or 'supervisor'}: {kind} {_when(event.get('ts'), f.now)}: {EVENTS.get(kind, '')}"
        if kind == "breakaway-denied":
            hint = f"register it with a service manager so no app's job owns it: '{cmd('install')}'"
        elif kind == "log-write-failed":
            detail = event.get("detail") or {}
            text += f" ({detail.get('error', '')})" if isinstance(detail, dict) and detail.get("error") else ""
            hint = "free space on that disk or fix its permissions (see [11])"
        else:
            hint = f"'{cmd('logs')} --program {name} -n 50' shows why; '{cmd('logs')} --events' the history"
        return Check(6, "last-event", title, result, text, hint, ev)
    return Check(6, "last-event", title, PASS,
                 f"{last.get('event')} {_when(last.get('ts'), f.now)}" + (f": {meaning}" if meaning else ""), evidence=ev)


_FAIL_EVENTS = ("crashloop", "config-error", "spawn-failed", "ready-timeout")
_WARN_EVENTS = ("backoff", "kill")


def _fmt(event: dict[str, Any], now: float) -> str:
    who = event.get("program") or "supervisor"
    pid = f" pid {event['pid']}" if event.get("pid") else ""
    detail = event.get("detail") or {}
    extra = " ".join(f"{k}={v}" for k, v in detail.items()) if isinstance(detail, dict) else str(detail)
    return f"{_when(event.get('ts'), now)}: {who}{pid} {event.get('event')} {extra}".rstrip()[:300]


PROBES = (pid_record, lock, records_agree, os_liveness, state_and_age, last_event)
