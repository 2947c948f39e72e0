"""Runs as the test user inside with-systemd-user.sh: installs a daemon with daemonkit's real systemd
path, then records `status --deep --json` as it is, with the unit drifted, and with the unit stopped.
The assertions live in test_doctor_systemd.py; this script only acts and records.

    python doctor_driver.py doctor WORKDIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from driver_util import record


def deep(name: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "daemonkit", "status", name, "--deep", "--json"],
                          capture_output=True, text=True, timeout=60)
    report = json.loads(proc.stdout)
    report["_rc"] = proc.returncode
    report["_table"] = subprocess.run([sys.executable, "-m", "daemonkit", "status", name, "--deep"],
                                      capture_output=True, text=True, timeout=60).stdout
    return report


def main() -> int:
    work = Path(sys.argv[2])
    os.environ["DAEMONKIT_HOME"] = str(work / "dkhome")
    from daemonkit import api
    from daemonkit.backends.systemd_unit import unit_name
    from daemonkit.spec import Program, Spec

    obs: dict[str, Any] = {}
    spec = Spec(name="doc", programs=(Program("ticker", (sys.executable, "-c", "import time; time.sleep(3600)")),))
    unit = unit_name(spec)

    def act() -> None:
        obs["install"] = vars(api.install(spec, backend="systemd"))
        obs["installed"] = deep("doc")
        path = Path.home() / ".config" / "systemd" / "user" / unit
        good = path.read_text()
        path.write_text(good.replace("RestartPreventExitStatus=78", "RestartPreventExitStatus=1"))
        obs["drifted"] = deep("doc")
        obs["repair"] = vars(api.install(spec, backend="systemd"))
        obs["repaired"] = deep("doc")
        stop = subprocess.run(["systemctl", "--user", "stop", unit], capture_output=True, text=True, timeout=60)
        obs["stop_rc"] = stop.returncode
        time.sleep(0.2)
        obs["stopped"] = deep("doc")
        obs["uninstall"] = api.uninstall(spec)

    return record(work / "doctor.json", obs, act)


if __name__ == "__main__":
    sys.exit(main())
