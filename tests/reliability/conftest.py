"""Shared tools of the reliability lane: real supervisors, real programs, and a census of every process
that belongs to a test's DAEMONKIT_HOME, so "no orphans, no duplicates" is checked, not assumed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from _wait import wait_for  # noqa: F401 (the lane's modules import it from here)

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PY = sys.executable
SECOND_USER = os.environ.get("DAEMONKIT_TEST_USER2", "dktest2")
SETUP = "bash tests/envs/setup-reliability.sh"

SLEEP = "import time; print('up', flush=True); time.sleep(3600)"
# Counts as "running" after 0.2 s instead of the default 1 s: keeps the lane short.
QUICK = {"min_uptime": 0.2}



def spec_toml(name: str, programs: dict[str, dict[str, Any]], **top: Any) -> str:
    import tomli_w

    data: dict[str, Any] = {"name": name, **top, "programs": programs}
    return tomli_w.dumps(data)


class Sandbox:
    """One test's daemonkit world: its DAEMONKIT_HOME, a CLI runner, and a census of its processes."""

    def __init__(self, root: Path, env: dict[str, str], work: Path) -> None:
        self.root = root
        self.env = env
        self.work = work

    def home(self, name: str) -> Path:
        return self.root / name

    def cli(self, *args: str, timeout: float = 90, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "daemonkit", *args], capture_output=True, text=True,
                              env=env or self.env, timeout=timeout, stdin=subprocess.DEVNULL)

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([PY, "-m", "daemonkit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env, stdin=subprocess.DEVNULL, **kw)

    def write_spec(self, name: str, programs: dict[str, dict[str, Any]], **top: Any) -> Path:
        path = self.work / f"{name}.toml"
        path.write_text(spec_toml(name, programs, **top))
        return path

    def start_spec(self, name: str, programs: dict[str, dict[str, Any]], **top: Any) -> subprocess.CompletedProcess[str]:
        result = self.cli("start", name, "--spec", str(self.write_spec(name, programs, **top)))
        assert result.returncode == 0, f"start {name} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def status(self, name: str) -> dict[str, Any]:
        result = self.cli("status", name, "--json")
        assert result.returncode in (0, 3), result.stderr
        return json.loads(result.stdout)

    def program(self, name: str, program: str | None = None) -> dict[str, Any]:
        return next(p for p in self.status(name)["programs"] if p["name"] == (program or name))

    def events(self, name: str) -> list[dict[str, Any]]:
        from daemonkit.store.events import read_events

        return list(read_events(self.home(name) / "events.jsonl"))

    # ------------------------------------------------------------------ census
    def supervisors(self) -> list[psutil.Process]:
        """Live supervisor processes whose home is under this sandbox."""
        out = []
        prefix = str(self.root)
        for proc in psutil.process_iter(["cmdline", "status"]):
            try:
                cmd = proc.info["cmdline"] or []
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if "supervise" in cmd and any(a.startswith(prefix) for a in cmd):
                    out.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def programs(self, name: str | None = None) -> list[psutil.Process]:
        """Live program processes started for this sandbox (the supervisor gives each one
        ``DAEMONKIT_HOME`` = the sandbox root), including their descendants; only those started as
        program ``name`` when it is given. A process that exits while we look is skipped."""
        out = []
        for proc in psutil.process_iter(["status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                    continue
                if proc.environ().get("DAEMONKIT_HOME") == str(self.root) and "supervise" not in proc.cmdline():
                    program = proc.environ().get("DAEMONKIT_PROGRAM")
                    if program and (name is None or program == name):
                        out.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, OSError):
                continue
        return out

    def assert_nothing_running(self, timeout: float = 15.0) -> None:
        try:
            wait_for(lambda: not self.supervisors() and not self.programs(), timeout)
        except AssertionError:
            left = [(p.pid, _cmd(p)) for p in self.supervisors() + self.programs()]
            raise AssertionError(f"still running under {self.root}: {left}") from None

    def kill_everything(self) -> None:
        for proc in self.supervisors() + self.programs():
            try:
                proc.kill()
            except psutil.Error:
                pass


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    root = tmp_path / "dkhome"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("DAEMONKIT_HOME", str(root))
    pythonpath = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    box = Sandbox(root, dict(os.environ), work)
    yield box
    # Stop through the product first (that is part of what is tested elsewhere), then make sure.
    if root.exists():
        for home in root.iterdir():
            if (home / "spec.toml").exists():
                try:
                    box.cli("stop", home.name, timeout=30)
                except subprocess.TimeoutExpired:
                    pass
    box.kill_everything()


def _cmd(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:160]
    except psutil.Error:
        return "?"


def second_user() -> tuple[int, int] | None:
    import pwd

    try:
        entry = pwd.getpwnam(SECOND_USER)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def need_second_user() -> tuple[int, int]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the second-user tests use Linux credentials (setpriv)")
    if os.geteuid() != 0:
        pytest.skip("needs root to act as a second local user")
    ids = second_user()
    if ids is None:
        pytest.skip(f"second test user {SECOND_USER!r} does not exist: run {SETUP}")
    if shutil.which("setpriv") is None:
        pytest.skip(f"setpriv (util-linux) is missing: run {SETUP}")
    return ids


def as_second_user(code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run a tiny Python probe as the second user (Debian's python3: root's interpreter may be unreadable)."""
    uid, gid = need_second_user()
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else PY
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", python, "-c", code],
                          capture_output=True, text=True, timeout=timeout, cwd="/", stdin=subprocess.DEVNULL)
