"""`status --deep`, probes [1]-[6] and [10]: each fault is made for real (a killed supervisor, a recycled
pid, a corrupt record, a foreign lock holder, a stopped process, a program that exits 78, a port that
closes) and checked in the table and in the JSON, which must validate against docs/status-schema.json."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import jsonschema
import psutil
import pytest

from _supervisor_util import gone
from _wait import wait_for

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "status-schema.json").read_text())
PY = sys.executable
SLEEPER = [PY, "-c", "import time; print('up', flush=True); time.sleep(600)"]


def with_log_cap(spec_text: str, max_bytes: int) -> str:
    """The spec text with every program's log cap set to ``max_bytes`` (dumped specs omit defaults).
    Kept here, not imported from conftest: a module named ``conftest`` may be tests/windows' one."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    import tomli_w

    data = tomllib.loads(spec_text)
    for program in data.get("programs", {}).values():
        program.setdefault("logs", {})["max_bytes"] = max_bytes
    return tomli_w.dumps(data)


def deep(cli: Callable[..., Any], name: str, *extra: str) -> tuple[dict[str, Any], str, int]:
    """Run `status NAME --deep` twice (JSON and table); validate the JSON against the published schema."""
    as_json = cli("status", name, "--deep", "--json", *extra)
    assert as_json.returncode in (0, 1, 3), as_json.stderr
    report = json.loads(as_json.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["exit_code"] == as_json.returncode
    table = cli("status", name, "--deep", *extra)
    assert table.returncode in (0, 1, 3), table.stderr
    return report, table.stdout, as_json.returncode


def probe(report: dict[str, Any], number: int) -> dict[str, Any]:
    return next(p for p in report["probes"] if p["number"] == number)


def results(report: dict[str, Any]) -> dict[int, str]:
    return {p["number"]: p["result"] for p in report["probes"]}


def row(table: str, number: int) -> str:
    """The table line of probe ``number`` (its first line)."""
    return next(line for line in table.splitlines() if line.startswith(f"[{number:>2}] "))


@pytest.fixture
def started(cli, dk_env):  # type: ignore[no-untyped-def]
    """A running one-program daemon 'd'; yields its home."""
    assert cli("add", "d", "--", *SLEEPER).returncode == 0
    result = cli("start", "d")
    assert result.returncode == 0, result.stderr
    return Path(dk_env["DAEMONKIT_HOME"]) / "d"


def test_healthy_daemon_passes_everything(cli, started) -> None:  # type: ignore[no-untyped-def]
    report, table, rc = deep(cli, "d")
    assert rc == 0 and report["running"] and report["verdict"]["level"] == "healthy"
    assert table.splitlines()[0].startswith("d: healthy")
    assert all(r in ("PASS", "SKIP") for r in results(report).values()), results(report)
    for number in (1, 2, 3, 4, 5, 6, 10, 11, 12):
        assert probe(report, number)["result"] == "PASS", probe(report, number)
        assert "PASS" in row(table, number)
    pid = json.loads((started / "supervisor.pid").read_text())
    assert pid["exe"] == PY  # the record names the interpreter, not only argv
    assert probe(report, 3)["evidence"]["resolved_pid"] == pid["pid"]
    assert probe(report, 4)["evidence"]["os_state"] == "alive"
    assert report["status"]["schema"] == "daemonkit.status/1" and report["status"]["source"] == "live"
    # Not installed with a service manager: said plainly, not failed.
    assert probe(report, 7)["result"] == "SKIP" and "not installed" in probe(report, 7)["summary"]


def test_never_started_is_simply_not_running(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "idle", "--", *SLEEPER).returncode == 0
    report, table, rc = deep(cli, "idle")
    assert rc == 3 and report["verdict"]["level"] == "stopped" and not report["running"]
    assert "FAIL" not in results(report).values()
    assert probe(report, 1)["result"] == "SKIP" and probe(report, 3)["result"] == "PASS"
    assert table.splitlines()[0].startswith("idle: stopped")


def test_kill_9_of_the_supervisor_then_stop_clears_the_stale_records(cli, started) -> None:  # type: ignore[no-untyped-def]
    sup = json.loads((started / "supervisor.pid").read_text())["pid"]
    program = json.loads((started / "state.json").read_text())["programs"]["d"]["pid"]
    os.kill(sup, signal.SIGKILL)
    wait_for(lambda: gone(sup))
    report, table, rc = deep(cli, "d")
    assert rc == 1 and report["verdict"]["level"] == "down"
    r = results(report)
    assert (r[1], r[2], r[3], r[4]) == ("PASS", "FAIL", "FAIL", "FAIL"), r
    assert "nobody holds the lock" in probe(report, 2)["summary"]
    assert "stale" in probe(report, 3)["summary"] and f"pid {sup}" in probe(report, 3)["summary"]
    assert probe(report, 4)["evidence"]["os_state"] in ("dead", "zombie")
    assert probe(report, 6)["result"] == "WARN" and "never logged a clean stop" in probe(report, 6)["summary"]
    # The program outlived its supervisor (no parent-death signal needed for the probe to see it).
    if not gone(program):
        assert probe(report, 10)["result"] == "FAIL" and "orphaned" in probe(report, 10)["summary"]
    assert "daemonkit stop d" in probe(report, 2)["hint"]
    assert report["verdict"]["line"].startswith("down: [2]") and "[3]" in report["verdict"]["line"]
    assert "FAIL" in row(table, 2) and "fix: 'daemonkit stop d'" in table
    plain = cli("status", "d")
    assert plain.returncode == 3 and "stale" in plain.stdout and "daemonkit stop d" in plain.stdout

    stopped = cli("stop", "d")
    assert stopped.returncode == 0 and "cleared the stale records" in stopped.stdout
    assert not (started / "supervisor.pid").exists()
    report, table, rc = deep(cli, "d")
    assert rc == 3 and "FAIL" not in results(report).values() and "WARN" not in results(report).values(), results(report)
    assert report["verdict"]["level"] == "stopped"
    assert probe(report, 6)["summary"].startswith("stale-cleared")


def test_recycled_pid_is_caught_and_never_signalled(cli, dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "r", "--", *SLEEPER).returncode == 0
    home = Path(dk_env["DAEMONKIT_HOME"]) / "r"
    bystander = subprocess.Popen([PY, "-c", "import time; time.sleep(600)"])
    try:
        ctime = psutil.Process(bystander.pid).create_time()
        # The record of a supervisor that ran earlier under the same pid number.
        record = {"pid": bystander.pid, "create_time": ctime - 500.0, "argv": ["x"], "exe": PY,
                  "started_at": time.time() - 500, "version": "0.1.0", "backend": "detached"}
        (home / "supervisor.pid").write_text(json.dumps(record))
        report, table, rc = deep(cli, "r")
        assert rc == 1
        check = probe(report, 4)
        assert check["result"] == "FAIL" and "recycled" in check["summary"], check
        assert check["evidence"]["os_state"] == "recycled" and check["evidence"]["pid"] == bystander.pid
        assert probe(report, 3)["result"] == "FAIL"
        assert "recycled" in row(table, 4)
        assert cli("stop", "r").returncode == 0
        assert bystander.poll() is None, "stop signalled a recycled pid"
        assert not (home / "supervisor.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_corrupt_state_and_pid_record(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "c", "--", *SLEEPER).returncode == 0
    home = Path(dk_env["DAEMONKIT_HOME"]) / "c"
    (home / "state.json").write_bytes(b'{"supervisor": {"pid": 1')
    report, table, rc = deep(cli, "c")
    assert rc == 1 and probe(report, 5)["result"] == "FAIL"
    assert "state.json is unusable" in probe(report, 5)["summary"] and "FAIL" in row(table, 5)
    (home / "supervisor.pid").write_bytes(b"\x00\xffnot json")
    report, table, rc = deep(cli, "c")
    assert probe(report, 1)["result"] == "FAIL" and "supervisor.pid is unusable" in probe(report, 1)["summary"]
    assert report["verdict"]["line"].startswith("down: [1]")
    # A start heals both records.
    assert cli("start", "c").returncode == 0
    report, _, rc = deep(cli, "c")
    assert rc == 0 and probe(report, 1)["result"] == probe(report, 5)["result"] == "PASS"


def test_foreign_lock_holder_is_named(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        pytest.skip("naming the holder reads /proc/locks (Linux)")
    assert cli("add", "f", "--", *SLEEPER).returncode == 0
    lock = Path(dk_env["DAEMONKIT_HOME"]) / "f" / "supervisor.lock"
    code = textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(600)
    """)
    holder = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        report, table, rc = deep(cli, "f")
        check = probe(report, 2)
        assert rc == 1 and check["result"] == "FAIL", check
        assert check["evidence"]["holder_pid"] == holder.pid
        assert f"kill {holder.pid}" in check["hint"] and "not the supervisor" in check["summary"]
        assert "FAIL" in row(table, 2)
    finally:
        holder.kill()
        holder.wait()
    report, _, rc = deep(cli, "f")
    assert rc == 3 and probe(report, 2)["result"] == "SKIP"


def test_stopped_supervisor_is_a_fail_not_a_hang(cli, started) -> None:  # type: ignore[no-untyped-def]
    sup = json.loads((started / "supervisor.pid").read_text())["pid"]
    os.kill(sup, signal.SIGSTOP)
    try:
        begun = time.monotonic()
        report, table, rc = deep(cli, "d", "--timeout", "1")
        assert time.monotonic() - begun < 30  # two runs, each bounded by the budget (+ interpreter start)
        check = probe(report, 4)
        assert rc == 1 and check["result"] == "FAIL" and "stopped" in check["summary"], check
        assert f"kill -CONT {sup}" in check["hint"]
    finally:
        os.kill(sup, signal.SIGCONT)
    report, _, rc = deep(cli, "d")
    assert rc == 0 and probe(report, 4)["result"] == "PASS"


def test_config_error_program_shows_in_state_and_events(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    code = "import time; print('ok', flush=True); time.sleep(1.5); print('bad config', flush=True); raise SystemExit(78)"
    assert cli("add", "cfg", "--", PY, "-c", code).returncode == 0
    assert cli("start", "cfg").returncode == 0
    home = Path(dk_env["DAEMONKIT_HOME"]) / "cfg"
    wait_for(lambda: json.loads((home / "state.json").read_text())["programs"]["cfg"]["state"] == "config-error")
    report, table, rc = deep(cli, "cfg")
    assert rc == 1 and report["verdict"]["level"] == "degraded"
    assert probe(report, 5)["result"] == "FAIL" and "config-error" in probe(report, 5)["summary"]
    assert "exited 78" in probe(report, 5)["hint"] and "daemonkit start cfg --program cfg" in probe(report, 5)["hint"]
    assert probe(report, 6)["result"] == "FAIL" and "config-error" in probe(report, 6)["summary"]
    assert probe(report, 4)["result"] == "PASS"  # the supervisor itself is fine
    assert [i["result"] for i in probe(report, 5)["items"]] == ["FAIL"]
    assert "FAIL" in row(table, 5) and "FAIL" in row(table, 6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readiness_now_fails_when_the_port_closes(cli, dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    flag = tmp_path / "close-now"
    code = textwrap.dedent(f"""
        import os, socket, time
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", {port})); s.listen()
        print("listening", flush=True)
        while not os.path.exists({str(flag)!r}):
            time.sleep(0.05)
        s.close()
        print("closed", flush=True)
        time.sleep(600)
    """)
    assert cli("add", "web", "--ready-tcp", f"127.0.0.1:{port}", "--", PY, "-c", code).returncode == 0
    assert cli("start", "web").returncode == 0
    report, _, rc = deep(cli, "web")
    assert rc == 0 and probe(report, 10)["result"] == "PASS"
    assert "accepts connections" in probe(report, 10)["summary"]
    flag.touch()
    wait_for(lambda: "closed" in (Path(dk_env["DAEMONKIT_HOME"]) / "web" / "logs" / "web.out.log").read_text())
    report, table, rc = deep(cli, "web")
    check = probe(report, 10)
    assert rc == 1 and check["result"] == "FAIL" and "not ready now" in check["summary"], check
    assert probe(report, 5)["result"] == "PASS"  # the state still says ready: [10] is the signal that disagrees
    assert report["verdict"]["line"].startswith("degraded: [10]")
    assert "FAIL" in row(table, 10) and "daemonkit logs web --program web" in table


def test_a_stepped_wall_clock_is_not_mistaken_for_a_recycled_pid(cli, started) -> None:  # type: ignore[no-untyped-def]
    """Create times are wall-clock based; after an NTP step or a VM resume every record is off by the same
    amount. The OS lock table still names the holder, so [2] passes and [4] explains instead of crying
    "recycled"."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the lock table (/proc/locks) is Linux")
    # Let the supervisor's last coalesced state write land first: it would undo the edit below.
    wait_for(lambda: json.loads((started / "state.json").read_text())["programs"]["d"]["state"] == "running")
    time.sleep(0.5)
    for name in ("supervisor.lock", "supervisor.pid", "state.json"):
        path = started / name
        data = json.loads(path.read_text().splitlines()[0])
        target = data["supervisor"] if name == "state.json" else data
        target["create_time"] -= 2.0
        # Written in place: the supervisor keeps its lock on the same file.
        with open(path, "r+") as f:
            f.truncate(0)
            f.write(json.dumps(data) + "\n")
    report, table, rc = deep(cli, "d")
    assert probe(report, 2)["result"] == "PASS", probe(report, 2)
    assert probe(report, 3)["result"] == "PASS", probe(report, 3)
    check = probe(report, 4)
    assert check["result"] == "WARN" and "wall clock" in check["summary"], check
    assert check["evidence"]["create_time_shift_s"] == pytest.approx(2.0, abs=0.02)
    assert rc == 0 and report["verdict"]["level"] == "healthy"


def test_records_that_disagree_with_the_lock_holder(cli, started) -> None:  # type: ignore[no-untyped-def]
    pid_file = started / "supervisor.pid"
    real = json.loads(pid_file.read_text())
    me = psutil.Process()
    pid_file.write_text(json.dumps({**real, "pid": me.pid, "create_time": me.create_time()}))
    report, table, rc = deep(cli, "d")
    check = probe(report, 3)
    assert rc == 1 and check["result"] == "FAIL", check
    assert f"the lock names pid {real['pid']}, but supervisor.pid says pid {me.pid}" in check["summary"]
    assert "daemonkit restart d" in check["hint"] and report["verdict"]["level"] == "degraded"
    pid_file.unlink()
    report, _, rc = deep(cli, "d")
    assert probe(report, 1)["result"] == "FAIL" and "missing, yet a process holds the lock" in probe(report, 1)["summary"]
    assert probe(report, 3)["result"] == "FAIL" and "supervisor.pid is missing" in probe(report, 3)["summary"]
    assert cli("restart", "d").returncode == 0
    report, _, rc = deep(cli, "d")
    assert rc == 0 and probe(report, 1)["result"] == probe(report, 3)["result"] == "PASS"


def test_crashloop_of_one_program_degrades_and_names_it(cli, dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "mixed.toml"
    spec.write_text(
        'name = "mixed"\n'
        f'[programs.steady]\nargv = {json.dumps(SLEEPER)}\n'
        f'[programs.crashy]\nargv = {json.dumps([PY, "-c", "import sys; print(42 / 0)"])}\nautostart = false\n'
        'restart = "always"\n[programs.crashy.backoff]\ncrashloop_restarts = 3\ncrashloop_cooldown = 600.0\n'
        'initial = 0.05\n')
    assert cli("start", "--spec", str(spec)).returncode == 0
    failed = cli("start", "mixed", "--program", "crashy")
    assert failed.returncode == 1 and "ZeroDivisionError" in failed.stderr + failed.stdout
    state = Path(dk_env["DAEMONKIT_HOME"]) / "mixed" / "state.json"
    wait_for(lambda: json.loads(state.read_text())["programs"]["crashy"]["state"] == "crashloop")
    report, table, rc = deep(cli, "mixed")
    assert rc == 1 and report["verdict"]["line"].startswith("degraded: [5] crashy: crashloop")
    items = {i["name"]: i["result"] for i in probe(report, 5)["items"]}
    assert items == {"steady": "PASS", "crashy": "FAIL"}
    assert "daemonkit logs mixed --program crashy" in probe(report, 5)["hint"]
    assert probe(report, 6)["result"] == "FAIL" and "crashy: crashloop" in probe(report, 6)["summary"]
    assert probe(report, 10)["result"] == "PASS"  # the steady program is fine and ready
    assert "- crashy: FAIL crashloop" in table
