"""Runs as the test user inside with-systemd-user.sh and drives the ``daemonkit`` CLI as a user types it.

Every command is a real ``python -m daemonkit ...`` process talking to a real ``systemd --user``;
what each returned and what systemd then said is written to ``WORKDIR/cli-PHASE.json`` (also when a
step fails, with the traceback). The assertions live in test_systemd_cli.py.

    python cli_driver.py first|second WORKDIR
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from driver_util import alive, record, show, tree, wait_for

PY = sys.executable
HOME = Path(os.environ["HOME"])
UNIT_DIR = HOME / ".config" / "systemd" / "user"
# Program arguments with everything a shell or a unit file would mangle; they live in spec.toml.
ODD_ARGS = ["a b", 'd"q', "it's", "100%", "%h", "$HOME", "${X}", "back\\slash", "line1\nline2", "tab\there"]


def dk(*args: str, timeout: float = 90, drop_env: tuple[str, ...] = ()) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    proc = subprocess.run([PY, "-m", "daemonkit", *args], capture_output=True, text=True, timeout=timeout, env=env)
    return {"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr}


def journal(unit: str) -> list[str]:
    return subprocess.run(["journalctl", "--user", "-u", unit, "--no-pager", "-o", "cat"],
                          capture_output=True, text=True, timeout=10).stdout.splitlines()


def pids_with(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if marker.encode() in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def status_json(name: str) -> dict[str, Any]:
    result = dk("status", name, "--json")
    try:
        data = json.loads(result["out"])
    except ValueError:
        data = {}
    data["rc"] = result["rc"]
    return data


def program(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next((p for p in status.get("programs", []) if p["name"] == name), {})


def health(port: int) -> dict[str, Any] | None:
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(name: str, argv: list[str], extra: str = "") -> None:
    """A one-program spec in the daemon's home, as 'daemonkit add' writes it (saves a CLI start per
    scratch daemon; 'add' itself is covered by test_cli.py)."""
    home = Path(os.environ["DAEMONKIT_HOME"]) / name
    home.mkdir(mode=0o700)
    (home / "spec.toml").write_text(f'name = "{name}"\n[programs.{name}]\nargv = {json.dumps(argv)}\n{extra}')


def web_spec(work: Path, port: int) -> Path:
    argv_file = work / "argv.json"
    recorder = ("import json, sys, time; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]));"
                " print('recorded', flush=True); time.sleep(3600)")
    text = (
        'name = "web"\n'
        "[programs.gateway]\n"
        f"argv = {json.dumps([PY, '-m', 'daemonkit.demo_gateway', '--port', str(port)])}\n"
        'restart = "always"\n'
        "stop_grace = 5.0\n"
        "[programs.gateway.ready]\n"
        f'http = "http://127.0.0.1:{port}/health"\n'
        "timeout = 20.0\n"
        "[programs.recorder]\n"
        f"argv = {json.dumps([PY, '-c', recorder, str(argv_file), *ODD_ARGS])}\n"
        'restart = "always"\n'
    )
    path = work / "web.toml"
    path.write_text(text)
    return path


def lifecycle(obs: dict[str, Any], work: Path) -> None:
    unit = "daemonkit-web.service"
    port = free_port()
    spec_file = web_spec(work, port)
    obs["install"] = dk("install", "--spec", str(spec_file))
    obs["after_install"] = show(unit)
    obs["status_1"] = status_json("web")
    obs["health_1"] = health(port)
    obs["argv_seen"] = json.loads(wait_for("the recorder", lambda: (work / "argv.json").exists() and
                                           (work / "argv.json").read_text()))
    obs["reinstall_same"] = dk("install", "--spec", str(spec_file))
    obs["after_reinstall_same"] = show(unit)

    port2 = free_port()
    spec_file = web_spec(work, port2)
    obs["port2"] = port2
    obs["reinstall_changed"] = dk("install", "--spec", str(spec_file))
    obs["after_reinstall_changed"] = show(unit)
    obs["health_2"] = health(port2)
    obs["health_old_port"] = health(port)

    # Drift: a hand edit of the unit is reported, undone and reloaded.
    unit_file = UNIT_DIR / unit
    text = unit_file.read_text()
    unit_file.write_text(text.replace("RestartSec=1", "RestartSec=9"))
    obs["reinstall_drift"] = dk("install", "web")
    obs["after_drift"] = show(unit)
    obs["unit_restored"] = unit_file.read_text() == text

    # kill -9 of the supervisor: systemd restarts it; the old programs are ended or adopted, never doubled.
    status = status_json("web")
    old_sup, old_gw = status.get("supervisor_pid"), program(status, "gateway").get("pid")
    obs["before_kill"] = {"supervisor": old_sup, "gateway": old_gw, "props": show(unit)}
    os.kill(int(old_sup), signal.SIGKILL)
    obs["after_kill"] = wait_for("systemd to restart the supervisor", lambda: (
        (p := show(unit))["ActiveState"] == "active" and p["MainPID"] not in ("0", str(old_sup)) and p))
    obs["status_after_kill"] = wait_for("the new supervisor's programs", lambda: (
        (s := status_json("web"))["rc"] == 0 and program(s, "gateway").get("state") == "ready" and s))
    obs["old_gateway_alive"] = alive(old_gw)
    obs["gateways_running"] = len(pids_with(f"--port\0{port2}"))
    obs["health_after_kill"] = health(port2)

    obs["stop"] = dk("stop", "web")
    obs["after_stop"] = show(unit)
    obs["status_after_stop"] = status_json("web")
    obs["left_after_stop"] = pids_with(str(work / "argv.json"))
    obs["start"] = dk("start", "web")
    obs["after_start"] = show(unit)

    # Exit 78: a broken spec makes the restarted supervisor exit with EX_CONFIG; systemd must not retry.
    home = Path(status["home"])
    good = (home / "spec.toml").read_bytes()
    (home / "spec.toml").write_text("this is [ not toml")
    os.kill(int(show(unit)["MainPID"]), signal.SIGKILL)
    obs["after_78"] = wait_for("the unit to fail with 78", lambda: ((p := show(unit))["ActiveState"] == "failed" and p))
    time.sleep(2.5)  # RestartSec=1: a restart would have happened by now
    obs["after_78_later"] = show(unit)
    obs["left_after_78"] = pids_with(str(work / "argv.json"))
    (home / "spec.toml").write_bytes(good)

    # A supervisor that cannot start under systemd: the error carries this start's journal lines.
    blocker = home / "control.sock" / "in-the-way"
    blocker.parent.unlink(missing_ok=True)  # the socket file the SIGKILLed supervisor left
    blocker.mkdir(parents=True)
    obs["start_blocked"] = dk("start", "web")
    obs["after_start_blocked"] = show(unit)
    blocker.rmdir()
    blocker.parent.rmdir()

    obs["start_again"] = dk("start", "web")
    obs["after_start_again"] = show(unit)
    obs["journal"] = journal(unit)
    # Left enabled and running: the harness ends this "session"; the second phase is the next login.


def failing_install(obs: dict[str, Any], work: Path) -> None:
    unit = "daemonkit-bad.service"
    counter = work / "bad-attempt"
    code = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); n = int(p.read_text()) + 1 if p.exists() else 1;"
            "p.write_text(str(n)); print(f'bad config, attempt {n}', file=sys.stderr); sys.exit(78)")
    seed("bad", [PY, "-c", code])
    obs["bad_install"] = dk("install", "bad")
    obs["bad_after_install"] = show(unit)
    obs["bad_start"] = dk("start", "bad")
    obs["bad_after_start"] = show(unit)
    obs["bad_left"] = pids_with(str(counter))
    obs["bad_uninstall"] = dk("uninstall", "bad")


def foreign_unit(obs: dict[str, Any], work: Path) -> None:
    unit_file = UNIT_DIR / "daemonkit-foreign.service"
    foreign = "[Unit]\nDescription=someone else's unit\n\n[Service]\nExecStart=/bin/sleep 600\n"
    unit_file.write_text(foreign)
    seed("foreign", [PY, "-c", "import time; time.sleep(600)"])
    obs["foreign_install"] = dk("install", "foreign")
    obs["foreign_untouched"] = unit_file.read_text() == foreign
    obs["foreign_record"] = (Path(os.environ["DAEMONKIT_HOME"]) / "foreign" / "install.json").exists()
    obs["foreign_uninstall_refused"] = dk("uninstall", "foreign")
    obs["foreign_forced"] = dk("install", "foreign", "--force")
    obs["foreign_after_force"] = show("daemonkit-foreign.service")
    obs["foreign_uninstall"] = dk("uninstall", "foreign")
    obs["foreign_file_after"] = unit_file.exists()


def unwritable_unit_dir(obs: dict[str, Any], work: Path) -> None:
    mode = UNIT_DIR.stat().st_mode & 0o7777
    seed("locked", [PY, "-c", "import time; time.sleep(600)"])
    UNIT_DIR.chmod(0o555)
    try:
        obs["locked_install"] = dk("install", "locked")
    finally:
        UNIT_DIR.chmod(mode)
    obs["locked_record"] = (Path(os.environ["DAEMONKIT_HOME"]) / "locked" / "install.json").exists()
    obs["locked_status"] = status_json("locked")


def killed_install(obs: dict[str, Any], work: Path) -> None:
    unit = "daemonkit-slowpoke.service"
    port = free_port()
    marker = str(work / "slowpoke-marker")
    # Ready 1.5 s after it starts: time enough to kill `install` while systemd is starting the unit.
    code = (f"import time, http.server; time.sleep(1.5); http.server.HTTPServer(('127.0.0.1', {port}), "
            "http.server.SimpleHTTPRequestHandler).serve_forever()")
    seed("slowpoke", [PY, "-c", code, marker], f'[programs.slowpoke.ready]\ntcp = "127.0.0.1:{port}"\n')

    def kill_install_midway() -> dict[str, str]:
        proc = subprocess.Popen([PY, "-m", "daemonkit", "install", "slowpoke"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        wait_for("install to register the unit", lambda: show(unit).get("ActiveState") in ("activating", "active"))
        proc.kill()
        proc.wait()
        return show(unit)

    obs["killed_1"] = kill_install_midway()
    obs["resumed_install"] = dk("install", "slowpoke")
    obs["after_resumed"] = show(unit)
    obs["resumed_status"] = status_json("slowpoke")
    obs["slowpoke_uninstall_1"] = dk("uninstall", "slowpoke")
    obs["killed_2"] = kill_install_midway()
    obs["undo_uninstall"] = dk("uninstall", "slowpoke")
    obs["after_undo"] = show(unit)
    obs["slowpoke_left"] = pids_with(marker)
    obs["slowpoke_unit_file"] = (UNIT_DIR / unit).exists()


def no_user_bus(obs: dict[str, Any], work: Path) -> None:
    # As after 'sudo su - sdtest': no XDG_RUNTIME_DIR, no bus address.
    seed("nobus", [PY, "-c", "import time; time.sleep(600)"])
    obs["nobus_install"] = dk("install", "nobus", drop_env=("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"))
    obs["nobus_record"] = (Path(os.environ["DAEMONKIT_HOME"]) / "nobus" / "install.json").exists()
    obs["nobus_unit"] = show("daemonkit-nobus.service")


def odd_python(obs: dict[str, Any], work: Path) -> None:
    # The venv reached through a directory name systemd refuses as an executable ("it's "q"\..."):
    # the unit runs it through env(1), and the supervisor's argv must still be exactly that path.
    link = work / "it's \"q\" back\\slash $HOME 100%"
    link.symlink_to(Path(PY).parent.parent)
    python = str(link / "bin" / "python")
    seed("oddpy", [PY, "-c", "import time; time.sleep(600)"])
    proc = subprocess.run([python, "-m", "daemonkit", "install", "oddpy"], capture_output=True, text=True, timeout=90)
    obs["oddpy_install"] = {"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr}
    props = show("daemonkit-oddpy.service")
    obs["oddpy_unit"] = props
    pid = int(props.get("MainPID") or 0)
    obs["oddpy_cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1] if pid else []
    obs["oddpy_python"] = python
    obs["oddpy_uninstall"] = dk("uninstall", "oddpy")
    link.unlink()


def system_scope_fallback(obs: dict[str, Any], work: Path) -> None:
    spec = work / "sys.toml"
    spec.write_text(f'name = "sys"\nscope = "system"\n[programs.p]\nargv = {json.dumps([PY, "-c", "import time; time.sleep(600)"])}\n')
    obs["sys_refused"] = dk("install", "--spec", str(spec))
    obs["sys_fallback"] = dk("install", "--spec", str(spec), "--fallback", "user")
    obs["sys_unit"] = show("daemonkit-sys.service")
    obs["sys_uninstall"] = dk("uninstall", "sys")


def detached_then_install(obs: dict[str, Any], work: Path) -> None:
    # `start` before `install` runs the supervisor detached; install hands the daemon over to systemd.
    marker = str(work / "handover-marker")
    seed("handover", [PY, "-c", "import time; time.sleep(600)", marker])
    obs["handover_start"] = dk("start", "handover")
    detached = status_json("handover")
    obs["handover_detached"] = {"backend": detached.get("backend"), "supervisor": detached.get("supervisor_pid")}
    obs["handover_install"] = dk("install", "handover")
    obs["handover_unit"] = show("daemonkit-handover.service")
    obs["handover_status"] = status_json("handover")
    obs["handover_old_alive"] = alive(detached.get("supervisor_pid"))
    obs["handover_programs"] = len(pids_with(marker))
    dk("uninstall", "handover")


def first(obs: dict[str, Any], work: Path) -> None:
    obs["home_before"] = tree(HOME)
    obs["seconds"] = {}
    for scenario in (no_user_bus, odd_python, system_scope_fallback, detached_then_install, lifecycle,
                     failing_install, foreign_unit, unwritable_unit_dir, killed_install):
        started = time.monotonic()
        scenario(obs, work)
        obs["seconds"][scenario.__name__] = round(time.monotonic() - started, 2)


def second(obs: dict[str, Any], work: Path) -> None:
    unit = "daemonkit-web.service"
    obs["at_login"] = wait_for("the unit to start at login", lambda: ((p := show(unit))["ActiveState"] == "active" and p))
    obs["status_at_login"] = wait_for("the programs at login", lambda: (
        (s := status_json("web"))["rc"] == 0 and program(s, "gateway").get("state") == "ready" and s))
    gateway = program(obs["status_at_login"], "gateway").get("pid")
    obs["uninstall"] = dk("uninstall", "web")
    obs["after_uninstall"] = show(unit)
    obs["gateway_after_uninstall"] = alive(gateway)
    obs["left_after_uninstall"] = pids_with(str(work / "argv.json"))
    obs["uninstall_again"] = dk("uninstall", "web")
    obs["home_after"] = tree(HOME)
    obs["remove"] = dk("remove", "web")
    # The demo picks the user manager when it is reachable.
    obs["demo"] = dk("demo")
    obs["demo_unit"] = show("daemonkit-demo.service")
    obs["demo_status"] = status_json("demo")
    obs["demo_stop"] = dk("stop", "demo")
    obs["demo_after_stop"] = show("daemonkit-demo.service")
    obs["demo_uninstall"] = dk("uninstall", "demo")
    obs["demo_remove"] = dk("remove", "demo")
    obs["home_after_demo"] = tree(HOME)


def main() -> int:
    phase, work = sys.argv[1], Path(sys.argv[2])
    config = json.loads((work / "config.json").read_text())
    os.environ["DAEMONKIT_HOME"] = config["dk_root"]
    obs: dict[str, Any] = {"phase": phase}
    act = {"first": first, "second": second}[phase]
    return record(work / f"cli-{phase}.json", obs, lambda: act(obs, work))


if __name__ == "__main__":
    sys.exit(main())
