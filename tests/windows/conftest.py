"""Fixtures for the Windows lane. These tests run INSIDE Wine, under the official Windows CPython,
driven by tests/test_windows_lane.py on the Linux side (one ``wine python.exe -m pytest`` call).

On a non-Windows interpreter the whole directory is skipped: run it through the lane driver.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

if sys.platform != "win32":
    collect_ignore_glob = ["test_*.py"]

HERE = Path(__file__).resolve().parent

# Writes its arguments as JSON to %DK_ARGDUMP% (appending one line per call): the far end of the
# .cmd canary tests, standing in for the node/python a real shim (npm.cmd) forwards %* to.
ARGDUMP = """import json, os, sys
with open(os.environ["DK_ARGDUMP"], "a", encoding="utf-8") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def argdump(tmp_path: Path) -> Callable[[], list[list[str]]]:
    """Sets up %DK_ARGDUMP% and returns a reader of the argv lists recorded so far."""
    out = tmp_path / "argdump.jsonl"
    script = tmp_path / "argdump.py"
    script.write_text(ARGDUMP, encoding="utf-8")
    os.environ["DK_ARGDUMP"] = str(out)
    os.environ["DK_ARGDUMP_PY"] = str(script)
    os.environ["DK_PYEXE"] = sys.executable

    def read() -> list[list[str]]:
        if not out.exists():
            return []
        return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line]

    yield read  # type: ignore[misc]
    for key in ("DK_ARGDUMP", "DK_ARGDUMP_PY", "DK_PYEXE"):
        os.environ.pop(key, None)


@pytest.fixture
def dk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private DAEMONKIT_HOME for the test."""
    root = tmp_path / "dkhome"
    monkeypatch.setenv("DAEMONKIT_HOME", str(root))
    yield root
