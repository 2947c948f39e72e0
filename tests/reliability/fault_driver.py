"""Runs inside a private mount namespace (``unshare -m``) so a test can give a daemon a full disk or a
read-only home without touching the machine's mounts. Prints one JSON object with what it observed.

usage: fault_driver.py diskfull|readonly MOUNTPOINT
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

PY = sys.executable


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "daemonkit", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def status(name: str) -> dict[str, Any]:
    result = cli("status", name, "--json")
    return json.loads(result.stdout) if result.stdout.strip() else {"error": result.stderr}


def spec(path: Path, name: str, programs: dict[str, Any]) -> None:
    import tomli_w

    path.write_text(tomli_w.dumps({"name": name, "programs": programs}))


def wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def restart_check(name: str) -> dict[str, Any]:
    """Kill the sleeper with SIGKILL; does the supervisor restart it, with the disk in trouble?"""
    before = next(p for p in status(name)["programs"] if p["name"] == "sleeper")
    os.kill(before["pid"], signal.SIGKILL)
    restarted = wait(lambda: (p := next(p for p in status(name)["programs"] if p["name"] == "sleeper"))["pid"]
                     not in (None, before["pid"]) and p["state"] == "running", 20)
    return {"restarted": restarted}


def diskfull(mnt: Path) -> dict[str, Any]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], check=True)
    os.environ["DAEMONKIT_HOME"] = str(mnt)
    flood = "import sys, time\nwhile True:\n    sys.stdout.write('x' * 4000 + '\\n'); sys.stdout.flush(); time.sleep(0.002)"
    sleep = "import time; time.sleep(3600)"
    quick = {"min_uptime": 0.2}
    spec(mnt.parent / "full.toml", "full", {
        "flood": {"argv": [PY, "-c", flood], "restart": "always", "backoff": quick,
                  "logs": {"max_bytes": 4 * 1024 * 1024, "backups": 1}},
        "sleeper": {"argv": [PY, "-c", sleep], "restart": "always", "backoff": quick},
    })
    out: dict[str, Any] = {}
    started = cli("start", "full", "--spec", str(mnt.parent / "full.toml"))
    out["start_rc"], out["start_err"] = started.returncode, started.stderr[-500:]
    out["filled"] = wait(lambda: os.statvfs(mnt).f_bavail == 0, 30)
    time.sleep(1.0)
    st = status("full")
    out["running_when_full"] = bool(st.get("running"))
    out["states_when_full"] = {p["name"]: p["state"] for p in st.get("programs", [])}
    out.update(restart_check("full"))
    st = status("full")
    out["supervisor_alive"] = bool(st.get("running"))
    # Free the disk: output must be written again (the supervisor recovers by itself).
    for p in (mnt / "full" / "logs").glob("flood.out.log*"):
        p.unlink()
    out["recovered_writing"] = wait(lambda: (mnt / "full" / "logs" / "flood.out.log").exists()
                                    and (mnt / "full" / "logs" / "flood.out.log").stat().st_size > 0, 20)
    from daemonkit.store.events import read_events

    out["events"] = sorted({e["event"] for e in read_events(mnt / "full" / "events.jsonl")})
    stop = cli("stop", "full")
    out["stop_rc"], out["stop_err"] = stop.returncode, stop.stderr[-500:]
    out["after_stop"] = status("full").get("running")
    return out


def readonly(mnt: Path) -> dict[str, Any]:
    """The home turns read-only under a daemon whose supervisor was killed (so nothing holds a file open
    for writing and the remount is allowed): status and stop must still work; start refuses clearly."""
    # A tmpfs we can remount read-only (root bypasses file modes, so chmod would prove nothing).
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    os.environ["DAEMONKIT_HOME"] = str(mnt)
    sleep = "import time; print('up', flush=True); time.sleep(3600)"
    quick = {"min_uptime": 0.2}
    spec(mnt.parent / "ro.toml", "ro", {"sleeper": {"argv": [PY, "-c", sleep], "restart": "always", "backoff": quick}})
    out: dict[str, Any] = {}
    started = cli("start", "ro", "--spec", str(mnt.parent / "ro.toml"))
    out["start_rc"], out["start_err"] = started.returncode, started.stderr[-500:]
    st = status("ro")
    program_pid = st["programs"][0]["pid"]
    os.kill(st["supervisor_pid"], signal.SIGKILL)
    wait(lambda: not cli("status", "ro").returncode == 0, 10)
    time.sleep(0.5)
    out["program_alive_after_kill"] = os.path.exists(f"/proc/{program_pid}") and \
        open(f"/proc/{program_pid}/stat").read().split()[2] != "Z"
    remount = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
    out["remount_rc"], out["remount_err"] = remount.returncode, remount.stderr
    st_ro = cli("status", "ro", "--json")
    out["ro_status_rc"], out["ro_status_err"] = st_ro.returncode, st_ro.stderr[-800:]
    out["orphan_reported"] = any(p["state"] == "orphaned" for p in json.loads(st_ro.stdout)["programs"]) \
        if st_ro.stdout.strip() else False
    stop = cli("stop", "ro")
    out["stop_rc"], out["stop_err"] = stop.returncode, stop.stderr[-800:]
    out["program_gone"] = wait(lambda: not os.path.exists(f"/proc/{program_pid}") or
                               open(f"/proc/{program_pid}/stat").read().split()[2] == "Z", 10)
    again = cli("start", "ro")
    out["ro_start_rc"], out["ro_start_err"] = again.returncode, again.stderr[-800:]
    out["after_status_rc"] = cli("status", "ro").returncode
    return out


def main() -> None:
    mode, mnt = sys.argv[1], Path(sys.argv[2])
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    result = diskfull(mnt) if mode == "diskfull" else readonly(mnt)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
