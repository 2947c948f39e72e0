"""`status --deep` against a real ``systemd --user`` (tests/envs/with-systemd-user.sh): the service-manager
probes [7] [8] [9] PASS for an installed unit, and FAIL with the right fix when the unit file is edited by
hand (drift) or the unit is stopped behind daemonkit's back. Skips, with the reason, where the lane
cannot run (see lane.why_not)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from lane import harness, workdir

# A real lane (its venv under /var/cache, a real systemd): no daemonkit sandbox or guard.
pytestmark = pytest.mark.daemonkit_real("real systemd user manager lane")

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "status-schema.json").read_text())
# A real lane: it installs into its venv and runs a real systemd, so no daemonkit sandbox or guard.
pytestmark = pytest.mark.daemonkit_real("real systemd user manager lane")


@pytest.fixture(scope="module")
def obs() -> Iterator[dict[str, Any]]:
    with workdir("systemd lane", "dk-doc-", "doctor_driver.py") as work:
        yield harness("doctor_driver.py", "doctor", work, "doctor.json")


def _probe(report: dict[str, Any], number: int) -> dict[str, Any]:
    return next(p for p in report["probes"] if p["number"] == number)


def _validate(report: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate({k: v for k, v in report.items() if not k.startswith("_")}, SCHEMA)


def test_installed_unit_passes_the_manager_probes(obs: dict[str, Any]) -> None:
    report = obs["installed"]
    _validate(report)
    assert obs["install"]["backend"] == "systemd"
    for number in (7, 8, 9):
        assert _probe(report, number)["result"] == "PASS", _probe(report, number)
    assert "active (running)" in _probe(report, 9)["summary"]
    assert "registered, enabled" in _probe(report, 7)["summary"]
    assert all(p["result"] != "FAIL" for p in report["probes"]), report["_table"]
    assert report["_rc"] == 0 and report["verdict"]["level"] == "healthy"
    assert "[ 9] PASS" in report["_table"]


def test_hand_edited_unit_is_drift_with_the_fix(obs: dict[str, Any]) -> None:
    report = obs["drifted"]
    _validate(report)
    check = _probe(report, 8)
    assert check["result"] == "FAIL" and "RestartPreventExitStatus" in check["summary"], check
    assert "daemonkit install doc" in check["hint"]
    assert report["_rc"] == 1 and report["verdict"]["line"].startswith("degraded: [8]")
    assert "[ 8] FAIL" in report["_table"]
    # install repairs it, and the probe agrees.
    assert any(line.startswith("repaired ") for line in obs["repair"]["lines"])
    assert _probe(obs["repaired"], 8)["result"] == "PASS"


def test_stopped_unit_fails_the_manager_probe_with_the_fix(obs: dict[str, Any]) -> None:
    assert obs["stop_rc"] == 0
    report = obs["stopped"]
    _validate(report)
    check = _probe(report, 9)
    assert check["result"] == "FAIL" and "inactive" in check["summary"], check
    assert "daemonkit start doc" in check["hint"] and "journalctl --user -u daemonkit-doc" in check["hint"]
    assert _probe(report, 7)["result"] == "PASS" and _probe(report, 8)["result"] == "PASS"
    assert report["_rc"] == 1 and report["verdict"]["level"] == "down"
    assert "[ 9] FAIL" in report["_table"]
