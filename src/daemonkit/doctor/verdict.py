"""The one line on top: healthy, degraded, down or stopped, and which signal disagrees."""

from __future__ import annotations

from typing import Sequence

from .model import FAIL, WARN, Check, Verdict


def verdict(checks: Sequence[Check], running: bool) -> Verdict:
    failed = [c for c in checks if c.result == FAIL]
    warned = [c for c in checks if c.result == WARN]
    numbers = [c.number for c in failed]
    if not failed:
        if not running:
            return Verdict("stopped", "not running; the records agree (nothing stale)")
        text = "every probe passed" if not warned else (
            f"{len(warned)} warning(s): " + "; ".join(f"[{c.number}] {c.title}" for c in warned))
        return Verdict("healthy", text)
    first = failed[0]
    others = ", ".join(f"[{n}]" for n in numbers[1:])
    text = f"[{first.number}] {first.summary}" + (f" (also failing: {others})" if others else "")
    text += f"; fix: {first.hint}"  # ASCII: Windows consoles with an OEM code page mangle a dash
    return Verdict("degraded" if running else "down", text, numbers)
