"""What the lane drivers (sd_driver.py, cli_driver.py, doctor_driver.py) share. They run as the test
user inside with-systemd-user.sh from the lane's work directory, where ``lane.workdir`` copies this
file and tests/_wait.py next to them; so it imports nothing else from the test suite."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import traceback
from pathlib import Path
from typing import Any, Callable

import _wait

PROPS = ("ActiveState,SubState,MainPID,NRestarts,Result,ExecMainStatus,UnitFileState,LoadState,FragmentPath,"
         "NeedDaemonReload")


def show(unit: str) -> dict[str, str]:
    """``systemctl --user show`` of the properties the lanes look at."""
    out = subprocess.run(["systemctl", "--user", "show", unit, "--property=" + PROPS],
                         capture_output=True, text=True, timeout=10).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    return _wait.wait_for(predicate, timeout, 0.05, what, error=TimeoutError)


def alive(pid: int | None) -> bool:
    """Runs, and is not a zombie (dead for our purposes)."""
    if not pid:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def tree(root: Path) -> list[list[str]]:
    """Every path under ``root`` with its type, mode and content digest or link target."""
    out = []
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            detail = "link:" + os.readlink(path)
        elif path.is_file():
            detail = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        else:
            detail = "dir"
        out.append([str(path.relative_to(root)), oct(st.st_mode), detail])
    return out


def record(out: Path, obs: dict[str, Any], act: Callable[[], None]) -> int:
    """Run one phase, then write what it observed to ``out``, also when it failed: the traceback (and a
    DaemonkitError's details, e.g. the journal tail) go to ``obs["error"]``. The exit code to return."""
    try:
        act()
        return 0
    except BaseException as exc:
        obs["error"] = traceback.format_exc() + getattr(exc, "details", "")
        return 1
    finally:
        out.write_text(json.dumps(obs, indent=1, default=str))
