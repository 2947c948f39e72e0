"""The package as a newcomer gets it: metadata, the console script, and the README's two commands."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "daemonkit" and project["requires-python"] == ">=3.10"
    assert project["license"] == {"text": "MIT"} and (ROOT / "LICENSE").read_text().startswith("MIT")
    deps = " ".join(project["dependencies"])
    assert "psutil" in deps and "platformdirs" in deps
    assert project["scripts"] == {"daemonkit": "daemonkit.cli:main"}
    extras = project["optional-dependencies"]
    assert any(d.startswith("pytest") for d in extras["test"])
    assert extras["windows-service"] == ["pywin32>=306; sys_platform == 'win32'"]
    assert (ROOT / "src" / "daemonkit" / "py.typed").exists()


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no sh block under '## Two commands'"
    commands = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    assert commands == ["python3 -m pip install . && python3 -m daemonkit demo",
                        "bash tests/envs/setup.sh && python3 -m pytest -q"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash tests/envs/setup.sh && python3 -m pytest -q" in ci
    assert '"$rc" -eq 5' in ci  # pytest's "no tests collected" is not a failure


def test_the_env_scripts_the_tests_use_are_in_the_project() -> None:
    for script in ("setup.sh", "setup-systemd.sh", "with-systemd-user.sh"):
        assert (ROOT / "tests" / "envs" / script).exists(), script


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_spec_example_is_a_valid_spec() -> None:
    from daemonkit.spec import loads_spec

    (toml_block,) = _blocks("toml")
    spec = loads_spec(toml_block, source="README.md")
    assert spec.name == "gateway" and [p.name for p in spec.programs] == ["web", "worker"]
    web = spec.program("web")
    assert web.ready is not None and web.ready.kind == "http" and web.env == {"MYAPP_MODE": "prod"}


def test_readme_tour_commands_parse() -> None:
    """Every `daemonkit ...` line of the tour is accepted by the real argument parser (flags exist)."""
    import shlex

    from daemonkit.cli import build_parser

    lines = [line.split("#")[0].strip() for block in _blocks("sh") for line in block.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("daemonkit ")]
    assert len(commands) >= 10
    parser = build_parser()
    for words in commands:
        head = words[: words.index("--")] if "--" in words else words
        args = parser.parse_args(head)
        assert args.command, words
