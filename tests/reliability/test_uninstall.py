"""Clean uninstall and hands-off files: an inventory of what daemonkit wrote before ``install`` equals the
inventory after ``uninstall`` (and after ``remove``, nothing at all is left, in the home root or in
/tmp); a hand-edited spec is never rewritten by ``start``.

Anchor: ``systemctl disable`` removes exactly the symlinks ``enable`` made; dpkg/rpm purge; the SCM's
DeleteService. The real systemd user-manager lane (tests/systemd) checks the same inventory of $HOME
around install/uninstall under a real ``systemd --user``; here the detached backend, which runs
everywhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .conftest import PY, QUICK, SLEEP, Sandbox


def _tmp_dir(home: Path) -> Path:
    from daemonkit.paths import Home

    return Home(home).control_socket.parent


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    if root.exists():
        for path in [root, *root.rglob("*")]:
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_mode, 0 if path.is_dir() else st.st_size)
    return out


def test_install_uninstall_remove_leaves_no_trace(sandbox: Sandbox) -> None:
    name = "u" * 60  # long enough that the control socket lives in /tmp: that must be cleaned too
    sock_dir = _tmp_dir(sandbox.home(name))
    assert sock_dir.parent == Path(tempfile.gettempdir())
    root_before = _tree(sandbox.root)
    spec = sandbox.write_spec(name, {"app": {"argv": [PY, "-c", SLEEP], "restart": "always", "backoff": QUICK}})
    installed = sandbox.cli("install", name, "--spec", str(spec), "--backend", "detached")
    assert installed.returncode == 0, installed.stderr
    home = sandbox.home(name)
    assert (home / "install.json").exists() and sandbox.supervisors()
    registration = _tree(home)
    uninstalled = sandbox.cli("uninstall", name)
    assert uninstalled.returncode == 0, uninstalled.stderr
    sandbox.assert_nothing_running()
    after = _tree(home)
    # What uninstall removes is the registration; the spec and logs stay until `remove` (documented).
    assert "install.json" in registration and "install.json" not in after
    assert set(after) <= set(registration) | {"logs/supervisor.log"}
    assert not sock_dir.exists(), "a socket dir was left in /tmp"
    assert sandbox.cli("uninstall", name).returncode == 4  # idempotent: says "not installed"
    assert sandbox.cli("remove", name).returncode == 0
    assert _tree(sandbox.root) == root_before or set(_tree(sandbox.root)) <= {"."}
    assert not sock_dir.exists()


def test_start_never_rewrites_a_hand_edited_spec(sandbox: Sandbox) -> None:
    assert sandbox.cli("add", "edited", "--", PY, "-c", SLEEP).returncode == 0
    spec_file = sandbox.home("edited") / "spec.toml"
    text = "# my notes: why this runs, who to call\n" + spec_file.read_text().replace(
        "[programs.edited]", "[programs.edited]  # the bot\n# restart it if it dies\n")
    spec_file.write_text(text)
    os.chmod(spec_file, 0o600)
    for command in (["start", "edited"], ["restart", "edited"], ["status", "edited"], ["stop", "edited"]):
        result = sandbox.cli(*command)
        assert result.returncode in (0, 3), (command, result.stderr)
        assert spec_file.read_text() == text, f"'{' '.join(command)}' rewrote the spec"
