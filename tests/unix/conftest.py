"""Fixtures for the fake-runner backend tests (see fakes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemonkit.backends.base import BackendContext
from daemonkit.paths import Home

from .fakes import FakeSystemd


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "state" / "demo")


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    return tmp_path / "config" / "systemd" / "user"


@pytest.fixture
def fake(user_dir: Path) -> FakeSystemd:
    return FakeSystemd(user_dir)


@pytest.fixture
def ctx(fake: FakeSystemd, user_dir: Path, tmp_path: Path) -> BackendContext:
    return BackendContext(runner=fake.runner, python="/usr/bin/python3",
                          dirs={"systemd_user_dir": user_dir, "linger_dir": tmp_path / "linger"},
                          env={"HOME": str(tmp_path), "XDG_RUNTIME_DIR": "/run/user/1000", "PATH": "/usr/bin:/bin"})
