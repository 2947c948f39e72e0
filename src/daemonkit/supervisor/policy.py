"""Restart decisions, as pure functions of the exit and the recent history (easy to test, no clock).

Exit-code contract (the same on every OS and mapped onto every backend):
    0   done: restarted only under ``restart = "always"``
    75  (EX_TEMPFAIL) restart now: not counted as a crash, no backoff
    78  (EX_CONFIG) configuration error: no restart until the next explicit start
    any other code or a signal: a failure, restarted under "always" and "on-failure"
"""

from __future__ import annotations

import random
from typing import MutableSequence, NamedTuple

from ..spec import Backoff

EXIT_RESTART_NOW = 75
EXIT_CONFIG_ERROR = 78


class Decision(NamedTuple):  # not a dataclass: the supervisor would import dataclasses for it (see spec.py)
    action: str  # "restart" | "stay-exited" | "config-error" | "crashloop"
    delay: float = 0.0
    counted_as_crash: bool = False
    reason: str = ""


def is_failure(returncode: int | None, signalled: bool) -> bool:
    return signalled or returncode != 0


def decide(policy: str, backoff: Backoff, *, returncode: int | None, signalled: bool, uptime: float,
           quick_deaths: int, recent_starts: MutableSequence[float], now: float, rng: random.Random) -> Decision:
    """What to do after a program's main process exited (not on a requested stop).

    ``quick_deaths`` counts consecutive deaths before ``min_uptime`` *including this one if quick*;
    ``recent_starts`` holds the monotonic times of recent starts, oldest first (pruned here to the
    crash-loop window; a list or a deque).
    """
    if not signalled and returncode == EXIT_CONFIG_ERROR:
        return Decision("config-error", reason="exit 78: configuration error")
    if not signalled and returncode == EXIT_RESTART_NOW:
        return Decision("restart", 0.0, reason="exit 75: restart requested by the program")
    failed = is_failure(returncode, signalled)
    if policy == "never" or (policy == "on-failure" and not failed):
        return Decision("stay-exited", reason="exited 0" if not failed else "restart policy is never")
    while recent_starts and now - recent_starts[0] > backoff.crashloop_window:
        del recent_starts[0]
    if len(recent_starts) >= backoff.crashloop_restarts:
        return Decision("crashloop", backoff.crashloop_cooldown, True,
                        f"{len(recent_starts)} starts within {backoff.crashloop_window:g}s")
    if uptime >= backoff.min_uptime or quick_deaths <= 0:
        return Decision("restart", 0.0, failed, "stable run ended")
    return Decision("restart", backoff_delay(backoff, quick_deaths, rng), True,
                    f"died after {uptime:.3f}s ({quick_deaths} quick death(s) in a row)")


def backoff_delay(backoff: Backoff, quick_deaths: int, rng: random.Random) -> float:
    """``initial * 2**(n-1)`` capped at ``max``, with ±20% jitter so that many programs that died together
    do not restart in lockstep."""
    base = min(backoff.max, backoff.initial * (2 ** min(quick_deaths - 1, 30)))
    return min(backoff.max, base * rng.uniform(0.8, 1.2))
