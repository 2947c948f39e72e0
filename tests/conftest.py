"""Shared fixtures: every test gets its own DAEMONKIT_HOME in tmp, and nothing it starts outlives it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# The sandbox plugin normally arrives through daemonkit's pytest11 entry point; where this checkout is
# not the pip-installed daemonkit (a worktree, a plain clone), load it here so the suite is always sandboxed.
if "daemonkit.testing" not in sys.modules:
    pytest_plugins = ["daemonkit.testing"]

# tests/windows runs inside Wine under the Windows CPython (tests/test_windows_lane.py drives it); its
# conftest would otherwise shadow this one as the module ``conftest`` for the whole Linux session.
collect_ignore = ["windows"]


@pytest.fixture
def dk_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An environment whose daemons live under tmp; all of them are stopped at teardown."""
    root = tmp_path / "dkhome"
    monkeypatch.setenv("DAEMONKIT_HOME", str(root))
    # Supervisors are spawned as separate processes: make sure they import this checkout.
    pythonpath = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    env = dict(os.environ)
    yield env
    _stop_everything(root)


def _stop_everything(root: Path) -> None:
    from daemonkit import api
    from daemonkit.paths import Home
    from daemonkit.spec import load_spec

    if not root.exists():
        return
    for home_dir in root.iterdir():
        home = Home(home_dir)
        try:
            spec = load_spec(home.spec_file)
            api.stop(spec, home, timeout=10)
        except Exception:  # teardown must try every home
            pass


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m daemonkit ARGS`` as a user would; returns the completed process (text)."""
    return subprocess.run([sys.executable, "-m", "daemonkit", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, input=input)


@pytest.fixture
def cli(dk_env: dict[str, str]):  # type: ignore[no-untyped-def]
    def run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=dk_env, **kw)  # type: ignore[arg-type]

    return run


def with_log_cap(spec_text: str, max_bytes: int) -> str:
    """The spec text with every program's log cap set to ``max_bytes`` (specs omit default fields)."""
    import tomllib

    import tomli_w

    data = tomllib.loads(spec_text)
    for program in data.get("programs", {}).values():
        program.setdefault("logs", {})["max_bytes"] = max_bytes
    return tomli_w.dumps(data)
