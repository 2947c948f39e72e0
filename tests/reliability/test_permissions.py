"""Permissions: the home and every runtime file are owner-only whatever the umask; another local user can
neither read them nor control the supervisor (even when let past the directory permissions); planted
directories and symlinks in shared /tmp are refused; files written for a service manager are never
writable by others.

Anchors: systemd creates RuntimeDirectory= 0755/StateDirectory= 0755 owned by the service user and
refuses world-writable unit search paths; its private sockets (/run/systemd/private) are root-only and
checked with SO_PEERCRED; s6-svscan's control fifos live in a 0700 supervise/ dir; the SCM grants
SERVICE_START/STOP only to administrators unless a service's security descriptor says otherwise.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from .conftest import PY, QUICK, SLEEP, Sandbox, as_second_user, need_second_user


def _modes(root: Path) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in [*dirnames, *filenames]:
            full = Path(dirpath) / entry
            out[str(full)] = stat.S_IMODE(full.lstat().st_mode)
    return out


def test_everything_is_owner_only_even_with_umask_000(sandbox: Sandbox) -> None:
    spec = sandbox.write_spec("perm", {"app": {"argv": [PY, "-c", SLEEP], "restart": "always", "backoff": QUICK}})
    cmd = f'umask 000; exec "{PY}" -m daemonkit start perm --spec "{spec}"'
    result = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=sandbox.env, timeout=90)
    assert result.returncode == 0, result.stderr
    from daemonkit.paths import Home

    home = Home(sandbox.home("perm"))
    sock_dir = home.control_socket.parent
    modes = _modes(home.path)
    if sock_dir != home.path:
        modes.update(_modes(sock_dir))
        modes[str(sock_dir)] = stat.S_IMODE(sock_dir.stat().st_mode)
    modes[str(home.path)] = stat.S_IMODE(home.path.stat().st_mode)
    # The directory holding all homes: created by daemonkit, so it is private too (names leak otherwise).
    modes[str(sandbox.root)] = stat.S_IMODE(sandbox.root.stat().st_mode)
    loose = {path: oct(mode) for path, mode in modes.items() if mode & 0o077}
    assert not loose, loose
    assert sandbox.cli("stop", "perm").returncode == 0


def test_another_user_can_neither_read_nor_control(sandbox: Sandbox) -> None:
    need_second_user()
    sandbox.start_spec("priv", {"app": {"argv": [PY, "-c", SLEEP], "restart": "always", "backoff": QUICK}})
    from daemonkit.paths import Home

    home = Home(sandbox.home("priv"))
    sock = home.control_socket
    # Let the second user walk down to the home, as if its parents were public.
    opened = []
    for parent in list(home.path.parents) + ([sock.parent] if sock.parent != home.path else []):
        mode = stat.S_IMODE(parent.stat().st_mode)
        if not mode & 0o001:
            opened.append((parent, mode))
            os.chmod(parent, mode | 0o001)
    try:
        probe = ("import json, socket, sys\n"
                 "out = {}\n"
                 f"for f in ({str(home.state_file)!r}, {str(home.spec_file)!r}, {str(home.program_log('app', 'out'))!r}):\n"
                 "    try: open(f).read(); out[f] = 'read'\n"
                 "    except OSError as e: out[f] = type(e).__name__\n"
                 "s = socket.socket(socket.AF_UNIX)\n"
                 f"try: s.connect({str(sock)!r}); out['connect'] = 'connected'\n"
                 "except OSError as e: out['connect'] = type(e).__name__\n"
                 "print(json.dumps(out))\n")
        seen = json.loads(as_second_user(probe).stdout)
        assert all(v == "PermissionError" for v in seen.values()), seen

        # Even let past the permissions, the supervisor itself refuses another uid (SO_PEERCRED).
        os.chmod(home.path, 0o711)
        os.chmod(sock.parent, 0o711)
        os.chmod(sock, 0o666)
        probe = ("import json, socket\n"
                 "s = socket.socket(socket.AF_UNIX)\n"
                 f"s.connect({str(sock)!r})\n"
                 "try: s.sendall(b'{\"op\": \"shutdown\"}\\n')\n"
                 "except OSError: pass  # refused before it read anything: the answer is waiting\n"
                 "print(s.makefile().readline())\n")
        answer = as_second_user(probe)
        assert answer.returncode == 0, answer.stderr
        reply = json.loads(answer.stdout)
        assert reply["ok"] is False and "may not control" in reply["error"], reply
    finally:
        for parent, mode in reversed(opened):
            os.chmod(parent, mode)
    status = sandbox.status("priv")
    assert status["running"] and status["programs"][0]["state"] == "running"  # not shut down
    refused = [e for e in sandbox.events("priv") if e["event"] == "control" and "refused" in e["detail"]]
    assert refused, "the refusal was not recorded"
    # The next start tightens what we loosened.
    assert sandbox.cli("stop", "priv").returncode == 0
    assert sandbox.cli("start", "priv").returncode == 0
    assert stat.S_IMODE(home.path.stat().st_mode) == 0o700
    assert sandbox.cli("stop", "priv").returncode == 0


@pytest.mark.parametrize("attack", ["foreign-dir", "symlink"])
def test_planted_short_socket_dir_in_tmp_is_refused(sandbox: Sandbox, attack: str) -> None:
    """A long home path puts the control socket in /tmp/daemonkit-UID-HASH, a predictable name in a
    world-writable directory: a dir planted there by someone else, or a symlink, must not be used."""
    from daemonkit.paths import Home

    name = "n" * 60  # long enough to need the short socket dir
    home = Home(sandbox.root / name)
    sock_dir = home.control_socket.parent
    assert sock_dir != home.path, "the home path is short here; the short socket dir is not used"
    decoy = sandbox.work / "attacker-dir"
    decoy.mkdir()
    try:
        if attack == "symlink":
            sock_dir.symlink_to(decoy)
        else:
            uid, gid = need_second_user()
            sock_dir.mkdir(mode=0o777)
            os.chown(sock_dir, uid, gid)
        spec = sandbox.write_spec(name, {"app": {"argv": [PY, "-c", SLEEP], "backoff": QUICK}})
        result = sandbox.cli("start", name, "--spec", str(spec))
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert str(sock_dir) in result.stderr, result.stderr
        assert not list(decoy.iterdir()), "something was created through the planted link"
        sandbox.assert_nothing_running(timeout=3)
    finally:
        if sock_dir.is_symlink():
            sock_dir.unlink()
        elif sock_dir.exists():
            os.rmdir(sock_dir)


def test_short_socket_dir_is_removed_with_the_daemon(sandbox: Sandbox) -> None:
    from daemonkit.paths import Home

    name = "m" * 60
    home = Home(sandbox.root / name)
    sock_dir = home.control_socket.parent
    assert sock_dir != home.path
    sandbox.start_spec(name, {"app": {"argv": [PY, "-c", SLEEP], "backoff": QUICK}})
    assert sock_dir.is_dir()
    assert sandbox.cli("stop", name).returncode == 0
    # A stopped daemon leaves nothing in the shared /tmp.
    assert not sock_dir.exists(), f"{sock_dir} left behind after stop"
    assert sandbox.cli("remove", name).returncode == 0
    assert not sock_dir.exists()


def test_service_manager_files_are_never_writable_by_others(tmp_path: Path) -> None:
    """System and user scope: what a backend writes (unit, plist) and the directories it creates."""
    from daemonkit.backends._files import write_artifact
    from daemonkit.backends.base import BackendContext
    from daemonkit.backends.launchd import LaunchdBackend
    from daemonkit.backends.systemd import SystemdBackend
    from daemonkit.paths import Home
    from daemonkit.spec import Program, Spec

    old = os.umask(0)
    try:
        for scope in ("user", "system"):
            spec = Spec(name="svc", programs=(Program(name="app", argv=("true",)),), scope=scope)
            home = Home(tmp_path / scope / "home")
            ctx = BackendContext(python="/usr/bin/python3", dirs={
                "systemd_user_dir": tmp_path / scope / "sd-user", "systemd_system_dir": tmp_path / scope / "sd-sys",
                "launch_agents_dir": tmp_path / scope / "agents", "launch_daemons_dir": tmp_path / scope / "daemons"},
                env={"HOME": str(tmp_path)})
            for backend in (SystemdBackend(ctx), LaunchdBackend(ctx)):
                for artifact in backend.render(spec, home):
                    assert not artifact.mode & 0o022, (backend.name, scope, oct(artifact.mode))
                    target = tmp_path / "written" / scope / backend.name / "deep" / artifact.path.name
                    write_artifact(type(artifact)(target, artifact.content, artifact.mode), scope_hint="")
                    for path in [target, *target.parents]:
                        if path == tmp_path:
                            break
                        mode = stat.S_IMODE(path.stat().st_mode)
                        assert not mode & 0o022, (str(path), oct(mode))
    finally:
        os.umask(old)
