"""``status --deep``: numbered probes that show which signal is lying, and what to do about it.

    from daemonkit.doctor import diagnose
    report = diagnose(spec, home)          # a Report: verdict, checks, exit_code, to_json()
    print(render_deep(report))             # daemonkit.doctor.table

Gathering (``facts``), judging (``probes_*``, pure) and rendering (``table``, pure) are separate, so
each probe is tested on its own and a host app can render the report its own way. Nothing here
changes anything on the machine.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from .model import DEEP_SCHEMA, FAIL, PASS, SKIP, WARN, Check, Item, Report, Verdict

if TYPE_CHECKING:
    from ..paths import Home
    from ..spec import Spec

__all__ = ["DEEP_SCHEMA", "FAIL", "PASS", "SKIP", "WARN", "Check", "Item", "Report", "Verdict", "diagnose",
           "judge"]


def judge(facts: Any, cmd: Callable[[str], str]) -> list[Check]:
    """Run every probe over gathered facts. A probe that raises is a FAIL naming the bug, not a crash."""
    from .probes_records import PROBES as RECORD_PROBES
    from .probes_system import PROBES as SYSTEM_PROBES

    checks = []
    for number, probe in enumerate((*RECORD_PROBES, *SYSTEM_PROBES), start=1):
        start = time.perf_counter()
        try:
            check = probe(facts, cmd)
        except Exception as exc:  # a diagnostic tool must still show the other eleven answers
            check = Check(number, probe.__name__.replace("_", "-"), probe.__name__.replace("_", " "), FAIL,
                          f"the probe itself failed: {type(exc).__name__}: {exc}",
                          "report this as a daemonkit bug, with this output")
        check.elapsed_ms = (time.perf_counter() - start) * 1000
        checks.append(check)
    return checks


def diagnose(spec: "Spec", home: "Home", *, budget: float | None = None, ctx: Any = None,
             cmd: Callable[[str], str] | None = None) -> Report:
    """Probe everything about one daemon. ``budget``: seconds for the slow look-ups together
    (service manager, readiness, control socket); ``ctx``: a backend context (tests record commands);
    ``cmd(verb)``: how follow-up commands are spelled in hints (host apps mount daemonkit's commands
    under their own CLI)."""
    from .. import __version__
    from .facts import DEFAULT_BUDGET, gather
    from .verdict import verdict

    started = time.perf_counter()
    facts = gather(spec, home, budget=DEFAULT_BUDGET if budget is None else budget, ctx=ctx)
    spell = cmd or (lambda verb: f"daemonkit {verb} {spec.name}")
    checks = judge(facts, spell)
    status = None
    if facts.live.ok and facts.live.value is not None:
        status = facts.live.value.to_json()
    report = Report(spec.name, str(home.path), facts.running, checks, verdict(checks, facts.running), facts.now,
                    (time.perf_counter() - started) * 1000, __version__, status)
    return report
