"""`daemonkit logs`: -n across rotated files, -f across a real rotation, --since, --events (rotated ledger
too), --json, and a reader that goes away (`| head`)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from test_doctor import with_log_cap

from daemonkit.logview import parse_since
from daemonkit.errors import DaemonkitError

PY = sys.executable
SLEEPER = [PY, "-c", "import time; time.sleep(600)"]


def _home(dk_env: dict[str, str], name: str) -> Path:
    return Path(dk_env["DAEMONKIT_HOME"]) / name


def test_n_reaches_into_rotated_generations(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "rot", "--", *SLEEPER).returncode == 0
    logs = _home(dk_env, "rot") / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "rot.out.log.2").write_text("".join(f"old {i}\n" for i in range(5)))
    (logs / "rot.out.log.1").write_text("".join(f"mid {i}\n" for i in range(30)))
    (logs / "rot.out.log").write_text("new 0\nnew 1\n")
    out = cli("logs", "rot", "-n", "10", "--stream", "out").stdout.splitlines()
    assert out == [f"rot| mid {i}" for i in range(22, 30)] + ["rot| new 0", "rot| new 1"]
    everything = cli("logs", "rot", "-n", "1000", "--stream", "out").stdout.splitlines()
    assert len(everything) == 37 and everything[0] == "rot| old 0"
    as_json = [json.loads(line) for line in cli("logs", "rot", "-n", "2", "--json", "--stream", "out").stdout.splitlines()]
    assert as_json == [{"program": "rot", "stream": "out", "line": "new 0"}, {"program": "rot", "stream": "out", "line": "new 1"}]
    # --since per file: a generation last written two hours ago is skipped.
    old = time.time() - 7200
    import os

    os.utime(logs / "rot.out.log.1", (old, old))
    os.utime(logs / "rot.out.log.2", (old, old))
    assert cli("logs", "rot", "--since", "1h", "--stream", "out").stdout.splitlines() == ["rot| new 0", "rot| new 1"]
    bad = cli("logs", "rot", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "--since" in bad.stderr and "10m" in bad.stderr
    unknown = cli("logs", "rot", "--program", "nope")
    assert unknown.returncode != 0 and "nope" in unknown.stderr


def test_events_across_rotated_ledger_since_and_json(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "ev", "--", *SLEEPER).returncode == 0
    home = _home(dk_env, "ev")
    now = time.time()

    def event(ts: float, kind: str, program: str | None = "ev", **detail: Any) -> str:
        return json.dumps({"ts": ts, "event": kind, "program": program, "pid": 7, "detail": detail}) + "\n"

    (home / "events.jsonl.1").write_text(event(now - 7200, "spawn") + event(now - 7100, "crashloop", restarts=10))
    (home / "events.jsonl").write_text(event(now - 60, "spawn") + "{torn line\n" + event(now - 30, "config-error", code=78)
                                       + event(now - 10, "supervisor-stop", None))
    lines = cli("logs", "ev", "--events", "-n", "100").stdout.splitlines()
    assert [line.split(": ", 1)[1].split()[0] for line in lines] == ["spawn", "crashloop", "spawn", "config-error", "supervisor-stop"]
    assert "exited 78" in lines[3] and "ev pid 7" in lines[3]  # the meaning is spelled out
    recent = cli("logs", "ev", "--events", "--since", "1h").stdout.splitlines()
    assert len(recent) == 3 and "crashloop" not in "".join(recent)
    only = [json.loads(x) for x in cli("logs", "ev", "--events", "--json", "--program", "ev", "-n", "2").stdout.splitlines()]
    assert [e["event"] for e in only] == ["spawn", "config-error"] and only[1]["detail"] == {"code": 78}


def test_follow_survives_rotation_without_losing_lines(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    code = "import time\nfor i in range(100000):\n    print(f'line {i:06d}', flush=True)\n    time.sleep(0.004)\n"
    assert cli("add", "chatty", "--", PY, "-c", code).returncode == 0
    home = _home(dk_env, "chatty")
    spec = home / "spec.toml"
    spec.write_text(with_log_cap(spec.read_text(), 4096))
    assert cli("start", "chatty").returncode == 0
    follower = subprocess.Popen([PY, "-m", "daemonkit", "logs", "chatty", "-f", "-n", "0", "--json", "--stream", "out"],
                                stdout=subprocess.PIPE, text=True, env=dk_env)
    got: list[int] = []

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            got.append(int(json.loads(line)["line"].split()[1]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (len(got) > 1500 and (home / "logs" / "chatty.out.log.2").exists()):
        time.sleep(0.1)
    follower.terminate()
    follower.wait(10)
    reader.join(5)
    assert (home / "logs" / "chatty.out.log.2").exists(), "the log did not rotate twice"
    assert len(got) > 300, got[:5]
    assert got == list(range(got[0], got[0] + len(got))), "lines were lost or repeated around a rotation"


def test_reader_going_away_is_not_an_error(cli, dk_env) -> None:  # type: ignore[no-untyped-def]
    assert cli("add", "pipe", "--", *SLEEPER).returncode == 0
    logs = _home(dk_env, "pipe") / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "pipe.out.log").write_text("".join(f"line {i} " + "x" * 60 + "\n" for i in range(20000)))
    for argv in (["logs", "pipe", "-n", "20000"], ["logs", "pipe", "-n", "20000", "-f"]):
        cmd = f"{PY} -m daemonkit {' '.join(argv)} | head -1"
        result = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=dk_env,
                                timeout=60)
        assert result.returncode == 0, (argv, result.stderr)
        assert result.stdout.startswith("pipe| line ") and "Traceback" not in result.stderr


def test_parse_since_forms() -> None:
    now = 1_000_000_000.0
    assert parse_since("90s", now) == now - 90 and parse_since("10m", now) == now - 600
    assert parse_since("2h", now) == now - 7200 and parse_since("1d", now) == now - 86400
    assert parse_since("1767225600", now) == 1767225600.0
    assert parse_since("30", now) == now - 30
    from datetime import datetime

    assert parse_since("2026-01-31T14:00", now) == datetime(2026, 1, 31, 14, 0).timestamp()
    with pytest.raises(DaemonkitError) as info:
        parse_since("soon", now)
    assert info.value.exit_code == 2
