"""The ``daemonkit`` CLI under a real ``systemd --user``, as the non-root test user types it.

Two harness runs share one $HOME (see cli_driver.py): the first session installs, re-installs,
kills, breaks and stops the daemon, and tries the bad inputs (a failing program, a foreign unit, an
unwritable unit dir, an install killed half-way); the second is the next login, where the enabled
unit starts by itself and ``uninstall`` must leave $HOME exactly as it was before the first command.
Skips, with the reason, where the lane cannot run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from lane import harness, workdir

# A real lane (its venv under /var/cache, a real systemd): no daemonkit sandbox or guard.
pytestmark = pytest.mark.daemonkit_real("real systemd user manager lane")

WEB = "daemonkit-web.service"
# A real lane: it installs into its venv and runs a real systemd, so no daemonkit sandbox or guard.
pytestmark = pytest.mark.daemonkit_real("real systemd user manager lane (CLI)")
ODD_ARGS = ["a b", 'd"q', "it's", "100%", "%h", "$HOME", "${X}", "back\\slash", "line1\nline2", "tab\there"]


def _cli_config(work: Path) -> dict[str, Any]:
    # Daemon homes outside $HOME (so $HOME can be compared byte for byte), on a path that needs quoting
    # in ExecStart=.
    dk_root = work / "dk 100% $USER 'q'"
    dk_root.mkdir()
    return {"dk_root": str(dk_root)}


@pytest.fixture(scope="module")
def run() -> Iterator[dict[str, Any]]:
    with workdir("systemd CLI lane", "dk-sdcli-", "cli_driver.py", _cli_config) as work:
        first = harness("cli_driver.py", "first", work, "cli-first.json")
        second = harness("cli_driver.py", "second", work, "cli-second.json")
        yield {"first": first, "second": second, "work": str(work)}


def _ok(result: dict[str, Any]) -> str:
    assert result["rc"] == 0, f"rc {result['rc']}\n{result['out']}\n{result['err']}"
    return result["out"]


def _program(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in status["programs"] if p["name"] == name)


def test_install_waits_until_ready_and_the_unit_is_active(run: dict[str, Any]) -> None:
    first = run["first"]
    out = _ok(first["install"])
    assert "with systemd (user scope)" in out and f"started {WEB}" in out and f"enabled {WEB}" in out
    props = first["after_install"]
    assert (props["ActiveState"], props["SubState"], props["UnitFileState"]) == ("active", "running", "enabled")
    # install returned only when the gateway answered /health: no polling needed afterwards.
    assert "ready" in out.split("next:")[0] and first["health_1"]["status"] == "ok"
    status = first["status_1"]
    assert status["rc"] == 0 and status["backend"] == "systemd" and status["supervisor_pid"] == int(props["MainPID"])
    assert _program(status, "gateway")["state"] == "ready"


def test_odd_arguments_reach_the_program_intact(run: dict[str, Any]) -> None:
    assert run["first"]["argv_seen"] == ODD_ARGS


def test_reinstall_same_spec_is_a_no_op(run: dict[str, Any]) -> None:
    first = run["first"]
    out = _ok(first["reinstall_same"])
    assert f"{WEB} is already running and up to date" in out
    assert "wrote" not in out and "reloaded" not in out and "restarted" not in out
    assert first["after_reinstall_same"]["MainPID"] == first["after_install"]["MainPID"]


def test_reinstall_changed_spec_applies_it(run: dict[str, Any]) -> None:
    first = run["first"]
    out = _ok(first["reinstall_changed"])
    assert "the spec changed: stopped web to apply it" in out and f"started {WEB}" in out
    assert first["after_reinstall_changed"]["MainPID"] != first["after_install"]["MainPID"]
    assert first["health_2"]["status"] == "ok" and first["health_old_port"] is None


def test_reinstall_repairs_a_hand_edited_unit(run: dict[str, Any]) -> None:
    first = run["first"]
    out = _ok(first["reinstall_drift"])
    assert "RestartSec= is '9', daemonkit sets '1'" in out
    assert "reloaded systemd's unit files" in out and f"restarted {WEB} to apply the new unit" in out
    assert first["unit_restored"] and first["after_drift"]["NeedDaemonReload"] == "no"
    assert first["after_drift"]["ActiveState"] == "active"


def test_kill_9_of_the_supervisor_is_restarted_and_programs_are_not_doubled(run: dict[str, Any]) -> None:
    first = run["first"]
    before, after = first["before_kill"], first["after_kill"]
    assert int(after["NRestarts"]) == int(before["props"]["NRestarts"]) + 1
    status = first["status_after_kill"]
    assert status["supervisor_pid"] == int(after["MainPID"]) != before["supervisor"]
    assert _program(status, "gateway")["pid"] != before["gateway"]
    assert first["old_gateway_alive"] is False and first["gateways_running"] == 1
    assert first["health_after_kill"]["pid"] == _program(status, "gateway")["pid"]


def test_stop_and_start_go_through_systemd(run: dict[str, Any]) -> None:
    first = run["first"]
    out = _ok(first["stop"])
    assert "stopped web" in out and "starts again at the next login" in out
    assert first["after_stop"]["ActiveState"] == "inactive" and first["after_stop"]["UnitFileState"] == "enabled"
    assert first["status_after_stop"]["rc"] == 3 and first["left_after_stop"] == []
    assert "started web" in _ok(first["start"]) and first["after_start"]["ActiveState"] == "active"


def test_exit_78_stops_without_restarting(run: dict[str, Any]) -> None:
    first = run["first"]
    after, later = first["after_78"], first["after_78_later"]
    assert (after["Result"], after["ExecMainStatus"]) == ("exit-code", "78")
    assert (later["ActiveState"], later["NRestarts"]) == ("failed", after["NRestarts"])
    assert first["left_after_78"] == []


def test_failed_start_under_systemd_shows_this_starts_journal(run: dict[str, Any]) -> None:
    first = run["first"]
    blocked = first["start_blocked"]
    assert blocked["rc"] == 1 and "Traceback" not in blocked["err"]
    # The supervisor's own reason leads, not systemd's "the control process exited with error code".
    assert blocked["err"].startswith(f"error: {WEB} did not start: cannot create the control socket")
    assert f"--- journalctl --user -u {WEB}:" in blocked["err"]
    assert "cannot create the control socket" in blocked["err"] and "status=78" in blocked["err"]
    assert "status=9/KILL" not in blocked["err"]  # earlier runs' journal lines are not shown
    assert first["after_start_blocked"]["ActiveState"] in ("failed", "inactive")
    assert "started web" in _ok(first["start_again"]) and first["after_start_again"]["ActiveState"] == "active"


def test_journal_shows_the_lifecycle(run: dict[str, Any]) -> None:
    journal = "\n".join(run["first"]["journal"])
    assert "Started daemonkit-web.service" in journal or "Started daemonkit supervisor for web" in journal
    assert "Main process exited, code=killed, status=9/KILL" in journal
    assert "status=78" in journal and "invalid spec" in journal
    assert "Stopped daemonkit-web.service" in journal or "Stopped daemonkit supervisor for web" in journal


def test_failing_program_install_leaves_it_installed_but_stopped(run: dict[str, Any]) -> None:
    first = run["first"]
    bad = first["bad_install"]
    assert bad["rc"] == 1
    assert "bad failed to start: program bad" in bad["err"] and "config-error" in bad["err"]
    assert "bad config, attempt 1" in bad["err"]
    assert "bad is installed but stopped" in bad["err"]
    assert first["bad_after_install"]["ActiveState"] in ("inactive", "failed")  # nothing half-started
    start = first["bad_start"]
    assert start["rc"] == 1 and "attempt 2" in start["err"] and "attempt 1" not in start["err"]
    assert first["bad_after_start"]["ActiveState"] in ("inactive", "failed") and first["bad_left"] == []
    assert "removed" in _ok(first["bad_uninstall"])


def test_foreign_unit_is_refused_unless_forced(run: dict[str, Any]) -> None:
    first = run["first"]
    refused = first["foreign_install"]
    assert refused["rc"] == 1 and "refusing to overwrite" in refused["err"] and "--force" in refused["err"]
    assert first["foreign_untouched"] and first["foreign_record"] is False
    assert first["foreign_uninstall_refused"]["rc"] == 4  # nothing of ours to uninstall
    out = _ok(first["foreign_forced"])
    assert "replaced the foreign unit" in out and first["foreign_after_force"]["ActiveState"] == "active"
    _ok(first["foreign_uninstall"])
    assert first["foreign_file_after"] is False


def test_unwritable_unit_dir_is_a_clear_error(run: dict[str, Any]) -> None:
    first = run["first"]
    locked = first["locked_install"]
    assert locked["rc"] == 1 and "Traceback" not in locked["err"]
    assert "cannot write" in locked["err"] and "daemonkit-locked.service: Permission denied" in locked["err"]
    assert first["locked_record"] is False and first["locked_status"]["running"] is False


def test_install_killed_half_way_is_completed_or_undone(run: dict[str, Any]) -> None:
    first = run["first"]
    assert first["killed_1"]["UnitFileState"] == "enabled"
    out = _ok(first["resumed_install"])
    assert first["after_resumed"]["ActiveState"] == "active"
    assert _program(first["resumed_status"], "slowpoke")["state"] == "ready", out
    _ok(first["slowpoke_uninstall_1"])
    assert first["killed_2"]["UnitFileState"] == "enabled"
    assert "removed" in _ok(first["undo_uninstall"])
    assert first["after_undo"]["LoadState"] == "not-found"
    assert first["slowpoke_left"] == [] and first["slowpoke_unit_file"] is False


def test_enabled_unit_starts_at_the_next_login(run: dict[str, Any]) -> None:
    second = run["second"]
    assert second["at_login"]["ActiveState"] == "active"
    status = second["status_at_login"]
    assert status["backend"] == "systemd" and _program(status, "gateway")["state"] == "ready"


def test_uninstall_leaves_home_exactly_as_before(run: dict[str, Any]) -> None:
    first, second = run["first"], run["second"]
    out = _ok(second["uninstall"])
    assert f"stopped {WEB}" in out and f"disabled {WEB}" in out and "uninstalled web" in out
    assert second["after_uninstall"]["LoadState"] == "not-found"
    assert second["gateway_after_uninstall"] is False and second["left_after_uninstall"] == []
    assert second["uninstall_again"]["rc"] == 4
    assert second["home_after"] == first["home_before"]
    _ok(second["remove"])


def test_missing_user_bus_is_a_clear_error_not_a_fallback(run: dict[str, Any]) -> None:
    first = run["first"]
    result = first["nobus_install"]
    assert result["rc"] == 1 and "Traceback" not in result["err"]
    assert "cannot reach your systemd user manager" in result["err"] and "sudo su -" in result["err"]
    assert "--backend detached" in result["err"]
    assert first["nobus_record"] is False and first["nobus_unit"]["LoadState"] == "not-found"


def test_demo_runs_under_the_user_manager(run: dict[str, Any]) -> None:
    second = run["second"]
    out = _ok(second["demo"])
    assert "(backend: systemd)" in out and "demo is up" in out and "daemonkit uninstall demo" in out
    assert "next login" in out and "enable-linger" in out
    assert second["demo_unit"]["ActiveState"] == "active" and second["demo_unit"]["UnitFileState"] == "enabled"
    assert second["demo_status"]["backend"] == "systemd" and second["demo_status"]["healthy"]
    assert "stopped demo" in _ok(second["demo_stop"]) and second["demo_after_stop"]["ActiveState"] == "inactive"
    _ok(second["demo_uninstall"])
    _ok(second["demo_remove"])
    assert second["home_after_demo"] == run["first"]["home_before"]


def test_python_in_a_directory_systemd_cannot_name_runs_through_env(run: dict[str, Any]) -> None:
    first = run["first"]
    _ok(first["oddpy_install"])
    assert first["oddpy_unit"]["ActiveState"] == "active"
    home = next(line for line in first["oddpy_install"]["out"].splitlines() if "daemonkit-oddpy.service" in line)
    assert first["oddpy_cmdline"][:5] == [first["oddpy_python"], "-m", "daemonkit", "supervise", "--home"], home
    _ok(first["oddpy_uninstall"])


def test_system_scope_without_root_falls_back_to_user_only_when_asked(run: dict[str, Any]) -> None:
    first = run["first"]
    refused = first["sys_refused"]
    assert refused["rc"] == 1 and "cannot install sys for the whole machine" in refused["err"]
    assert "--fallback user" in refused["err"]
    out = _ok(first["sys_fallback"])
    assert "with systemd (user scope)" in out and "installed for your user instead, as asked (--fallback user)" in out
    assert first["sys_unit"]["ActiveState"] == "active"
    _ok(first["sys_uninstall"])


def test_install_hands_a_detached_daemon_over_to_systemd(run: dict[str, Any]) -> None:
    first = run["first"]
    _ok(first["handover_start"])
    assert first["handover_detached"]["backend"] == "detached"
    out = _ok(first["handover_install"])
    assert "stopped the supervisor that 'daemonkit start' had started, so systemd runs it" in out
    assert first["handover_unit"]["ActiveState"] == "active"
    assert first["handover_status"]["backend"] == "systemd"
    assert first["handover_status"]["supervisor_pid"] == int(first["handover_unit"]["MainPID"])
    assert first["handover_old_alive"] is False and first["handover_programs"] == 1
