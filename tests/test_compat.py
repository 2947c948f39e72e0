"""The seed's five names keep the seed's values and behaviour on both platforms."""

from __future__ import annotations

import importlib
import shutil
import sys

import pytest

from daemonkit import compat


@pytest.fixture
def windows_compat(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The module as it is on Windows: IS_WINDOWS is computed at import from sys.platform."""
    monkeypatch.setattr(sys, "platform", "win32")
    module = importlib.reload(compat)
    yield module
    monkeypatch.undo()
    importlib.reload(compat)


def test_posix_values() -> None:
    assert compat.IS_WINDOWS is (sys.platform == "win32")
    if sys.platform != "win32":
        assert compat.windows_detach_flags() == 0
        assert compat.windows_hide_flags() == 0
        assert compat.windows_detach_popen_kwargs() == {"start_new_session": True}


def test_windows_values(windows_compat) -> None:  # type: ignore[no-untyped-def]
    assert windows_compat.IS_WINDOWS is True
    # CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS | CREATE_NO_WINDOW | CREATE_BREAKAWAY_FROM_JOB
    assert windows_compat.windows_detach_flags() == 0x00000200 | 0x00000008 | 0x08000000 | 0x01000000
    assert windows_compat.windows_detach_flags() == 0x09000208
    assert windows_compat.windows_hide_flags() == 0x08000000
    assert windows_compat.windows_detach_popen_kwargs() == {"creationflags": 0x09000208}


def test_all_exports_the_five_names() -> None:
    assert sorted(compat.__all__) == sorted([
        "IS_WINDOWS", "resolve_node_command", "windows_detach_flags", "windows_hide_flags",
        "windows_detach_popen_kwargs"])


def test_resolve_node_command_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/bin/{name}.cmd")
    assert compat.resolve_node_command("npm", ["install", "-g"]) == ["/opt/bin/npm.cmd", "install", "-g"]


def test_resolve_node_command_missing_keeps_bare_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert compat.resolve_node_command("npx", ("x",)) == ["npx", "x"]


def test_resolve_node_command_real_path_lookup() -> None:
    resolved = compat.resolve_node_command("python3", ["-V"])
    assert resolved[1:] == ["-V"]
    assert resolved[0] == (shutil.which("python3") or "python3")
