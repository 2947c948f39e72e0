"""Benchmark: wall time of `daemonkit status NAME --deep` for N = 1, 100, 500, 1000 programs.

Each N gets a real supervisor running N `sleep` programs. Every run is a fresh interpreter, as a user
would type it; the floor is a bare `python -c pass`, measured interleaved in the same run, so the ratio
holds on a loaded machine. Also reported: the in-process time of `doctor.diagnose()` (what a host app
pays when it calls the library directly) and the plain `status` for comparison.

    python3 bench/status_deep.py [--runs 15] [--sizes 1,100,500,1000] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
HEADING = "## status --deep"


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1, 3):
        raise RuntimeError(f"{argv} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered) * 1000, p95 * 1000


def bench_size(n: int, runs: int, env: dict[str, str]) -> dict[str, float]:
    sys.path.insert(0, str(SRC))
    from daemonkit import api
    from daemonkit.doctor import diagnose
    from daemonkit.spec import Program, Spec

    sleep = shutil.which("sleep") or "sleep"
    spec = Spec(name=f"bench{n}", programs=tuple(Program(f"p{i}", (sleep, "3600")) for i in range(n)))
    home = api.save_spec(spec)
    api.start_supervisor(spec, home, timeout=120)
    try:
        name = spec.name
        deep_argv = [sys.executable, "-m", "daemonkit", "status", name, "--deep"]
        plain_argv = [sys.executable, "-m", "daemonkit", "status", name]
        floor_argv = [sys.executable, "-c", "pass"]
        timed(deep_argv, env)  # warm the page cache and the bytecode
        floor, deep, plain, inproc = [], [], [], []
        for _ in range(runs):
            floor.append(timed(floor_argv, env))
            deep.append(timed(deep_argv, env))
            plain.append(timed(plain_argv, env))
            start = time.perf_counter()
            report = diagnose(spec, home)
            inproc.append(time.perf_counter() - start)
        bad = [c for c in report.checks if c.result == "FAIL"]
        if bad:
            raise RuntimeError(f"N={n}: the daemon under test is not healthy: {bad[0].summary}")
    finally:
        api.stop(spec, home, timeout=120)
    result = {"n": n}
    for key, samples in (("floor", floor), ("deep", deep), ("plain", plain), ("inproc", inproc)):
        result[f"{key}_median"], result[f"{key}_p95"] = stats(samples)
    result["ratio"] = result["deep_median"] / result["floor_median"]
    return result


def table(rows: list[dict[str, float]], runs: int) -> str:
    lines = [
        HEADING,
        "",
        f"`python3 bench/status_deep.py` on {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{runs} runs per N, median / p95 in ms. Each `status --deep` is a fresh interpreter running all 12 "
        "probes against a live supervisor with N `sleep` programs; *floor* is `python3 -c pass` measured "
        "interleaved in the same run; *in-process* is `daemonkit.doctor.diagnose()` called from a warm "
        "interpreter (what a host app pays). *plain status* shows what the probes add over `status`. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} on this shared 2-core machine, so compare columns "
        "within a row (the floor moves with the load).",
        "",
        "| N | floor | status --deep | ratio to floor | status --deep minus floor | plain status | in-process diagnose() |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:.0f} | {r['floor_median']:.0f} / {r['floor_p95']:.0f} | {r['deep_median']:.0f} / "
            f"{r['deep_p95']:.0f} | {r['ratio']:.2f}x | {r['deep_median'] - r['floor_median']:.0f} | "
            f"{r['plain_median']:.0f} / {r['plain_p95']:.0f} | {r['inproc_median']:.1f} / {r['inproc_p95']:.1f} |")
    lines.append("")
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) only this benchmark's section: other sections belong to other benchmarks."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find(HEADING + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + ("\n" + text[end + 1:] if end != -1 else "")
    path.write_text(text.rstrip("\n") + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--sizes", default="1,100,500,1000")
    parser.add_argument("--write", metavar="FILE", help="put the table into FILE under its own heading")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dk-bench-deep-"))
    # Measure what an installed daemonkit costs: pip compiles bytecode at install time, so the runs must
    # not recompile every module from source (PYTHONDONTWRITEBYTECODE is set in some shells and in CI).
    # The cache goes under tmp, not into the checkout.
    cache = {"PYTHONPYCACHEPREFIX": str(tmp / "pycache")}
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    env = {**os.environ, "DAEMONKIT_HOME": str(tmp), "PYTHONPATH": str(SRC), **cache}
    os.environ.update(DAEMONKIT_HOME=str(tmp), PYTHONPATH=str(SRC), **cache)
    rows = []
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            rows.append(bench_size(n, args.runs if n < 500 else max(5, args.runs // 2), env))
            r = rows[-1]
            print(f"N={n}: deep {r['deep_median']:.0f} ms (p95 {r['deep_p95']:.0f}), floor {r['floor_median']:.0f} ms, "
                  f"ratio {r['ratio']:.2f}, in-process {r['inproc_median']:.1f} ms", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    section = table(rows, args.runs)
    print(section)
    if args.write:
        write_section(ROOT / args.write if not os.path.isabs(args.write) else Path(args.write), section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
