"""Soak: kill supervised programs at random for N minutes and check that every death is noticed and
restarted, how fast, and whether the supervisor's memory and descriptors stay flat.

Not part of CI (it runs for minutes). Example, from the repository root:

    python3 bench/soak.py --programs 100 --minutes 4
    python3 bench/soak.py --programs 100 --minutes 30 --json > soak.json

How it measures: the supervisor writes a ``spawn`` and an ``exit`` event (wall clock) for every start
and death into ``events.jsonl``; the soak notes the wall clock right before each ``kill -9``. Restart
latency = the program's next ``spawn`` after the kill minus the kill time (noticing the death + the
restart policy + spawning the new process). A kill with no ``exit`` of that pid, or no new ``spawn``
within --missed-after seconds, is a missed death / missed restart. Only programs that have been up
longer than ``min_uptime`` are killed, so every restart is the immediate kind (not a backoff).
Supervisor RSS and open descriptors are sampled every --sample seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
MIN_UPTIME = 0.5


class EventTail:
    """Reads new lines of events.jsonl as they are appended, across rotations (events.jsonl → .1)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = None
        self.ino = None
        self.buf = b""

    def _open(self) -> None:
        try:
            self.f = open(self.path, "rb")
            self.ino = os.fstat(self.f.fileno()).st_ino
        except FileNotFoundError:
            self.f = None

    def read(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.f is None:
            self._open()
            if self.f is None:
                return out
        while True:
            out += self._drain()
            try:
                ino = os.stat(self.path).st_ino
            except FileNotFoundError:
                return out
            if ino == self.ino:
                return out
            # Rotated: what is left in the old file was drained above; continue with the new one.
            self.f.close()
            self.buf = b""
            self._open()
            if self.f is None:
                return out

    def _drain(self) -> list[dict[str, Any]]:
        assert self.f is not None
        data = self.buf + self.f.read()
        lines = data.split(b"\n")
        self.buf = lines.pop()  # a partial last line waits for its end
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemonkit", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def trend(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope (units per minute) of (seconds, value) samples."""
    if len(samples) < 3:
        return 0.0
    xs = [s[0] / 60 for s in samples]
    ys = [s[1] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="dksoak-"))
    env = dict(os.environ, DAEMONKIT_HOME=str(root),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    sleep = shutil.which("sleep") or "/bin/sleep"
    import tomli_w

    backoff = {"min_uptime": MIN_UPTIME, "crashloop_restarts": 1_000_000, "crashloop_window": 60.0}
    programs = {f"p{i:04d}": {"argv": [sleep, "1000000"], "restart": "always", "backoff": backoff,
                              "stop_grace": 2.0} for i in range(args.programs)}
    spec = root.parent / f"{root.name}.toml"
    spec.write_text(tomli_w.dumps({"name": "soak", "programs": programs}))
    started = cli(env, "start", "soak", "--spec", str(spec))
    if started.returncode != 0:
        raise SystemExit(f"soak: start failed: {started.stderr}")
    status = json.loads(cli(env, "status", "soak", "--json").stdout)
    supervisor = psutil.Process(status["supervisor_pid"])
    tail = EventTail(root / "soak" / "events.jsonl")

    current: dict[str, tuple[int, float]] = {}  # program -> (pid, spawn ts)
    exits: set[int] = set()
    spawns: dict[str, list[float]] = {}
    kills: list[tuple[str, int, float]] = []
    killed: set[int] = set()
    samples: list[dict[str, float]] = []

    def absorb() -> None:
        for event in tail.read():
            name, pid, ts = event.get("program"), event.get("pid"), event.get("ts")
            if event["event"] == "spawn" and name:
                current[name] = (pid, ts)
                spawns.setdefault(name, []).append(ts)
            elif event["event"] == "exit" and pid:
                exits.add(pid)

    def sample(t0: float) -> None:
        try:
            samples.append({"t": round(time.monotonic() - t0, 1), "rss_mib": supervisor.memory_info().rss / 2**20,
                            "fds": supervisor.num_fds(), "children": len(supervisor.children())})
        except psutil.Error:
            samples.append({"t": round(time.monotonic() - t0, 1), "rss_mib": float("nan"), "fds": -1, "children": -1})

    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    next_sample = t0
    absorb()
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_sample:
            sample(t0)
            next_sample = now + args.sample
        absorb()
        wall = time.time()
        eligible = [n for n, (pid, ts) in current.items()
                    if wall - ts > MIN_UPTIME + 0.2 and pid not in exits and pid not in killed]
        if eligible:
            name = rng.choice(eligible)
            pid = current[name][0]
            try:
                proc = psutil.Process(pid)
                # Never a recycled pid (it must be our supervisor's child), never a zombie (already dead,
                # not yet reaped: killing it again would count one death twice).
                if proc.ppid() == supervisor.pid and proc.status() != psutil.STATUS_ZOMBIE:
                    t_kill = time.time()
                    os.kill(pid, signal.SIGKILL)
                    kills.append((name, pid, t_kill))
                    killed.add(pid)
            except (psutil.Error, ProcessLookupError):
                pass
        time.sleep(args.interval)
    sample(t0)
    # Let the last restarts land, then judge every kill.
    deadline = time.monotonic() + args.missed_after
    while time.monotonic() < deadline:
        absorb()
        time.sleep(0.05)
    latencies, missed_restarts, missed_deaths = [], [], []
    for name, pid, t_kill in kills:
        after = [ts for ts in spawns.get(name, []) if ts >= t_kill]
        if pid not in exits:
            missed_deaths.append((name, pid))
        if not after or after[0] - t_kill > args.missed_after:
            missed_restarts.append((name, pid))
        else:
            latencies.append((after[0] - t_kill) * 1000)
    final = json.loads(cli(env, "status", "soak", "--json").stdout)
    up = sum(1 for p in final["programs"] if p["state"] == "running")
    restarts = sum(p["restarts"] for p in final["programs"])
    supervisor_alive = supervisor.is_running()
    stopped = cli(env, "stop", "soak", timeout=300)
    shutil.rmtree(root, ignore_errors=True)
    spec.unlink(missing_ok=True)

    n = len(samples)
    third = max(1, n // 3)
    rss = [(s["t"], s["rss_mib"]) for s in samples]
    fds = [(s["t"], s["fds"]) for s in samples]
    first_rss = statistics.median(v for _, v in rss[:third])
    last_rss = statistics.median(v for _, v in rss[-third:])
    return {
        "programs": args.programs, "minutes": args.minutes, "seed": args.seed, "interval_s": args.interval,
        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
        "kills": len(kills), "restarts_counted_by_supervisor": restarts,
        "missed_deaths": len(missed_deaths), "missed_restarts": len(missed_restarts),
        "latency_ms": {"p50": round(percentile(latencies, 0.5), 2), "p95": round(percentile(latencies, 0.95), 2),
                       "max": round(max(latencies), 2) if latencies else None},
        "programs_up_at_end": up, "supervisor_alive_at_end": supervisor_alive,
        "stop_rc": stopped.returncode,
        "rss_mib": {"first_third_median": round(first_rss, 2), "last_third_median": round(last_rss, 2),
                    "max": round(max(v for _, v in rss), 2), "slope_per_min": round(trend(rss), 3)},
        "fds": {"first": samples[0]["fds"], "last": samples[-1]["fds"], "min": min(v for _, v in fds),
                "max": max(v for _, v in fds), "slope_per_min": round(trend(fds), 3)},
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between kills (default 0.05)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS/fd samples")
    parser.add_argument("--missed-after", type=float, default=5.0, help="a restart later than this is missed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        brief = {k: v for k, v in result.items() if k != "samples"}
        print(json.dumps(brief, indent=2))
        print("samples (t s, RSS MiB, fds, children):")
        for s in result["samples"]:
            print(f"  {s['t']:7.1f}  {s['rss_mib']:6.2f}  {s['fds']:4d}  {s['children']:4d}")
    ok = result["missed_deaths"] == 0 and result["missed_restarts"] == 0 and result["supervisor_alive_at_end"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
