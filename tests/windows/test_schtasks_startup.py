"""Logon task (schtasks through a recording fake: schtasks is a stub under Wine) and the Startup-folder
fallback (real: the folder from SHGetKnownFolderPath, the launcher run by cmd.exe and by a simulated
logon), reconciled so that exactly one autostart exists."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from daemonkit.backends.base import BackendContext
from daemonkit.backends.schtasks import SchtasksBackend, render_task_xml, task_drift, task_name
from daemonkit.backends.startup import StartupBackend, known_startup_folder, launcher_name, render_launcher
from daemonkit.paths import Home
from daemonkit.proc.cmdline import batch_command
from daemonkit.spec import Program, Spec
from .fakes import FakeSchtasks

NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"
# settingsType of the Task Scheduler 1.2 schema (an xs:all: any order, each at most once).
SETTINGS_ELEMENTS = {
    "AllowStartOnDemand", "RestartOnFailure", "MultipleInstancesPolicy", "DisallowStartIfOnBatteries",
    "StopIfGoingOnBatteries", "AllowHardTerminate", "StartWhenAvailable", "NetworkProfileName",
    "RunOnlyIfNetworkAvailable", "WakeToRun", "Enabled", "Hidden", "DeleteExpiredTaskAfter", "IdleSettings",
    "NetworkSettings", "ExecutionTimeLimit", "Priority", "RunOnlyIfIdle", "UseUnifiedSchedulingEngine",
    "DisallowStartOnRemoteAppSession",
}


def _spec(name: str = "gateway") -> Spec:
    return Spec(name=name, programs=(Program("web", (sys.executable, "-c", "import time; time.sleep(60)")),))


class Spawns(list):
    """Records the supervisor starts a backend asks for (instead of starting one)."""

    def __call__(self, home: Home, python: str, backend: str) -> None:
        self.append((str(home.path), python, backend))


def _ctx(tmp_path: Path, fake: FakeSchtasks, **env: str) -> BackendContext:
    base = {"SYSTEMROOT": "C:\\windows", "USERNAME": "Jörg 100%", "USERDOMAIN": "WORKGROUP"}
    return BackendContext(runner=fake.runner, python=sys.executable, env={**base, **env},
                          dirs={"startup_dir": tmp_path / "Startup"})


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home(tmp_path / "home & 100% ^caret").ensure()
    home.spec_file.write_text("name = 'gateway'\n")
    return home


def test_task_xml_has_every_required_element_and_setting(tmp_path, home):
    text = render_task_xml(_spec(), home, "C:\\Py\\pythonw.exe", "WORKGROUP\\Jörg 100%")
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>')
    root = ET.fromstring(text.split("?>", 1)[1])
    assert root.tag == NS + "Task" and root.get("version") == "1.2"
    assert [child.tag[len(NS):] for child in root] == ["RegistrationInfo", "Triggers", "Principals", "Settings",
                                                       "Actions"]
    def get(path: str) -> str:
        return root.find("/".join(NS + part for part in path.split("/"))).text
    assert get("Triggers/LogonTrigger/UserId") == "WORKGROUP\\Jörg 100%"
    assert get("Principals/Principal/UserId") == "WORKGROUP\\Jörg 100%"
    assert get("Principals/Principal/LogonType") == "InteractiveToken"
    assert get("Principals/Principal/RunLevel") == "LeastPrivilege"
    settings = root.find(NS + "Settings")
    names = [child.tag[len(NS):] for child in settings]
    assert set(names) <= SETTINGS_ELEMENTS and len(names) == len(set(names))
    assert get("Settings/ExecutionTimeLimit") == "PT0S"
    assert get("Settings/MultipleInstancesPolicy") == "IgnoreNew"
    assert get("Settings/DisallowStartIfOnBatteries") == "false"
    assert get("Settings/StopIfGoingOnBatteries") == "false"
    assert get("Settings/StartWhenAvailable") == "true"
    assert get("Settings/RestartOnFailure/Interval") == "PT1M"
    assert 1 <= int(get("Settings/RestartOnFailure/Count")) <= 999
    # The action is the supervisor itself (real exit code), console-less, no cmd.exe launcher.
    assert get("Actions/Exec/Command") == "C:\\Py\\pythonw.exe"
    assert get("Actions/Exec/WorkingDirectory") == str(home.path)


def test_task_arguments_reach_the_supervisor_exactly(tmp_path, home):
    """<Arguments> is parsed by the interpreter's C runtime: run it and compare sys.argv."""
    text = render_task_xml(_spec(), home, sys.executable, "u")
    arguments = ET.fromstring(text.split("?>", 1)[1]).find(f"{NS}Actions/{NS}Exec/{NS}Arguments").text
    assert arguments.startswith("-m daemonkit supervise --home ")
    probe = tmp_path / "argv.py"
    probe.write_text("import sys, json; print(json.dumps(sys.argv[1:]))")
    out = subprocess.run(f'"{sys.executable}" "{probe}" {arguments.replace("-m daemonkit ", "", 1)}',
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == '["supervise", "--home", %s, "--backend", "schtasks"]' % (
        __import__("json").dumps(str(home.path)))


def test_install_registers_from_utf16_xml_with_exact_command_lines(tmp_path, home):
    fake = FakeSchtasks()
    ctx = _ctx(tmp_path, fake)
    spawns = Spawns()
    backend = SchtasksBackend(ctx, spawner=spawns)
    spec = _spec()
    lines = backend.install(spec, home)
    name = task_name(spec, ctx)
    assert fake.runs == [name] and spawns == []  # started now through Task Scheduler itself
    exe = "C:\\windows\\System32\\schtasks.exe"
    assert name == "daemonkit-gateway-J_rg_100_"
    assert fake.calls[0] == (exe, "/Create", "/TN", name, "/XML", str(home.path / "task.xml"), "/F")
    assert not any("/Change" in call for call in fake.calls)
    assert any("registered the logon task" in line for line in lines)
    assert not (tmp_path / "Startup").exists() or not list((tmp_path / "Startup").iterdir())
    assert [p.name for p in home.path.iterdir() if p.name.endswith(".tmp")] == []
    status = backend.status(spec, home)
    assert status.installed and status.enabled and status.drift == []
    # Drift: a task changed behind our back (e.g. someone set the 72 h default back).
    fake.tasks[name] = fake.tasks[name].replace("<ExecutionTimeLimit>PT0S<", "<ExecutionTimeLimit>PT72H<")
    assert any("ExecutionTimeLimit" in d for d in backend.status(spec, home).drift)
    backend.install(spec, home)  # re-install repairs it
    assert backend.status(spec, home).drift == []
    backend.start(spec, home)
    assert fake.runs == [name] * 3
    removed = backend.uninstall(spec, home)
    assert fake.tasks == {} and any("removed the logon task" in line for line in removed)
    assert [c[1] for c in fake.calls[-3:]] == ["/Query", "/End", "/Delete"]
    assert not (home.path / "task.xml").exists()


def test_access_denied_falls_back_to_one_startup_item_and_back(tmp_path, home):
    fake = FakeSchtasks()
    fake.create_error = (1, "FEHLER: Zugriff verweigert\n")  # localized: decisions never parse the text
    ctx = _ctx(tmp_path, fake)
    spawns = Spawns()
    backend = SchtasksBackend(ctx, spawner=spawns)
    spec = _spec()
    lines = backend.install(spec, home)
    item = tmp_path / "Startup" / launcher_name(spec)
    assert spawns == [(str(home.path), sys.executable, "startup")] and fake.runs == []
    assert item.exists() and any("using your Startup folder instead" in line for line in lines)
    assert sorted(p.name for p in item.parent.iterdir()) == [item.name], "exactly one file, no temp files"
    status = backend.status(spec, home)
    assert status.backend == "startup" and status.installed
    # The task becomes possible again: installing it removes the Startup item (one autostart only).
    fake.create_error = None
    backend.install(spec, home)
    assert task_name(spec, ctx) in fake.tasks and not item.exists()
    # And the Startup backend removes the task when it takes over.
    StartupBackend(ctx, spawner=spawns).install(spec, home)
    assert fake.tasks == {} and item.exists()
    backend.uninstall(spec, home)
    assert not item.exists() and list(item.parent.iterdir()) == []


def test_task_drift_reads_registered_xml():
    assert task_drift("<Task><Command>a</Command></Task>", "junk") == ["the registered task's XML cannot be read"]


def test_startup_folder_comes_from_the_shell():
    folder = known_startup_folder()
    assert folder.is_dir() and folder.name.lower() == "startup"
    assert "Start Menu" in str(folder)


def test_launcher_is_quiet_when_its_target_is_gone(tmp_path, home):
    spec = _spec()
    launcher = tmp_path / "launch.cmd"
    launcher.write_bytes(render_launcher(spec, home, str(tmp_path / "gone" / "pythonw.exe")))
    result = subprocess.run(**batch_command(str(launcher), []).popen_kwargs(), capture_output=True, timeout=30)
    assert result.returncode == 0 and result.stderr == b""
    launcher.write_bytes(render_launcher(spec, Home(tmp_path / "uninstalled"), sys.executable))
    result = subprocess.run(**batch_command(str(launcher), []).popen_kwargs(), capture_output=True, timeout=30)
    assert result.returncode == 0 and result.stderr == b""


def test_launcher_starts_the_supervisor_with_exact_arguments(tmp_path, home):
    """The launcher's own quoting: a stand-in 'python' (a .py relayed by the real interpreter) records
    its argv; the home path holds &, %, ^ and a space."""
    recorder = tmp_path / "rec.py"
    out = tmp_path / "argv.json"
    recorder.write_text(f"import sys, json; open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))")
    text = render_launcher(_spec(), home, sys.executable).decode("utf-8")
    assert text.splitlines()[2:4] == ["setlocal DisableDelayedExpansion", "chcp 65001 >nul"]
    # Swap the "-m daemonkit" for the recorder, keep the rest of the line byte for byte.
    text = text.replace('"-m" "daemonkit"', f'"{recorder}"')
    launcher = tmp_path / "launch.cmd"
    launcher.write_bytes(text.encode("utf-8"))
    subprocess.run(**batch_command(str(launcher), []).popen_kwargs(), capture_output=True, timeout=30)
    from .helpers import wait_until

    assert wait_until(out.exists, 20)
    assert __import__("json").loads(out.read_text()) == ["supervise", "--home", str(home.path), "--backend", "startup"]


def test_real_startup_folder_is_left_as_it_was(tmp_path, home):
    fake = FakeSchtasks()
    ctx = BackendContext(runner=fake.runner, python=sys.executable,
                         env={"SYSTEMROOT": "C:\\windows", "USERNAME": "tester"})
    backend = StartupBackend(ctx, spawner=Spawns())  # no startup_dir override: this (Wine) profile's folder
    folder = known_startup_folder()
    before = sorted(os.listdir(folder))
    spec = _spec("startup-probe")
    try:
        assert backend.available().ok
        backend.install(spec, home)
        assert sorted(os.listdir(folder)) == sorted(before + [launcher_name(spec)])
        assert backend.status(spec, home).installed and backend.status(spec, home).drift == []
    finally:
        backend.uninstall(spec, home)
    assert sorted(os.listdir(folder)) == before


def test_simulated_logon_starts_the_daemon_and_uninstall_leaves_the_folder_as_before(tmp_path, monkeypatch):
    """The Startup item for real: ``wineboot`` runs the Startup folder like a logon; the daemon comes up
    (supervisor through pythonw.exe, program in its job); uninstall leaves the folder as it was."""
    from .helpers import wait_until
    from daemonkit import api
    from daemonkit.proc import winjob

    monkeypatch.setenv("DAEMONKIT_HOME", str(tmp_path / "dk"))
    spec = Spec(name="logon", programs=(Program("web", (sys.executable, "-c", "import time; time.sleep(120)")),))
    home = api.save_spec(spec)
    ctx = BackendContext(runner=FakeSchtasks().runner, python=sys.executable,
                         env={"SYSTEMROOT": "C:\\windows", "USERNAME": "tester"})
    spawns = Spawns()
    backend = StartupBackend(ctx, spawner=spawns)
    folder = known_startup_folder()
    before = sorted(os.listdir(folder))
    try:
        backend.install(spec, home)
        assert len(spawns) == 1 and not api.status_of(spec, home).running  # only the logon below starts it
        assert "pythonw.exe" in backend.render(spec, home)[0].text
        subprocess.run(["wineboot.exe"], capture_output=True, timeout=60)  # a logon
        assert wait_until(lambda: api.status_of(spec, home).running, 60), "the Startup item did not start it"
        assert wait_until(lambda: api.status_of(spec, home).programs[0].state == "running", 30)
        status = api.status_of(spec, home)
        assert status.backend == "startup" and winjob.is_running(status.programs[0].pid)
    finally:
        backend.uninstall(spec, home)
        api.stop_supervisor(spec, home)
    assert sorted(os.listdir(folder)) == before
    assert not api.status_of(spec, home).running
