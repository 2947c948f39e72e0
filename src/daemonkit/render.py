"""Pure rendering of results for people: strings in, strings out, no I/O."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .api import DaemonStatus

_COLORS = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1"}
_STATE_COLOR = {"ready": "green", "running": "green", "starting": "yellow", "stopping": "yellow",
                "backoff": "yellow", "crashloop": "red", "config-error": "red", "orphaned": "red",
                "exited": "dim", "stopped": "dim"}


def paint(text: str, color: str, enabled: bool) -> str:
    return f"\x1b[{_COLORS[color]}m{text}\x1b[0m" if enabled and color in _COLORS else text


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    seconds = max(0.0, (now or time.time()) - ts)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def table(rows: Sequence[Sequence[str]], widths_from: int = 0) -> list[str]:
    if not rows:
        return []
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def render_status(status: "DaemonStatus", *, color: bool = False, now: float | None = None) -> str:
    if status.running:
        head = (f"{status.name}: " + paint("running", "green", color) +
                f" (supervisor pid {status.supervisor_pid}, up {ago(status.supervisor_started_at, now)}"
                + (f", backend {status.backend}" if status.backend else "") + ")")
    else:
        head = f"{status.name}: " + paint("not running", "yellow", color)
    lines = [head]
    rows = [("PROGRAM", "STATE", "PID", "RESTARTS", "SINCE", "DETAIL")]
    for p in status.programs:
        detail = p.status_text or p.reason
        rows.append((p.name, p.state, str(p.pid or "-"), str(p.restarts), ago(p.since, now), detail[:70]))
    for i, line in enumerate(table(rows)):
        if i == 0:
            lines.append("  " + paint(line, "dim", color))
        else:
            state = status.programs[i - 1].state
            lines.append("  " + line.replace(state, paint(state, _STATE_COLOR.get(state, "dim"), color), 1)
                         if color else "  " + line)
    for problem in status.problems:
        lines.append(paint(f"  ! {problem}", "yellow", color))
    return "\n".join(lines)


def render_list(daemons: Sequence["DaemonStatus"]) -> str:
    if not daemons:
        return "no daemons yet (try: daemonkit demo, or daemonkit add NAME -- CMD)"
    rows = [("NAME", "STATE", "PROGRAMS", "HOME")]
    for d in daemons:
        up = sum(1 for p in d.programs if p.state in ("running", "ready"))
        rows.append((d.name, "running" if d.running else "stopped", f"{up}/{len(d.programs)} up", d.home))
    return "\n".join(table(rows))
