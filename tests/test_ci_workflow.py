"""The GitHub Actions workflow stays valid: it parses, runs the suite on the three OSes and Python
3.10-3.13, and its test step is the README's test command."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml is not installed: run bash tests/envs/setup.sh")

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "ci.yml"


def test_workflow_parses_and_covers_the_matrix() -> None:
    data = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    triggers = data.get("on", data.get(True))
    assert set(triggers) >= {"push", "pull_request"}
    job = data["jobs"]["test"]
    matrix = job["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    assert matrix["python"] == ["3.10", "3.11", "3.12", "3.13"]  # strings: 3.10 as a number is 3.1
    assert job["strategy"]["fail-fast"] is False
    runs = [step.get("run", "") for step in job["steps"]]
    assert any('pip install -e ".[test,click]"' in run for run in runs)
    assert runs[-1] == "python -m pytest -q -p no:cacheprovider"
    uses = [step["uses"] for step in job["steps"] if "uses" in step]
    assert uses[0].startswith("actions/checkout@") and uses[1].startswith("actions/setup-python@")
    assert job["steps"][1]["with"]["python-version"] == "${{ matrix.python }}"


def test_the_extras_the_workflow_installs_exist() -> None:
    import tomllib

    extras = tomllib.loads((WORKFLOW.parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"test", "click"} <= set(extras)
