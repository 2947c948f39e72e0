"""`status --deep`, probes [7]-[12], the time bounds, and the pure parts (verdict, table).

Service-manager probes here use the real ``systemctl`` binary against a user manager that is not
there (drift is still computed from the unit file) and a ``systemctl`` that hangs; the PASS side with a
live systemd user manager is tests/systemd/test_doctor_systemd.py. Disk-full and read-only logs are
real tmpfs mounts (root only; skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from test_doctor import with_log_cap

from daemonkit.doctor import judge
from daemonkit.doctor.bounded import CappedRunner, map_bounded, run_bounded
from daemonkit.doctor.model import FAIL, PASS, SKIP, WARN, Check, Report
from daemonkit.doctor.table import render_deep
from daemonkit.doctor.verdict import verdict
from test_doctor import SLEEPER, deep, probe, row

PY = sys.executable


def _systemd_setup(cli: Any, dk_env: dict[str, str], tmp_path: Path, name: str) -> tuple[Path, dict[str, str]]:
    """A daemon recorded as installed with systemd, its unit file written by the backend's own render."""
    from daemonkit.backends.base import BackendContext
    from daemonkit.backends.systemd import SystemdBackend
    from daemonkit.paths import Home
    from daemonkit.spec import load_spec

    assert cli("add", name, "--", *SLEEPER).returncode == 0
    env = dict(dk_env)
    env["HOME"] = str(tmp_path / "userhome")
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")  # no user manager listens here
    (tmp_path / "run").mkdir(mode=0o700)
    home = Home(Path(dk_env["DAEMONKIT_HOME"]) / name)
    spec = load_spec(home.spec_file)
    (artifact,) = SystemdBackend(BackendContext(python=PY, env=env)).render(spec, home)
    artifact.path.parent.mkdir(parents=True)
    artifact.path.write_bytes(artifact.content)
    (home.path / "install.json").write_text(json.dumps({"backend": "systemd", "scope": "user", "python": PY}))
    return artifact.path, env


def test_drifted_unit_is_named_even_without_a_reachable_manager(cli, dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    unit, env = _systemd_setup(cli, dk_env, tmp_path, "sd")
    # What systemctl says with no user bus (after `sudo su -`, in a container), on any machine.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n")
    (bin_dir / "systemctl").chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    report, _, _ = deep(lambda *a: subprocess.run([PY, "-m", "daemonkit", *a], capture_output=True, text=True,
                                                  env=env, timeout=60), "sd")
    assert probe(report, 7)["result"] == "PASS" and probe(report, 8)["result"] == "PASS", report["probes"][6:9]
    assert probe(report, 9)["result"] in ("WARN", "FAIL")  # the manager could not be asked
    unit.write_text(unit.read_text().replace("Restart=", "Restart=no\n#Restart=", 1))
    report, table, rc = deep(lambda *a: subprocess.run([PY, "-m", "daemonkit", *a], capture_output=True,
                                                       text=True, env=env, timeout=60), "sd")
    check = probe(report, 8)
    assert rc == 1 and check["result"] == "FAIL", check
    assert "Restart" in check["summary"] and "daemonkit install sd" in check["hint"]
    assert "FAIL" in row(table, 8)
    unit.unlink()
    report, table, rc = deep(lambda *a: subprocess.run([PY, "-m", "daemonkit", *a], capture_output=True,
                                                       text=True, env=env, timeout=60), "sd")
    assert probe(report, 7)["result"] == "FAIL" and "daemonkit install sd" in probe(report, 7)["hint"]
    assert "no unit file" in probe(report, 7)["summary"]


def test_hung_systemctl_is_a_timed_out_fail_not_a_hang(cli, dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, env = _systemd_setup(cli, dk_env, tmp_path, "hung")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = f"doctor-hung-{os.getpid()}"
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\nexec {PY} -c 'import time; time.sleep(120)' {marker}\n")
    (bin_dir / "systemctl").chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    begun = time.monotonic()
    result = subprocess.run([PY, "-m", "daemonkit", "status", "hung", "--deep", "--json", "--timeout", "1"],
                            capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.monotonic() - begun
    report = json.loads(result.stdout)
    assert result.returncode == 1 and elapsed < 20, (elapsed, result.stderr)
    check = probe(report, 9)
    assert check["result"] == "FAIL" and "timed out" in check["summary"], report["probes"][6:9]
    assert "systemctl --user status" in check["hint"]

    def leftovers() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            if marker in (proc.info["cmdline"] or []):
                found.append(proc)
        return found

    deadline = time.monotonic() + 5
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    stray = leftovers()
    for proc in stray:
        proc.kill()
    assert not stray, "a timed-out systemctl was left running"


def test_log_over_its_cap_fails(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "big", "--", *SLEEPER).returncode == 0
    home = Path(dk_env["DAEMONKIT_HOME"]) / "big"
    spec = home / "spec.toml"
    spec.write_text(with_log_cap(spec.read_text(), 4096))
    (home / "logs").mkdir(exist_ok=True)
    (home / "logs" / "big.out.log").write_bytes(b"x" * 200_000)
    report, table, rc = deep(cli, "big")
    check = probe(report, 11)
    assert rc == 1 and check["result"] == "FAIL" and "over their cap" in check["summary"], check
    assert check["evidence"]["file"].endswith("big.out.log") and check["evidence"]["cap"] == 4096
    assert "FAIL" in row(table, 11)
    (home / "logs" / "big.out.log").write_bytes(b"x" * 4000)
    report, _, rc = deep(cli, "big")
    assert probe(report, 11)["result"] == "PASS" and rc == 3


@pytest.fixture
def tmpfs_logs(cli, dk_env) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A daemon whose logs dir is its own small tmpfs (mounted by the test, unmounted after)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs root on Linux to mount a small tmpfs as the logs dir")
    assert cli("add", "m", "--", *SLEEPER).returncode == 0
    logs = Path(dk_env["DAEMONKIT_HOME"]) / "m" / "logs"
    logs.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(logs)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield logs
    finally:
        subprocess.run(["umount", "-l", str(logs)], capture_output=True)


def test_full_log_disk_fails(cli, tmpfs_logs) -> None:  # type: ignore[no-untyped-def]
    try:
        with open(tmpfs_logs / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    except OSError:
        pass
    report, table, rc = deep(cli, "m")
    check = probe(report, 11)
    assert rc == 1 and check["result"] == "FAIL" and "free of" in check["summary"], check
    assert str(tmpfs_logs) in check["summary"] and check["evidence"]["free_bytes"] < 1024 * 1024
    assert "FAIL" in row(table, 11)


def test_read_only_log_dir_fails(cli, tmpfs_logs) -> None:  # type: ignore[no-untyped-def]
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs_logs)], check=True, capture_output=True)
    report, table, rc = deep(cli, "m")
    check = probe(report, 11)
    assert rc == 1 and check["result"] == "FAIL" and "read-only" in check["summary"], check
    assert check["evidence"]["not_writable"] == str(tmpfs_logs)


def test_registered_python_that_is_gone_fails(cli, dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "venv", "--", *SLEEPER).returncode == 0
    home = Path(dk_env["DAEMONKIT_HOME"]) / "venv"
    missing = tmp_path / "old-venv" / "bin" / "python"
    (home / "install.json").write_text(json.dumps({"backend": "detached", "scope": "user", "python": str(missing)}))
    report, table, rc = deep(cli, "venv")
    check = probe(report, 12)
    assert rc == 1 and check["result"] == "FAIL" and str(missing) in check["summary"], check
    assert "daemonkit install venv" in check["hint"]
    assert probe(report, 7)["result"] == "SKIP" and "detached" in probe(report, 7)["summary"]
    (home / "install.json").write_text("{broken")
    report, _, _ = deep(cli, "venv")
    assert probe(report, 7)["result"] == "FAIL" and "install.json is unusable" in probe(report, 7)["summary"]


# ------------------------------------------------------------------------------------------ pure parts


def test_run_bounded_abandons_what_does_not_finish() -> None:
    begun = time.monotonic()
    out = run_bounded({"slow": lambda: time.sleep(30), "fast": lambda: 42, "bad": lambda: 1 / 0}, 0.3)
    assert time.monotonic() - begun < 5
    assert out["slow"].timed_out and out["slow"].problem(0.3) == "timed out after 0.3s"
    assert out["fast"].ok and out["fast"].value == 42
    assert not out["bad"].ok and "ZeroDivisionError" in out["bad"].problem(0.3)
    mapped = map_bounded(lambda x: time.sleep(30) if x == 2 else x * 10, [1, 2, 3], 0.3, workers=3)
    assert [m.value for m in mapped if m.ok] == [10, 30] and mapped[1].timed_out


def test_capped_runner_never_starts_a_command_past_the_deadline() -> None:
    from daemonkit.backends.base import RecordingRunner

    inner = RecordingRunner()
    capped = CappedRunner(inner, time.monotonic() - 1)
    result = capped.run(["systemctl", "--user", "show"], timeout=30)
    assert result.timed_out and inner.calls == []
    from daemonkit.backends.base import SubprocessRunner

    live = CappedRunner(SubprocessRunner(), time.monotonic() + 0.3)
    begun = time.monotonic()
    assert live.run([PY, "-c", "import time; time.sleep(30)"], timeout=30).timed_out
    assert time.monotonic() - begun < 5


def _checks(*results: str) -> list[Check]:
    return [Check(i + 1, f"k{i + 1}", f"probe {i + 1}", r, f"summary {i + 1}", "do this" if r in (FAIL, WARN) else "")
            for i, r in enumerate(results)]


def test_verdict_names_the_first_failing_signal_and_its_fix() -> None:
    assert verdict(_checks(PASS, PASS, SKIP), running=True).line == "healthy: every probe passed"
    assert verdict(_checks(PASS, SKIP), running=False).level == "stopped"
    warned = verdict(_checks(PASS, WARN), running=True)
    assert warned.level == "healthy" and "[2] probe 2" in warned.text
    v = verdict(_checks(PASS, FAIL, PASS, FAIL), running=False)
    assert v.level == "down" and v.disagree == [2, 4]
    assert v.line == "down: [2] summary 2 (also failing: [4]); fix: do this"
    assert verdict(_checks(FAIL), running=True).level == "degraded"


def test_a_fail_or_warn_without_a_hint_is_refused() -> None:
    with pytest.raises(ValueError, match="without a fix hint"):
        Check(1, "k", "t", FAIL, "broken")
    with pytest.raises(ValueError):
        Check(1, "k", "t", "MAYBE", "x")


def test_table_is_plain_without_colour_and_coloured_with_it() -> None:
    checks = _checks(PASS, FAIL)
    checks[1].evidence["path"] = "/x/supervisor.pid"
    report = Report("n", "/x", False, checks, verdict(checks, False), 0.0, 12.0, "0.1.0")
    plain = render_deep(report, color=False)
    assert "\x1b[" not in plain
    assert plain.splitlines()[0] == "n: down: [2] summary 2; fix: do this"
    assert "[ 2] FAIL  probe 2: summary 2" in plain and "path: /x/supervisor.pid" in plain
    assert "fix: do this" in plain
    assert "path:" not in render_deep(Report("n", "/x", True, _checks(PASS), verdict(_checks(PASS), True), 0, 1, "v"))
    coloured = render_deep(report, color=True)
    assert "\x1b[31mFAIL" in coloured and "\x1b[32mPASS" in coloured
    assert report.exit_code == 1


def test_a_probe_that_crashes_is_a_fail_not_a_traceback() -> None:
    checks = judge(None, lambda verb: f"x {verb}")
    assert len(checks) == 12 and all(c.result == FAIL for c in checks)
    assert "the probe itself failed" in checks[0].summary and "bug" in checks[0].hint


def test_no_color_and_json_versions(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "nc", "--", *SLEEPER).returncode == 0
    env = {**dk_env, "NO_COLOR": "1"}
    result = subprocess.run([PY, "-m", "daemonkit", "status", "nc", "--deep"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert "\x1b[" not in result.stdout
    report, _, _ = deep(cli, "nc")
    from daemonkit import __version__

    assert report["schema"] == "daemonkit.status-deep/1" and report["version"] == __version__
    assert [p["number"] for p in report["probes"]] == list(range(1, 13))
    assert report["probes"][0]["result"] == SKIP


def test_launchd_registration_probes_through_a_modelled_launchctl(cli, dk_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """launchd cannot run here: launchctl is the project's model of it (tests/unix/fakes.py), the plist is
    written and compared for real. The same three probes as for systemd, PASS then FAIL."""
    from daemonkit.backends.base import BackendContext
    from daemonkit.backends.launchd import LaunchdBackend
    from daemonkit.doctor import diagnose
    from daemonkit.paths import Home
    from daemonkit.spec import load_spec
    from unix.fakes import FakeLaunchd

    assert cli("add", "mac", "--", *SLEEPER).returncode == 0
    home = Home(Path(dk_env["DAEMONKIT_HOME"]) / "mac")
    spec = load_spec(home.spec_file)
    launchd = FakeLaunchd()
    agents = tmp_path / "LaunchAgents"
    ctx = BackendContext(runner=launchd.runner, python=PY, dirs={"launch_agents_dir": agents},
                         env={"HOME": str(tmp_path)})
    LaunchdBackend(ctx).install(spec, home)
    (home.path / "install.json").write_text(json.dumps({"backend": "launchd", "scope": "user", "python": PY}))

    report = diagnose(spec, home, ctx=ctx).to_json()
    assert [probe(report, n)["result"] for n in (7, 8, 9)] == ["PASS", "PASS", "PASS"], report["probes"][6:9]
    assert "pid 4242" in probe(report, 9)["summary"]
    assert any("launchctl print" in str(v) for v in probe(report, 9)["evidence"].values())

    plist = next(agents.glob("*.plist"))
    plist.write_bytes(plist.read_bytes().replace(b"<key>KeepAlive</key>", b"<key>KeepAliveX</key>"))
    launchd.loaded.clear()
    report = diagnose(spec, home, ctx=ctx).to_json()
    assert probe(report, 8)["result"] == "FAIL" and "KeepAlive" in probe(report, 8)["summary"], probe(report, 8)
    check = probe(report, 9)
    assert check["result"] == "FAIL" and "not loaded" in check["summary"] and "daemonkit start mac" in check["hint"]
    assert report["exit_code"] == 1


def test_platform_notes_on_wsl_and_with_linger_off(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    """[12] judged over real gathered facts, with the platform part replaced by what WSL's /proc would
    give (the chooser's own detection code) and a backend that reports linger off."""
    from daemonkit.backends.base import BackendStatus
    from daemonkit.backends.wsl import WslInputs, detect
    from daemonkit.doctor.bounded import Outcome
    from daemonkit.doctor.facts import gather
    from daemonkit.doctor.probes_system import platform_notes
    from daemonkit.paths import Home
    from daemonkit.spec import load_spec

    assert cli("add", "w", "--", *SLEEPER).returncode == 0
    home = Home(Path(dk_env["DAEMONKIT_HOME"]) / "w")
    facts = gather(load_spec(home.spec_file), home)
    assert platform_notes(facts, lambda v: f"daemonkit {v} w").result == PASS
    facts.platform.value.wsl = detect(WslInputs(osrelease="5.15.153.1-microsoft-standard-WSL2", pid1_comm="init",
                                                env={"WSL_DISTRO_NAME": "Ubuntu"}))
    check = platform_notes(facts, lambda v: f"daemonkit {v} w")
    assert check.result == WARN and "systemd is not running" in check.summary
    assert "wsl.exe -d Ubuntu" in check.hint and check.evidence["wsl"].startswith("WSL 2, systemd off")
    facts.platform.value.wsl = None
    facts.backend = Outcome(BackendStatus("systemd", True, True, True, notes=[
        "linger is off for sdtest (loginctl: Linger=no): systemd stops w when your last session ends ..."]))
    check = platform_notes(facts, lambda v: f"daemonkit {v} w")
    assert check.result == WARN and "enable-linger" in check.hint
