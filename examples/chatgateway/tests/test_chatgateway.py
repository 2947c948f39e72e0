"""chatgateway end to end, as its users type it. Every test runs in daemonkit's sandbox (see pyproject:
daemonkit_sandbox = "auto"), so `install` cannot reach the real Startup folder or service manager."""

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import platformdirs
import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port: int, data: bytes | None = None) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/" + ("chat" if data else "health"), data=data, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def port(monkeypatch: pytest.MonkeyPatch) -> int:
    chosen = free_port()
    monkeypatch.setenv("CHATGATEWAY_PORT", str(chosen))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return chosen


def chatgateway(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chatgateway", *args], capture_output=True, text=True, timeout=90)


def test_start_status_logs_stop(port: int) -> None:
    started = chatgateway("gateway", "start")
    assert started.returncode == 0, started.stderr
    assert "started gateway" in started.stdout
    status = json.loads(chatgateway("gateway", "status", "--json").stdout)
    assert status["running"] and status["healthy"] and status["programs"][0]["state"] == "ready"
    assert fetch(port)["version"] == "1.0"
    assert fetch(port, b"hello")["reply"] == "olleh"
    deep = chatgateway("gateway", "status", "--deep")  # numbered probes, each FAIL with its fix
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert "[ 1] PASS" in deep.stdout and "FAIL" not in deep.stdout
    logs = chatgateway("gateway", "logs", "-n", "5")
    assert logs.returncode == 0 and "chat: hello" in logs.stdout
    stopped = chatgateway("gateway", "stop")
    assert stopped.returncode == 0 and "stopped gateway" in stopped.stdout
    assert chatgateway("gateway", "status").returncode == 3  # LSB: not running


def test_install_and_uninstall_stay_in_the_sandbox(port: int, daemonkit_sandbox) -> None:
    installed = chatgateway("gateway", "install")
    assert installed.returncode == 0, installed.stderr
    # The sandbox has no service manager, so daemonkit says so and runs the gateway detached.
    assert "installing gateway with detached" in installed.stdout
    assert fetch(port)["status"] == "ok"
    assert (daemonkit_sandbox.daemonkit_home / "gateway" / "install.json").exists()
    uninstalled = chatgateway("gateway", "uninstall")
    assert uninstalled.returncode == 0 and "uninstalled gateway" in uninstalled.stdout
    assert daemonkit_sandbox.refused_commands() == []  # nothing tried the real systemctl/schtasks/...


def test_the_home_lives_under_the_apps_own_name(daemonkit_sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAEMONKIT_HOME")
    sys.path.insert(0, str(ROOT))
    try:
        from chatgateway.cli import gateway
    finally:
        sys.path.remove(str(ROOT))
    home = gateway().home.path
    assert home == Path(platformdirs.user_state_dir("chatgateway")) / "daemonkit" / "gateway"
    assert home.is_relative_to(daemonkit_sandbox.home)  # platformdirs follows the sandbox's HOME/XDG


def test_update_restarts_onto_the_new_code(port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tmp_path / "app"
    shutil.copytree(ROOT / "chatgateway", app / "chatgateway")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(app), os.environ["PYTHONPATH"]]))
    assert chatgateway("gateway", "start").returncode == 0
    old_pid = fetch(port)["pid"]
    init = app / "chatgateway" / "__init__.py"
    init.write_text(init.read_text().replace('"1.0"', '"2.0"'))  # "pip install -U chatgateway"
    updated = chatgateway("update")
    assert updated.returncode == 0 and "restarted onto the new code" in updated.stdout, updated.stderr
    health = fetch(port)
    assert health["version"] == "2.0" and health["pid"] != old_pid
    assert chatgateway("gateway", "stop").returncode == 0
