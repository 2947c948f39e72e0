"""Rendering a deep status for people. Pure: a Report in, a string out (no I/O, no probing)."""

from __future__ import annotations

import re
import textwrap

from ..render import paint
from .model import FAIL, PASS, SKIP, WARN, Report

_RESULT_COLOR = {PASS: "green", FAIL: "red", WARN: "yellow", SKIP: "dim"}
_LEVEL_COLOR = {"healthy": "green", "degraded": "yellow", "down": "red", "stopped": "dim"}
MAX_ITEMS = 10  # per probe, in the table; --json has them all


def render_deep(report: Report, *, color: bool = False, verbose: bool = False, width: int = 100) -> str:
    v = report.verdict
    lines = [paint(f"{report.name}: {v.level}", _LEVEL_COLOR.get(v.level, "bold"), color)
             + (f": {v.text}" if v.text else "")]
    lines.append(paint(f"  home {report.home}  ({report.elapsed_ms:.0f} ms)", "dim", color))
    indent = " " * 11
    for c in report.checks:
        tag = paint(f"{c.result:<4}", _RESULT_COLOR[c.result], color)
        head = f"[{c.number:>2}] {tag}  {c.title}: "
        lines.extend(_wrap(head, c.summary, width, indent))
        shown = c.items if verbose else [i for i in c.items if i.result in (FAIL, WARN)]
        for item in shown[:MAX_ITEMS if not verbose else None]:
            lines.extend(_wrap(f"{indent}- {item.name}: ", f"{item.result} {item.summary}", width, indent + "  "))
        if len(shown) > MAX_ITEMS and not verbose:
            lines.append(f"{indent}- ... {len(shown) - MAX_ITEMS} more (--verbose or --json)")
        if c.result in (FAIL, WARN) or verbose:
            for key, value in c.evidence.items():
                lines.extend(_wrap(f"{indent}{key}: ", str(value), width, indent + "  ", paint_as="dim" if color else ""))
        if c.hint:
            lines.extend(_wrap(f"{indent}fix: ", c.hint, width, indent + "     "))
    return "\n".join(lines)


def _wrap(head: str, text: str, width: int, indent: str, paint_as: str = "") -> list[str]:
    # Width counts visible characters only: colour codes in ``head`` take no space on screen.
    lead = " " * len(_ANSI.sub("", head))
    body = textwrap.wrap(text, max(width, len(lead) + 30), initial_indent=lead, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [lead]
    out = []
    for i, line in enumerate(body):
        prefix, rest = (head, line[len(lead):]) if i == 0 else (indent, line[len(indent):])
        out.append(prefix + (paint(rest, paint_as, True) if paint_as else rest))
    return out


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
