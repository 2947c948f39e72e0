"""What a deep status is made of: checks (one per probe) and the report around them. Plain data.

A probe's result is one of PASS, FAIL, WARN, SKIP. Every FAIL and WARN carries exactly one ``hint`` a
user can act on; ``evidence`` holds what the probe read (paths, pids, ages, command output excerpts),
so a reader can check the verdict instead of trusting it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
RESULTS = (PASS, FAIL, WARN, SKIP)

DEEP_SCHEMA = "daemonkit.status-deep/1"

Scalar = str | int | float | bool | None


@dataclass
class Item:
    """One sub-result of a probe that looks at many things (a program, a log file)."""

    name: str
    result: str
    summary: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "result": self.result, "summary": self.summary}


@dataclass
class Check:
    number: int
    key: str  # stable identifier for scripts: "pid-record", "lock", ...
    title: str
    result: str
    summary: str
    hint: str = ""
    evidence: dict[str, Scalar] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    elapsed_ms: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.hint, str) or not isinstance(self.summary, str):
            raise TypeError(f"probe [{self.number}]: summary and hint are text")
        if self.result not in RESULTS:
            raise ValueError(f"unknown probe result {self.result!r}")
        if self.result in (FAIL, WARN) and not self.hint:
            raise ValueError(f"probe [{self.number}] {self.result} without a fix hint: {self.summary}")

    @property
    def failed(self) -> bool:
        return self.result == FAIL

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number, "key": self.key, "title": self.title, "result": self.result,
            "summary": self.summary, "hint": self.hint or None, "evidence": dict(self.evidence),
            "items": [i.to_json() for i in self.items], "elapsed_ms": round(self.elapsed_ms, 3),
        }


@dataclass
class Verdict:
    level: str  # healthy | degraded | down | stopped
    text: str
    disagree: list[int] = field(default_factory=list)  # numbers of the probes that failed

    @property
    def line(self) -> str:
        return f"{self.level}: {self.text}" if self.text else self.level


@dataclass
class Report:
    name: str
    home: str
    running: bool
    checks: list[Check]
    verdict: Verdict
    generated_at: float
    elapsed_ms: float
    version: str
    status: dict[str, Any] | None = None  # the plain status (daemonkit.status/1), when it could be read

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 on any FAIL, 3 when the daemon is simply not running (LSB)."""
        if any(c.failed for c in self.checks):
            return 1
        return 0 if self.running else 3

    def check(self, number: int) -> Check:
        return next(c for c in self.checks if c.number == number)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": DEEP_SCHEMA, "version": self.version, "name": self.name, "home": self.home,
            "running": self.running, "exit_code": self.exit_code, "generated_at": self.generated_at,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "verdict": {"level": self.verdict.level, "text": self.verdict.text, "line": self.verdict.line,
                        "disagree": list(self.verdict.disagree)},
            "probes": [c.to_json() for c in self.checks],
            "status": self.status,
        }
