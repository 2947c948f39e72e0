"""Runs as the test user inside with-systemd-user.sh, next to a real ``systemd --user``.

Drives ``SystemdBackend`` with daemonkit's real supervisor and writes what it observed to
``WORKDIR/PHASE.json`` (also when a step fails, with the traceback). The assertions live in
test_systemd_real.py; this script only acts and records.

    python sd_driver.py first|second WORKDIR
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from driver_util import alive, record, show, tree, wait_for

from daemonkit.backends.base import BackendContext
from daemonkit.backends.systemd import SystemdBackend
from daemonkit.backends.systemd_unit import unit_name
from daemonkit.paths import Home
from daemonkit.spec import Program, Spec, dump_spec


def program_pid(home: Home, program: str) -> int | None:
    try:
        data = json.loads(home.state_file.read_text())
        pid = data["programs"][program]["pid"]
        return pid if alive(pid) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def make_spec(python: str) -> Spec:
    # Odd characters in a program's argv live in spec.toml, never in the unit; they must still arrive.
    script = "import sys, time\nprint('ticker up', sys.argv[1:], flush=True)\nwhile True: time.sleep(1)"
    return Spec(name="demo", programs=(
        Program("ticker", (python, "-c", script, "a b", "100%", "$HOME", "'q'", 'd"q', "back\\slash"),
                restart="always", stop_grace=3.0),
    ))


def first(obs: dict[str, Any], work: Path, home: Home, backend: SystemdBackend, spec: Spec, unit: str) -> None:
    obs["home_before"] = tree(Path.home())
    obs["unit_dir_existed"] = backend.unit_dir("user").exists()
    home.ensure()
    dump_spec(spec, home.spec_file)
    obs["install"] = backend.install(spec, home)
    obs["after_install"] = show(unit)
    main_pid = int(obs["after_install"]["MainPID"])
    obs["cmdline"] = Path(f"/proc/{main_pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    obs["prog_pid_1"] = wait_for("the program to run", lambda: program_pid(home, "ticker"))
    obs["reinstall"] = backend.install(spec, home)  # unchanged: must be a no-op

    os.kill(main_pid, signal.SIGKILL)
    obs["after_kill"] = wait_for("systemd to restart the supervisor", lambda: (
        (p := show(unit))["ActiveState"] == "active" and p["MainPID"] not in ("0", str(main_pid)) and p))
    obs["old_prog_gone"] = bool(wait_for("the old program to end", lambda: not alive(obs["prog_pid_1"]), 10))
    obs["prog_pid_2"] = wait_for("a new program", lambda: (
        (pid := program_pid(home, "ticker")) and pid != obs["prog_pid_1"] and pid))

    # Exit 78: a broken spec makes the restarted supervisor exit with EX_CONFIG; systemd must stop there.
    good = home.spec_file.read_bytes()
    home.spec_file.write_text("this is [ not toml")
    os.kill(int(obs["after_kill"]["MainPID"]), signal.SIGKILL)
    obs["after_78"] = wait_for("the unit to fail with 78", lambda: (
        (p := show(unit))["ActiveState"] == "failed" and p))
    time.sleep(2.5)  # RestartSec=1: a restart would have happened by now
    obs["after_78_later"] = show(unit)
    obs["prog_after_78"] = program_pid(home, "ticker")

    home.spec_file.write_bytes(good)
    backend.start(spec, home)  # the next explicit start runs again
    obs["after_start"] = show(unit)
    obs["prog_pid_3"] = wait_for("the program after start", lambda: program_pid(home, "ticker"))
    obs["status"] = vars(backend.status(spec, home))
    obs["journal"] = subprocess.run(["journalctl", "--user", "-u", unit, "--no-pager", "-o", "cat"],
                                    capture_output=True, text=True, timeout=10).stdout.splitlines()
    # Left enabled and running: the harness ends this "session"; the next one is the next login.


def second(obs: dict[str, Any], work: Path, home: Home, backend: SystemdBackend, spec: Spec, unit: str) -> None:
    obs["at_login"] = wait_for("the unit to start at login", lambda: (
        (p := show(unit))["ActiveState"] == "active" and p), 20)
    obs["prog_at_login"] = wait_for("the program at login", lambda: program_pid(home, "ticker"))
    obs["uninstall"] = backend.uninstall(spec, home)
    obs["after_uninstall"] = show(unit)
    obs["prog_after_uninstall"] = alive(obs["prog_at_login"])
    obs["uninstall_again"] = backend.uninstall(spec, home)
    obs["home_after"] = tree(Path.home())


def main() -> int:
    phase, work = sys.argv[1], Path(sys.argv[2])
    config = json.loads((work / "config.json").read_text())
    home = Home(Path(config["dk_home"]))
    backend = SystemdBackend(BackendContext(python=sys.executable, env=dict(os.environ)))
    spec = make_spec(sys.executable)
    obs: dict[str, Any] = {"phase": phase}
    act = {"first": first, "second": second}[phase]
    return record(work / f"{phase}.json", obs, lambda: act(obs, work, home, backend, spec, unit_name(spec)))


if __name__ == "__main__":
    sys.exit(main())
