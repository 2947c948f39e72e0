"""What the real systemd lanes share: whether they can run here, the venv sync, and one harness run.

The lane runs a real ``systemd --user`` and journald (tests/envs/with-systemd-user.sh) for a non-root
test user, with daemonkit installed in a venv made from Debian's python3 (tests/envs/setup-systemd.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "envs" / "with-systemd-user.sh"
SETUP = "bash tests/envs/setup-systemd.sh"
VENV = Path(os.environ.get("DAEMONKIT_SD_VENV", "/var/cache/daemonkit-tests/systemd/venv"))
USER = "sdtest"


def why_not() -> str | None:
    """Why the lane cannot run on this machine, or None."""
    if not sys.platform.startswith("linux"):
        return "Linux only"
    if os.geteuid() != 0:
        return "needs root (the harness makes namespaces, then runs as the test user)"
    for tool in ("unshare", "setpriv", "systemctl", "journalctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: run {SETUP}"
    if not Path("/lib/systemd/systemd").exists():
        return f"no systemd binary at /lib/systemd/systemd: run {SETUP}"
    import pwd

    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"test user {USER} does not exist: run {SETUP}"
    if not (VENV / "bin" / "python").exists():
        return f"no venv at {VENV}: run {SETUP}"
    return None


def sync_package() -> None:
    """Put this checkout's daemonkit into the lane's venv (the setup's copy may be older)."""
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([str(VENV / "bin" / "python"), "-c", query],
                             capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    target = Path(purelib) / "daemonkit"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(ROOT / "src" / "daemonkit", target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def give_to_test_user(*paths: Path) -> None:
    import pwd

    entry = pwd.getpwnam(USER)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def harness(driver: str, phase: str, work: Path, result_name: str, timeout: float = 180) -> dict[str, Any]:
    """Run ``driver PHASE WORK`` as the test user under a fresh user manager; HOME is ``WORK/home`` in
    every run, so a second run is the same user's next login. Returns what the driver recorded."""
    argv = ["bash", str(HARNESS), USER, "--", str(VENV / "bin" / "python"), str(work / driver), phase, str(work)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "SDU_HOME": str(work / "home")})
    result = work / result_name
    assert result.exists(), f"{phase}: the driver wrote nothing (rc {proc.returncode})\n{proc.stdout}\n{proc.stderr}"
    obs = json.loads(result.read_text())
    evidence = f"{obs.get('error')}\n{proc.stderr[-3000:]}\n{json.dumps(obs, indent=1)[:6000]}"
    assert "error" not in obs and proc.returncode == 0, f"{phase} failed (rc {proc.returncode}):\n{evidence}"
    return obs


@contextmanager
def workdir(lane: str, prefix: str, driver: str, config: Callable[[Path], dict[str, Any]] | None = None
            ) -> Iterator[Path]:
    """A work directory for one lane module, owned by the test user: the lane is skipped (with the
    reason) where it cannot run, the venv gets this checkout's daemonkit, and ``driver`` goes in with
    driver_util.py (and its tests/_wait.py) and, when ``config(work)`` is given, its answer as config.json. Removed afterwards."""
    why = why_not()
    if why:
        import pytest

        pytest.skip(f"{lane} skipped: {why}")
    sync_package()
    # Not under pytest's tmp dir: that is root's and mode 700, so the test user could not enter it.
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        here = Path(__file__).parent
        for source in (here / driver, here / "driver_util.py", here.parent / "_wait.py"):
            shutil.copy(source, work / source.name)
        if config is not None:
            (work / "config.json").write_text(json.dumps(config(work)))
        give_to_test_user(work, *work.iterdir())
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
