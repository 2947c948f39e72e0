#!/usr/bin/env python3
"""The supervisor's memory against supervisord's, quickly (about a minute; no restarts, no idle window).

    python3 bench/supervisor_memory.py                      # N = 1, 100, 500, 1000, supervisord side by side
    python3 bench/supervisor_memory.py --n 1 500 --no-supervisord
    python3 bench/supervisor_memory.py --sd-dir /tmp/sd     # keep supervisord's pip install between runs

For each N, a real supervisor runs N ``sleep`` programs (``daemonkit start --spec``, the same spec and
environment as ``supervisor_bench.py``, compiled bytecode as an installed package has it); once
``start`` has returned (its answer carries the whole state) and the coalesced state write is done,
it reads ``/proc/PID/smaps_rollup`` of
the supervisor and of its sentinel: PSS (shared pages divided among the processes mapping them, what
the issue's target is about) and USS (private pages only, which does not depend on how many other
Python processes share libpython at that moment). supervisord 4.x (pip-installed by
``supervisor_bench.Supervisord``) runs the same N ``sleep`` programs and is measured the same way
after it has started them all. Memory does not depend on the machine's load, so one sample per N is
enough; ``--repeat`` takes the median of several.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import supervisor_bench as sb  # noqa: E402  (the installer and spec writer live there)

SETTLE_S = 1.0  # after start returns: the coalesced state write, the sentinel's first batch


class SleepProgram:
    """Stands in for supervisor_bench's Probe: every program is a plain ``sleep``."""

    @staticmethod
    def argv() -> list[str]:
        return ["sleep", "1000000"]

    def drain(self) -> None:
        pass


def smaps(pid: int) -> dict[str, int]:
    """KiB figures of one process: pss, uss (private clean + dirty), rss."""
    out = {"pss": 0, "uss": 0, "rss": 0}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key == "Pss":
                out["pss"] = int(rest.split()[0])
            elif key == "Rss":
                out["rss"] = int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                out["uss"] += int(rest.split()[0])
    return out


def median_of(samples: list[dict[str, int]]) -> dict[str, int]:
    return {k: int(statistics.median(s[k] for s in samples)) for k in samples[0]}


def measure_daemonkit(dk: sb.Daemonkit, n: int) -> dict[str, Any]:
    spec = dk.write_spec(n, SleepProgram())  # type: ignore[arg-type]
    started = dk.cli("start", "--spec", str(spec))
    if started.returncode != 0:
        return {"error": started.stderr.strip()[-500:]}
    try:
        time.sleep(SETTLE_S)
        sup = dk.supervisor_pid()
        sentinel = dk.sentinel_pid(sup)
        return {"supervisor": smaps(sup), "sentinel": smaps(sentinel) if sentinel else None}
    finally:
        stopped = dk.cli("stop", dk.name)
        if stopped.returncode != 0:
            print(f"daemonkit stop failed: {stopped.stderr.strip()[-300:]}", file=sys.stderr)


def measure_supervisord(sd: sb.Supervisord, n: int) -> dict[str, Any]:
    import psutil

    conf = sd.conf(n, SleepProgram())  # type: ignore[arg-type]
    proc = subprocess.Popen([sb.PY, "-m", "supervisor.supervisord", "-c", str(conf)], env=sd.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        parent = psutil.Process(proc.pid)
        sb.wait_until(lambda: len(parent.children()) >= n, timeout=300, interval=0.02)
        time.sleep(SETTLE_S + 1.0)  # its 1 s tick marks them RUNNING
        return {"supervisor": smaps(proc.pid)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def install_supervisord(sd_dir: Path | None, work: Path) -> tuple[sb.Supervisord, str]:
    sd = sb.Supervisord(sd_dir or work)
    sd.work = work  # its config, socket and logs stay in this run's temp dir
    if sd_dir is not None and (sd.target / "supervisor").is_dir():
        sd.env = dict(os.environ, PYTHONPATH=str(sd.target))
        sd.version = subprocess.run([sb.PY, "-c", "import supervisor.options as o; print(o.VERSION)"],
                                    env=sd.env, capture_output=True, text=True).stdout.strip()
        return sd, ""
    return sd, sd.install()


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def report(results: dict[str, Any]) -> str:
    out = [f"machine: {results['machine']}", f"supervisord: {results['supervisord']}", "",
           "| N | daemonkit PSS MiB (USS) | sentinel PSS MiB | supervisord PSS MiB (USS) | dk/sd PSS "
           "| dk+sentinel/sd PSS | dk per program KiB (PSS, from N=1) |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    first: dict[str, Any] | None = None
    for n, run in results["runs"].items():
        dk, sd = run["daemonkit"], run.get("supervisord") or {}
        if "error" in dk:
            out.append(f"| {n} | error: {dk['error']} | | | | | |")
            continue
        sup, sent = dk["supervisor"], dk.get("sentinel") or {"pss": 0}
        first = first or {"n": int(n), "pss": sup["pss"]}
        per = (f"{(sup['pss'] - first['pss']) / (int(n) - first['n']):.1f}" if int(n) != first["n"] else "")
        sd_sup = sd.get("supervisor")
        row = [n, f"{mib(sup['pss'])} ({mib(sup['uss'])})", mib(sent["pss"]),
               f"{mib(sd_sup['pss'])} ({mib(sd_sup['uss'])})" if sd_sup else sd.get("error", "n/a"),
               f"{sup['pss'] / sd_sup['pss']:.2f}x" if sd_sup else "",
               f"{(sup['pss'] + sent['pss']) / sd_sup['pss']:.2f}x" if sd_sup else "", per]
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 100, 500, 1000])
    parser.add_argument("--repeat", type=int, default=1, help="samples per N (median)")
    parser.add_argument("--no-supervisord", action="store_true")
    parser.add_argument("--sd-dir", type=Path, help="install supervisord here once and reuse it")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("this bench reads /proc: Linux only", file=sys.stderr)
        return 2
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    results: dict[str, Any] = {"machine": sb.machine(), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="dkmem-") as tmp:
        work = Path(tmp)
        sd, why = (None, "skipped (--no-supervisord)") if args.no_supervisord else install_supervisord(args.sd_dir, work)
        results["supervisord"] = why or f"supervisor {sd.version} from PyPI"
        dk = sb.Daemonkit(work)
        # A first run fills the private bytecode cache with the standard library modules the supervisor
        # imports (sb.Daemonkit compiles only daemonkit's): otherwise the first N measured would pay
        # for compiling them (~1 MiB), which an installed Python never does.
        measure_daemonkit(dk, 1)
        for n in args.n:
            samples = [measure_daemonkit(dk, n) for _ in range(args.repeat)]
            good = [s for s in samples if "error" not in s]
            run: dict[str, Any] = {"daemonkit": samples[0] if not good else {
                "supervisor": median_of([s["supervisor"] for s in good]),
                "sentinel": median_of([s["sentinel"] for s in good]) if all(s["sentinel"] for s in good) else None}}
            if sd is not None and not why:
                try:
                    run["supervisord"] = {"supervisor": median_of(
                        [measure_supervisord(sd, n)["supervisor"] for _ in range(args.repeat)])}
                except Exception as exc:  # noqa: BLE001 - report and go on
                    run["supervisord"] = {"error": repr(exc)}
            print(f"N={n}: {json.dumps(run)}", file=sys.stderr, flush=True)
            results["runs"][str(n)] = run
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
