"""The systemd lane: a real ``systemd --user`` and journald (tests/envs/with-systemd-user.sh), a
non-root user, a venv from Debian's python3, and daemonkit's own supervisor under the unit.

Two harness runs share one $HOME: the first is a session that installs, kills and breaks the
supervisor; the second is the next login, where the enabled unit must start by itself, and then
uninstall must leave $HOME exactly as it was. Skips, with the reason, where the lane cannot run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

import lane as lane_lib
from lane import VENV

UNIT = "daemonkit-demo.service"
# A real lane: it installs into its venv and runs a real systemd, so no daemonkit sandbox or guard.
pytestmark = pytest.mark.daemonkit_real("real systemd user manager lane")


def harness(phase: str, work: Path) -> dict[str, Any]:
    return lane_lib.harness("sd_driver.py", phase, work, f"{phase}.json")


def _odd_home(work: Path) -> dict[str, Any]:
    # Quoting end to end: the unit's ExecStart carries this home path to the supervisor.
    return {"dk_home": str(work / "odd dir 100% ${HOME} $USER 'q' \"d\" back\\slash" / "demo")}


@pytest.fixture(scope="module")
def lane() -> Iterator[dict[str, Any]]:
    with lane_lib.workdir("systemd lane", "dk-sd-", "sd_driver.py", _odd_home) as work:
        first = harness("first", work)
        second = harness("second", work)
        dk_home = json.loads((work / "config.json").read_text())["dk_home"]
        yield {"first": first, "second": second, "dk_home": dk_home, "python": str(VENV / "bin" / "python")}


def test_install_starts_the_unit(lane: dict[str, Any]) -> None:
    first = lane["first"]
    props = first["after_install"]
    assert (props["ActiveState"], props["SubState"], props["UnitFileState"]) == ("active", "running", "enabled")
    assert props["FragmentPath"].endswith("/.config/systemd/user/" + UNIT)
    assert any(line.startswith("wrote ") for line in first["install"])
    assert f"started {UNIT}" in first["install"]


def test_execstart_quoting_reaches_the_supervisor_intact(lane: dict[str, Any]) -> None:
    assert lane["first"]["cmdline"] == [lane["python"], "-m", "daemonkit", "supervise", "--home", lane["dk_home"]]


def test_reinstall_unchanged_changes_nothing(lane: dict[str, Any]) -> None:
    assert lane["first"]["reinstall"][0] == f"{UNIT} is already running and up to date"


def test_kill_9_of_the_supervisor_is_restarted_and_old_programs_end(lane: dict[str, Any]) -> None:
    first = lane["first"]
    assert first["after_kill"]["NRestarts"] == "1"
    assert first["after_kill"]["MainPID"] != first["after_install"]["MainPID"]
    assert first["old_prog_gone"] and first["prog_pid_2"] != first["prog_pid_1"]


def test_exit_78_stops_without_restarting(lane: dict[str, Any]) -> None:
    first = lane["first"]
    after, later = first["after_78"], first["after_78_later"]
    assert (after["Result"], after["ExecMainStatus"]) == ("exit-code", "78")
    assert after["NRestarts"] == "2"  # the kill -9 restart happened; the exit 78 got none
    assert (later["ActiveState"], later["NRestarts"]) == ("failed", "2")
    assert first["prog_after_78"] is None


def test_explicit_start_after_78_runs_again(lane: dict[str, Any]) -> None:
    first = lane["first"]
    assert first["after_start"]["ActiveState"] == "active" and first["prog_pid_3"]


def test_journal_shows_the_lifecycle(lane: dict[str, Any]) -> None:
    journal = "\n".join(lane["first"]["journal"])
    assert "Started daemonkit-demo.service" in journal or "Started daemonkit supervisor for demo" in journal
    assert "Main process exited, code=killed, status=9/KILL" in journal
    assert "invalid spec" in journal  # the supervisor's own stderr, from the exit-78 start
    assert "status=78" in journal


def test_status_reports_no_drift_and_the_linger_state(lane: dict[str, Any]) -> None:
    first = lane["first"]
    status = first["status"]
    assert status["installed"] and status["active"] and status["enabled"] and status["drift"] == []
    # No logind in the harness: linger cannot be read or enabled, and install says what to do.
    linger = [line for line in first["install"] if "linger" in line]
    assert linger and "sudo loginctl enable-linger sdtest" in linger[0]


def test_enabled_unit_starts_at_the_next_login(lane: dict[str, Any]) -> None:
    second = lane["second"]
    assert second["at_login"]["ActiveState"] == "active" and second["prog_at_login"]


def test_uninstall_leaves_home_as_before(lane: dict[str, Any]) -> None:
    first, second = lane["first"], lane["second"]
    assert second["after_uninstall"]["LoadState"] == "not-found"
    assert second["prog_after_uninstall"] is False
    assert any(line == f"stopped {UNIT}" for line in second["uninstall"])
    assert second["uninstall_again"] == [f"{UNIT} was not installed; nothing to remove"]
    assert second["home_after"] == first["home_before"]
