#!/usr/bin/env python3
"""Benchmark daemonkit's supervisor against the restart floor and supervisord, in one run.

Not a test (nothing here is asserted); run it by hand on a quiet machine:

    python3 bench/supervisor_bench.py                 # N = 1, 100, 500, 1000; ~6-8 minutes
    python3 bench/supervisor_bench.py --quick         # shorter idle window, fewer repeats
    python3 bench/supervisor_bench.py --n 1 500 --no-supervisord --json out.json

What is measured, for each N (N programs: one probe program plus N-1 ``sleep``s):

* floor: the same probe program killed, reaped and respawned by plain Python in this process
  (``kill`` → ``waitpid`` → ``posix_spawn`` → the new program has written its pid to a FIFO), and the
  same with ``subprocess.Popen``. Every restart figure is also given as a ratio to the posix_spawn floor.
* restart: SIGKILL the probe program, time until its successor has written its pid to the FIFO. One
  floor sample is taken right before each restart; the ratio column divides by the median of those
  interleaved samples (a loaded, noisy machine moves both alike).
* idle: voluntary + involuntary context switches and CPU time of the supervisor (all its threads and,
  for daemonkit, its sentinel) over ``--idle`` seconds with nothing happening.
* memory: PSS (``/proc/PID/smaps_rollup``) of the supervisor; daemonkit's sentinel is listed apart.
* cold start: ``daemonkit start --spec`` until it returns (all programs up: a program without a
  readiness check counts as up after ``min_uptime``, set to 0.05 s here), and until the last program
  was spawned (from the events ledger). supervisord: launch until N children run. Its floor: plain
  ``posix_spawn`` of N ``sleep``s in a tight loop, measured right after (what the machine needs to
  start N processes at all).
* stop: ``daemonkit stop`` until it returns (all N programs gone); supervisord: SIGTERM until it exits.
* status: ``daemonkit status NAME --json`` wall time minus ``python -c pass`` (medians, interleaved);
  supervisord: ``supervisorctl status``.

supervisord is installed from PyPI into a private ``--target`` directory inside the bench's temp dir
(``pip install supervisor``, which compiles its bytecode); if that fails the comparison columns say so.
daemonkit's bytecode is compiled likewise, into a private ``PYTHONPYCACHEPREFIX``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
sys.path.insert(0, str(ROOT / "tests"))  # the polling helper the tests use
from _wait import wait_for  # noqa: E402

PY = sys.executable


# ----------------------------------------------------------------------------------------- helpers


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values) if values else float("nan"), "p95": pct(values, 0.95),
            "n": len(values)}


def ctx_switches(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0




class Probe:
    """A FIFO each incarnation of the probe program writes its pid to, the moment it has started."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "probe.fifo"
        os.mkfifo(self.path, 0o600)
        self.fd = os.open(self.path, os.O_RDWR)  # RDWR: never EOF, never blocks the writers' open
        self.buffer = b""

    def argv(self) -> list[str]:
        # dash starts in well under a millisecond; the same program is used for the floor.
        return ["/bin/sh", "-c", f'echo $$ > "{self.path}"; exec sleep 1000000']

    def next_pid(self, timeout: float = 10.0) -> int:
        import select

        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                raise TimeoutError("the probe program did not report")
            self.buffer += os.read(self.fd, 4096)
        line, self.buffer = self.buffer.split(b"\n", 1)
        return int(line)

    def drain(self) -> None:
        import select

        while select.select([self.fd], [], [], 0)[0]:
            os.read(self.fd, 4096)
        self.buffer = b""

    def close(self) -> None:
        os.close(self.fd)


# ----------------------------------------------------------------------------------------- floor


def measure_floor(probe: Probe, reps: int) -> dict[str, Any]:
    argv = probe.argv()
    devnull = os.open(os.devnull, os.O_RDWR)
    out: dict[str, Any] = {}
    for method in ("posix_spawn", "popen"):
        def spawn(method: str = method) -> int:
            if method == "posix_spawn":
                return os.posix_spawn(argv[0], argv, os.environ, setsid=True,
                                      file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0),
                                                    (os.POSIX_SPAWN_DUP2, devnull, 1)])
            p = subprocess.Popen(argv, stdin=devnull, stdout=devnull, start_new_session=True)
            p.returncode = 0
            return p.pid

        pid = spawn()
        probe.next_pid()
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pid = spawn()
            probe.next_pid()
            samples.append(time.perf_counter() - t0)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        out[method] = summary(samples)
    os.close(devnull)
    probe.drain()
    return out


def floor_sample(probe: Probe, devnull: int) -> float:
    """One floor sample taken between two daemonkit restarts, so both see the same machine state:
    start the probe program, then time kill → waitpid → posix_spawn → reported, then clean up."""
    argv = probe.argv()

    def spawn() -> int:
        return os.posix_spawn(argv[0], argv, os.environ, setsid=True,
                              file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)])

    pid = spawn()
    probe.next_pid()
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pid = spawn()
    probe.next_pid()
    took = time.perf_counter() - t0
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return took


def spawn_floor(n: int) -> float:
    """The cold-start floor: plain ``posix_spawn`` of N ``sleep`` programs in a tight loop (what
    starting N programs costs this machine before any supervisor work), then all killed."""
    devnull = os.open(os.devnull, os.O_RDWR)
    sleep = "/bin/sleep" if os.path.exists("/bin/sleep") else "/usr/bin/sleep"
    pids = []
    t0 = time.perf_counter()
    for _ in range(n):
        pids.append(os.posix_spawn(sleep, ["sleep", "1000000"], os.environ, setsid=True,
                                   file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)]))
    took = time.perf_counter() - t0
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(devnull)
    return took


# ----------------------------------------------------------------------------------------- daemonkit


class Daemonkit:
    name = "bench"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = dict(os.environ, DAEMONKIT_HOME=str(work / "dkhome"),
                        PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
        self.env.pop("NOTIFY_SOCKET", None)
        # Like an installed package (pip compiles bytecode at install time; supervisord's is): without
        # cached bytecode every start compiles daemonkit's modules, which costs time and ~3 MiB.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        subprocess.run([PY, "-m", "compileall", "-q", str(SRC)], env=self.env, check=False,
                       stdout=subprocess.DEVNULL)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "daemonkit", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def write_spec(self, n: int, probe: Probe) -> Path:
        lines = [f'name = "{self.name}"']
        backoff = "[programs.{0}.backoff]\nmin_uptime = 0.05\ncrashloop_restarts = 100000\n"
        for i in range(n):
            argv = probe.argv() if i == 0 else ["sleep", "1000000"]
            lines.append(f"[programs.p{i}]\nargv = {json.dumps(argv)}\nrestart = \"always\"\nstop_grace = 5.0")
            lines.append(backoff.format(f"p{i}"))
        path = self.work / f"spec-{n}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def home(self) -> Path:
        return self.work / "dkhome" / self.name

    def supervisor_pid(self) -> int:
        return int(json.loads((self.home / "supervisor.pid").read_text())["pid"])

    def sentinel_pid(self, sup: int) -> int | None:
        import psutil

        for child in psutil.Process(sup).children():
            if any("sentinel_main" in arg for arg in child.cmdline()):
                return child.pid
        return None

    def probe_pid(self) -> int:
        state = json.loads((self.home / "state.json").read_text())
        return int(state["programs"]["p0"]["pid"])

    def run(self, n: int, probe: Probe, args: argparse.Namespace) -> dict[str, Any]:
        res: dict[str, Any] = {}
        spec = self.write_spec(n, probe)
        probe.drain()
        t0 = time.time()
        started = self.cli("start", "--spec", str(spec))
        t_start = time.time() - t0
        if started.returncode != 0:
            return {"error": started.stderr.strip()[-500:]}
        events = [json.loads(line) for line in (self.home / "events.jsonl").read_text().splitlines()]
        spawns = [e["ts"] for e in events if e["event"] == "spawn"]
        res["cold_start_s"] = round(t_start, 4)
        res["cold_spawn_floor_s"] = round(spawn_floor(n), 4)
        res["cold_all_spawned_s"] = round(max(spawns) - t0, 4)
        sup = self.supervisor_pid()
        sentinel = self.sentinel_pid(sup)
        first = probe.next_pid()
        # restart latency
        samples, floors = [], []
        devnull = os.open(os.devnull, os.O_RDWR)
        pid = first
        for _ in range(args.reps):
            time.sleep(0.12)  # longer than min_uptime: each death follows a stable run
            floors.append(floor_sample(probe, devnull))
            time.sleep(0.02)
            t = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            new = probe.next_pid()
            samples.append(time.perf_counter() - t)
            pid = new
        os.close(devnull)
        res["restart"] = summary(samples)
        res["floor_interleaved"] = summary(floors)
        # idle
        time.sleep(0.5)  # let the coalesced state write happen
        c0, u0 = ctx_switches(sup), cpu_seconds(sup)
        s0 = ctx_switches(sentinel) if sentinel else 0
        time.sleep(args.idle)
        res["idle_wakeups"] = ctx_switches(sup) - c0
        res["idle_cpu_s"] = round(cpu_seconds(sup) - u0, 3)
        res["idle_sentinel_wakeups"] = (ctx_switches(sentinel) - s0) if sentinel else None
        res["idle_window_s"] = args.idle
        res["pss_kib"] = pss_kib(sup)
        res["sentinel_pss_kib"] = pss_kib(sentinel) if sentinel else None
        # status --json vs python -c pass, interleaved
        st, base = [], []
        for _ in range(args.status_reps):
            t = time.perf_counter()
            subprocess.run([PY, "-c", "pass"], env=self.env, check=True)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = subprocess.run([PY, "-m", "daemonkit", "status", self.name, "--json"], env=self.env,
                               capture_output=True)
            st.append(time.perf_counter() - t)
            assert r.returncode == 0, r.stderr
        res["status_json"] = summary(st)
        res["python_pass"] = summary(base)
        res["status_over_python_ms"] = round((statistics.median(st) - statistics.median(base)) * 1000, 1)
        # stop
        t = time.perf_counter()
        stopped = self.cli("stop", self.name)
        res["stop_s"] = round(time.perf_counter() - t, 4)
        if stopped.returncode != 0:
            res["stop_error"] = stopped.stderr.strip()[-300:]
        return res


# ----------------------------------------------------------------------------------------- supervisord


class Supervisord:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.target = work / "supervisord-pkg"
        self.available = ""
        self.version = ""

    def install(self) -> str:
        """'' when installed, else why not."""
        result = subprocess.run([PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                 "--target", str(self.target), "supervisor"], capture_output=True, text=True,
                                timeout=300)
        if result.returncode != 0:
            return f"pip install supervisor failed: {result.stderr.strip()[-300:]}"
        self.env = dict(os.environ, PYTHONPATH=str(self.target))
        self.version = subprocess.run([PY, "-c", "import supervisor.options as o; print(o.VERSION)"],
                                      env=self.env, capture_output=True, text=True).stdout.strip()
        return ""

    def conf(self, n: int, probe: Probe) -> Path:
        sock = self.work / "sd.sock"
        lines = ["[unix_http_server]", f"file={sock}", "",
                 "[supervisord]", f"logfile={self.work / 'sd.log'}", f"pidfile={self.work / 'sd.pid'}",
                 "nodaemon=true", "minfds=8192", "minprocs=2000", "",
                 "[rpcinterface:supervisor]",
                 "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
                 "[supervisorctl]", f"serverurl=unix://{sock}", ""]
        for i in range(n):
            cmd = " ".join(_sh_quote(a) for a in probe.argv()) if i == 0 else "sleep 1000000"
            lines += [f"[program:p{i}]", f"command={cmd.replace('%', '%%')}", "autorestart=true", "startsecs=0",
                      "startretries=100000", "stdout_logfile=NONE", "stderr_logfile=NONE", "stopwaitsecs=5", ""]
        path = self.work / f"sd-{n}.conf"
        path.write_text("\n".join(lines))
        return path

    def run(self, n: int, probe: Probe, args: argparse.Namespace) -> dict[str, Any]:
        import psutil

        res: dict[str, Any] = {}
        conf = self.conf(n, probe)
        probe.drain()
        t0 = time.perf_counter()
        proc = subprocess.Popen([PY, "-m", "supervisor.supervisord", "-c", str(conf)], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            sd = psutil.Process(proc.pid)
            wait_for(lambda: len(sd.children()) >= n, timeout=300, interval=0.01,
                     what=f"supervisord to run {n} programs", error=TimeoutError)
            res["cold_all_spawned_s"] = round(time.perf_counter() - t0, 4)
            pid = probe.next_pid()
            samples = []
            for _ in range(args.sd_reps):
                time.sleep(0.12)
                t = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                new = probe.next_pid(timeout=30)
                samples.append(time.perf_counter() - t)
                pid = new
            res["restart"] = summary(samples)
            time.sleep(1.5)
            c0, u0 = ctx_switches(proc.pid), cpu_seconds(proc.pid)
            time.sleep(args.idle)
            res["idle_wakeups"] = ctx_switches(proc.pid) - c0
            res["idle_cpu_s"] = round(cpu_seconds(proc.pid) - u0, 3)
            res["idle_window_s"] = args.idle
            res["pss_kib"] = pss_kib(proc.pid)
            st = []
            for _ in range(max(3, args.status_reps // 4)):
                t = time.perf_counter()
                subprocess.run([PY, "-m", "supervisor.supervisorctl", "-c", str(conf), "status"], env=self.env,
                               capture_output=True)
                st.append(time.perf_counter() - t)
            res["status"] = summary(st)
            t = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
            res["stop_s"] = round(time.perf_counter() - t, 4)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for child in psutil.process_iter(["cmdline"]):
                if child.info["cmdline"] and child.info["cmdline"][:2] == ["sleep", "1000000"]:
                    child.kill()
        return res


def _sh_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


# ----------------------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                            "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
        with open("/proc/loadavg") as f:
            info["loadavg_at_start"] = f.read().split()[:3]
    except OSError:
        pass
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 100, 500, 1000])
    parser.add_argument("--reps", type=int, default=30, help="restarts per N (daemonkit)")
    parser.add_argument("--sd-reps", type=int, default=5, help="restarts per N (supervisord)")
    parser.add_argument("--floor-reps", type=int, default=200)
    parser.add_argument("--idle", type=float, default=30.0, help="idle window in seconds")
    parser.add_argument("--status-reps", type=int, default=20)
    parser.add_argument("--no-supervisord", action="store_true")
    parser.add_argument("--quick", action="store_true", help="idle 5 s, 10 restarts, 8 status runs")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    if args.quick:
        args.idle, args.reps, args.status_reps, args.sd_reps, args.floor_reps = 5.0, 10, 8, 3, 50
    if not sys.platform.startswith("linux"):
        print("this bench reads /proc: Linux only", file=sys.stderr)
        return 2
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    results: dict[str, Any] = {"machine": machine(), "args": vars(args), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="dkbench-") as tmp:
        work = Path(tmp)
        probe = Probe(work)
        sd = Supervisord(work)
        if args.no_supervisord:
            results["supervisord"] = "skipped (--no-supervisord)"
        else:
            why = sd.install()
            results["supervisord"] = why or f"supervisor {sd.version} from PyPI"
        dk = Daemonkit(work)
        for n in args.n:
            run: dict[str, Any] = {"floor": measure_floor(probe, args.floor_reps)}
            print(f"N={n}: floor {run['floor']['posix_spawn']['median'] * 1e3:.3f} ms", file=sys.stderr, flush=True)
            run["daemonkit"] = dk.run(n, probe, args)
            print(f"N={n}: daemonkit {json.dumps(run['daemonkit'])}", file=sys.stderr, flush=True)
            if not args.no_supervisord and sd.version:
                try:
                    run["supervisord"] = sd.run(n, probe, args)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    run["supervisord"] = {"error": repr(exc)}
                print(f"N={n}: supervisord {json.dumps(run['supervisord'])}", file=sys.stderr, flush=True)
            results["runs"][str(n)] = run
        probe.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


def report(results: dict[str, Any]) -> str:
    def ms(s: float) -> str:
        return f"{s * 1000:.2f}"

    out = [f"machine: {results['machine']}", f"supervisord: {results['supervisord']}", ""]
    out.append("| N | floor posix_spawn ms (median / p95) | floor Popen ms | daemonkit restart ms (median / p95) "
               "| ratio to floor (median / p95) | supervisord restart ms (median / p95) | supervisord ratio |")
    out.append("|---|---|---|---|---|---|---|")
    for n, run in results["runs"].items():
        floor = run["floor"]["posix_spawn"]
        dk = run["daemonkit"]
        sd = run.get("supervisord") or {}
        row = [n, f"{ms(floor['median'])} / {ms(floor['p95'])}", ms(run["floor"]["popen"]["median"])]
        if "restart" in dk:
            r = dk["restart"]
            # The ratio uses the floor sampled between the restarts (same machine state) when there is one.
            base = dk.get("floor_interleaved") or floor
            row += [f"{ms(r['median'])} / {ms(r['p95'])}",
                    f"{r['median'] / base['median']:.2f}x / {r['p95'] / base['median']:.2f}x "
                    f"(floor {ms(base['median'])})"]
        else:
            row += [dk.get("error", "?"), ""]
        if "restart" in sd:
            r = sd["restart"]
            row += [f"{ms(r['median'])} / {ms(r['p95'])}", f"{r['median'] / floor['median']:.0f}x"]
        else:
            row += [sd.get("error", "n/a"), ""]
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    out.append("")
    out.append("| N | idle wakeups (dk / sentinel / supervisord) per window | idle CPU s (dk / sd) | PSS MiB dk "
               "(+ sentinel) | PSS MiB supervisord | dk/sd PSS | cold start s: dk start returns / dk all spawned "
               "/ sd all spawned | stop all s (dk / sd) | status --json over python -c pass ms | "
               "supervisorctl status ms |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for n, run in results["runs"].items():
        dk = run["daemonkit"]
        sd = run.get("supervisord") or {}
        if "error" in dk:
            continue
        dk_pss = dk["pss_kib"] / 1024
        sent = (dk.get("sentinel_pss_kib") or 0) / 1024
        sd_pss = sd.get("pss_kib", 0) / 1024
        row = [n,
               f"{dk['idle_wakeups']} / {dk['idle_sentinel_wakeups']} / {sd.get('idle_wakeups', 'n/a')} "
               f"(per {dk['idle_window_s']:g} s)",
               f"{dk['idle_cpu_s']} / {sd.get('idle_cpu_s', 'n/a')}",
               f"{dk_pss:.1f} (+{sent:.1f})", f"{sd_pss:.1f}" if sd_pss else "n/a",
               f"{dk_pss / sd_pss:.2f}x ({(dk_pss + sent) / sd_pss:.2f}x with sentinel)" if sd_pss else "n/a",
               f"{dk['cold_start_s']:.3f} / {dk['cold_all_spawned_s']:.3f} / {sd.get('cold_all_spawned_s', 'n/a')} "
               f"(floor {dk.get('cold_spawn_floor_s', float('nan')):.3f})",
               f"{dk['stop_s']:.3f} / {sd.get('stop_s', 'n/a')}",
               f"{dk['status_over_python_ms']} (status {ms(dk['status_json']['median'])}, "
               f"python {ms(dk['python_pass']['median'])})",
               ms(sd["status"]["median"]) if "status" in sd else "n/a"]
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
