"""Every unit daemonkit renders passes ``systemd-analyze verify`` with no output at all.

verify exits 0 on unknown keys and bad values (it only prints "..., ignoring."), so any stderr fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemonkit.backends.base import BackendContext, RecordingRunner
from daemonkit.backends.systemd import SystemdBackend
from daemonkit.errors import DaemonkitError
from daemonkit.paths import Home
from daemonkit.spec import Program, Spec

from .fakes import make_spec

ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")

ODD_HOMES = [
    "plain",
    "with space",
    "100% sure",
    "$HOME and ${USER}",
    'double "quotes"',
    "single 'quotes'",
    "back\\slash",
    "semi;colon",
    "ünïcode ☃",
    "trailing backslash\\",
]


def verify(path: Path, scope: str, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(exist_ok=True, mode=0o700)
    argv = [ANALYZE, *(["--user"] if scope == "user" else []), "verify", "--man=no", str(path)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)})
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", \
        f"{argv}: rc={proc.returncode}\n{proc.stderr}{proc.stdout}\n--- unit ---\n{path.read_text()}"


@pytest.mark.parametrize("home_name", ODD_HOMES)
def test_user_unit_verifies(home_name: str, tmp_path: Path) -> None:
    ctx = BackendContext(runner=RecordingRunner(), python=sys.executable,
                         dirs={"systemd_user_dir": tmp_path / "units"}, env={"HOME": str(tmp_path)})
    spec = make_spec(restart="always", grace=30, ready_timeout=10, description="odd % description")
    (artifact,) = SystemdBackend(ctx).render(spec, Home(tmp_path / home_name))
    artifact.path.parent.mkdir(parents=True)
    artifact.path.write_bytes(artifact.content)
    verify(artifact.path, "user", tmp_path)


def test_system_unit_verifies(tmp_path: Path) -> None:
    import pwd

    ctx = BackendContext(runner=RecordingRunner(), python=sys.executable,
                         dirs={"systemd_system_dir": tmp_path / "system"})
    backend = SystemdBackend(ctx, run_as=pwd.getpwuid(0).pw_name, user_session=True, euid=0)
    (artifact,) = backend.render(make_spec(scope="system"), Home(tmp_path / "var lib" / "demo"))
    assert "\nUser=root\nGroup=root\n" in artifact.text
    artifact.path.parent.mkdir(parents=True)
    artifact.path.write_bytes(artifact.content)
    verify(artifact.path, "system", tmp_path)


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check itself can fail: a unit with a typo'd key is rejected."""
    path = tmp_path / "broken.service"
    path.write_text("[Service]\nType=notify\nExecStart=/usr/bin/true\nRestartt=always\n")
    with pytest.raises(AssertionError, match="Unknown key"):
        verify(path, "user", tmp_path)


@pytest.mark.parametrize("venv_name", ["my venv", "100% python", "$HOME venv ${X}", "it's \"quoted\"", "back\\slash"])
def test_odd_python_path_verifies_and_runs_as_written(venv_name: str, tmp_path: Path) -> None:
    """The executable word of ExecStart= (a venv's python in an odd directory) keeps its $ and the rest."""
    python = tmp_path / venv_name / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    ctx = BackendContext(runner=RecordingRunner(), python=str(python),
                         dirs={"systemd_user_dir": tmp_path / "units"}, env={"HOME": str(tmp_path)})
    (artifact,) = SystemdBackend(ctx).render(make_spec(), Home(tmp_path / "home 100% $USER"))
    artifact.path.parent.mkdir(parents=True)
    artifact.path.write_bytes(artifact.content)
    verify(artifact.path, "user", tmp_path)


def test_program_argv_stays_out_of_the_unit(tmp_path: Path) -> None:
    """Spaces, quotes, %, $ and newlines in a program's argv cannot break the unit: they live in
    spec.toml, and the unit only runs the supervisor."""
    odd = ("/bin/echo", "a b", 'd"q', "it's", "100%", "%h", "$HOME", "${X}", "line1\nline2", "back\\slash")
    spec = Spec(name="odd", programs=(Program("p", odd),))
    ctx = BackendContext(runner=RecordingRunner(), python=sys.executable,
                         dirs={"systemd_user_dir": tmp_path / "units"}, env={"HOME": str(tmp_path)})
    (artifact,) = SystemdBackend(ctx).render(spec, Home(tmp_path / "odd"))
    assert "line1" not in artifact.text and "/bin/echo" not in artifact.text
    artifact.path.parent.mkdir(parents=True)
    artifact.path.write_bytes(artifact.content)
    verify(artifact.path, "user", tmp_path)


def test_newline_in_the_home_path_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    ctx = BackendContext(runner=RecordingRunner(), python=sys.executable,
                         dirs={"systemd_user_dir": tmp_path / "units"}, env={"HOME": str(tmp_path)})
    with pytest.raises(DaemonkitError, match="control character"):
        SystemdBackend(ctx).render(make_spec(), Home(tmp_path / "two\nlines"))
    assert not (tmp_path / "units").exists()
