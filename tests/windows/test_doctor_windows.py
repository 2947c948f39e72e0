"""`status --deep` under Windows CPython (inside Wine): the probes run on Windows' own primitives
(msvcrt lock, psutil's OpenProcess-based process table, the job-object breakaway check) and the JSON
still validates against the published schema."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemonkit import api
from daemonkit.doctor import diagnose
from daemonkit.doctor.table import render_deep
from daemonkit.spec import Program, Spec

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "status-schema.json"


def _probe(report: dict, number: int) -> dict:
    return next(p for p in report["probes"] if p["number"] == number)


def test_stale_record_of_a_dead_supervisor_on_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAEMONKIT_HOME", str(tmp_path / "dkhome"))
    spec = Spec(name="w", programs=(Program("p", (sys.executable, "-c", "import time; time.sleep(60)")),))
    home = api.save_spec(spec)
    report = diagnose(spec, home)
    assert report.exit_code == 3 and report.verdict.level == "stopped"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (home.path / "supervisor.pid").write_text(json.dumps(
        {"pid": dead.pid, "create_time": time.time() - 5, "exe": sys.executable}))
    data = diagnose(spec, home).to_json()
    assert data["exit_code"] == 1 and data["verdict"]["level"] == "down"
    assert [_probe(data, n)["result"] for n in (1, 2, 3, 4)] == ["PASS", "FAIL", "FAIL", "FAIL"]
    platform = _probe(data, 12)
    assert platform["evidence"]["platform"] == "win32"
    assert platform["evidence"]["breakaway"] in ("allowed", "forbidden by the job object this command runs in")
    try:
        import jsonschema
    except ImportError:
        jsonschema = None  # the lane's prefix may not carry it; the Linux suite validates the same shape
    if jsonschema is not None:
        jsonschema.validate(data, json.loads(SCHEMA.read_text(encoding="utf-8")))
    text = render_deep(diagnose(spec, home))
    text.encode("cp437")  # plain ASCII-safe output for an OEM-code-page console
    assert "[ 2] FAIL" in text
