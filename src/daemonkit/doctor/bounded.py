"""Run independent look-ups in parallel, each bounded in time.

A hung ``systemctl`` or ``schtasks`` must turn into a FAIL that says "timed out", never into a hung
``status``. Look-ups run in *daemon* threads (a ThreadPoolExecutor's threads are joined at interpreter
exit, so one stuck call would keep the CLI from exiting); whatever has not finished by the deadline
is reported as timed out and abandoned. Commands run through ``CappedRunner`` are also killed by
their own timeout, so an abandoned call does not leave a process behind for long.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """What a bounded call produced: a value, an error, or a timeout."""

    value: T | None = None
    error: BaseException | None = None
    timed_out: bool = False
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    def problem(self, budget: float) -> str:
        if self.timed_out:
            return f"timed out after {budget:g}s"
        if self.error is not None:
            message = getattr(self.error, "message", None)  # DaemonkitError: what, why and hint already
            return message if isinstance(message, str) else f"{type(self.error).__name__}: {self.error}"
        return ""


class _Job(threading.Thread):
    def __init__(self, name: str, func: Callable[[], Any]) -> None:
        super().__init__(name=f"doctor-{name}", daemon=True)
        self.func = func
        self.outcome: Outcome[Any] = Outcome()
        self.done = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        try:
            self.outcome.value = self.func()
        except BaseException as exc:  # reported as the probe's evidence, never raised into the CLI
            self.outcome.error = exc
        finally:
            self.outcome.elapsed = time.perf_counter() - start
            self.done.set()


def run_bounded(jobs: Mapping[str, Callable[[], Any]], budget: float) -> dict[str, Outcome[Any]]:
    """Run every job in its own daemon thread; wait at most ``budget`` seconds for all of them together."""
    started = {name: _Job(name, func) for name, func in jobs.items()}
    for job in started.values():
        job.start()
    deadline = time.monotonic() + budget
    results: dict[str, Outcome[Any]] = {}
    for name, job in started.items():
        if not job.done.wait(max(0.0, deadline - time.monotonic())):
            results[name] = Outcome(timed_out=True, elapsed=budget)
        else:
            results[name] = job.outcome
    return results


def map_bounded(func: Callable[[T], Any], items: Sequence[T], budget: float, workers: int = 16) -> list[Outcome[Any]]:
    """``func`` over ``items`` on up to ``workers`` daemon threads; items not done by the deadline time out."""
    outcomes: list[Outcome[Any]] = [Outcome(timed_out=True, elapsed=budget) for _ in items]
    if not items:
        return outcomes
    lock = threading.Lock()
    cursor = iter(range(len(items)))
    finished = threading.Event()
    remaining = [len(items)]

    def worker() -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            start = time.perf_counter()
            outcome: Outcome[Any] = Outcome()
            try:
                outcome.value = func(items[index])
            except Exception as exc:
                outcome.error = exc
            outcome.elapsed = time.perf_counter() - start
            with lock:
                outcomes[index] = outcome
                remaining[0] -= 1
                if remaining[0] == 0:
                    finished.set()

    for i in range(min(workers, len(items))):
        threading.Thread(target=worker, name=f"doctor-map-{i}", daemon=True).start()
    finished.wait(budget)
    with lock:
        return list(outcomes)


class CappedRunner:
    """Wraps a backend ``Runner`` so that no command it runs outlives ``deadline`` (``time.monotonic()``).

    Each command gets what is left of the budget as its timeout (the runner kills it then); once the
    budget is spent, further commands are not started at all but answered as timed out. So a look-up
    abandoned at the deadline leaves no process behind.
    """

    def __init__(self, inner: Any, deadline: float) -> None:
        self.inner = inner
        self.deadline = deadline

    def run(self, argv: Sequence[str], *, timeout: float = 30.0, input: str | None = None,
            env: Mapping[str, str] | None = None) -> Any:
        left = self.deadline - time.monotonic()
        if left <= 0.01:
            from ..backends.base import CommandResult

            return CommandResult(tuple(str(a) for a in argv), -1, timed_out=True)
        return self.inner.run(argv, timeout=min(timeout, left), input=input, env=env)
