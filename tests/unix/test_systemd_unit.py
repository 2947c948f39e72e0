"""The unit text as data: policy mapping, timeouts, quoting, names, drift (pure functions, no systemd)."""

from __future__ import annotations

import pytest

from daemonkit.backends.systemd_unit import (
    RunAs, exec_line, parse_unit, quote_exec_arg, render_unit, unit_drift, unit_name,
)
from daemonkit.errors import DaemonkitError
from daemonkit.spec import Spec

from .fakes import make_spec

ARGV = ["/usr/bin/python3", "-m", "daemonkit", "supervise", "--home", "/home/u/.local/state/daemonkit/demo"]


def keys(text: str) -> dict[tuple[str, str], list[str]]:
    return parse_unit(text)


def test_user_unit_maps_the_contract() -> None:
    text = render_unit(make_spec(grace=12.5, ready_timeout=45), ARGV, scope="user")
    unit = keys(text)
    assert text.startswith("# Managed by daemonkit")
    assert unit[("Service", "Type")] == ["notify"]
    assert unit[("Service", "NotifyAccess")] == ["main"]
    assert unit[("Service", "Restart")] == ["on-failure"]
    assert unit[("Service", "RestartPreventExitStatus")] == ["78"]
    assert unit[("Unit", "StartLimitIntervalSec")] == ["0"]
    assert unit[("Service", "KillMode")] == ["mixed"]
    assert unit[("Service", "TimeoutStopSec")] == ["28"]  # ceil(12.5) + 15: never SIGKILL mid-drain
    assert unit[("Service", "TimeoutStartSec")] == ["75"]  # readiness 45 + 30
    assert unit[("Install", "WantedBy")] == ["default.target"]
    assert unit[("Service", "Environment")] == ["PYTHONUNBUFFERED=1 DAEMONKIT_BACKEND=systemd"]
    assert ("Service", "User") not in unit


def test_most_permissive_program_policy_wins() -> None:
    assert keys(render_unit(make_spec(restart="always"), ARGV, scope="user"))[("Service", "Restart")] == ["always"]
    # "never" is about programs; a crashed supervisor still comes back to look after the others.
    assert keys(render_unit(make_spec(restart="never"), ARGV, scope="user"))[("Service", "Restart")] == ["on-failure"]


def test_system_unit_runs_as_user_after_their_session() -> None:
    unit = keys(render_unit(make_spec(scope="system"), ARGV, scope="system",
                            run_as=RunAs("alice", 1001, "staff"), user_session=True))
    assert unit[("Service", "User")] == ["alice"] and unit[("Service", "Group")] == ["staff"]
    assert unit[("Unit", "After")] == ["network.target", "user@1001.service"]
    assert unit[("Unit", "Wants")] == ["user@1001.service"]
    assert unit[("Install", "WantedBy")] == ["multi-user.target"]
    root = keys(render_unit(make_spec(scope="system"), ARGV, scope="system"))
    assert ("Service", "User") not in root and root[("Unit", "After")] == ["network.target"]


@pytest.mark.parametrize("arg, quoted", [
    ("plain", '"plain"'),
    ("with space", '"with space"'),
    ("100%", '"100%%"'),
    ("$HOME", '"$$HOME"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("it's", '"it\'s"'),
    ("\\$x", '"\\\\$$x"'),
])
def test_quote_exec_arg(arg: str, quoted: str) -> None:
    assert quote_exec_arg(arg) == quoted


def test_executable_keeps_dollar() -> None:
    # systemd does not expand variables in the executable, so "$$" there would be taken literally.
    assert quote_exec_arg("/opt/a$b/python", executable=True) == '"/opt/a$b/python"'
    assert exec_line(["/opt/a$b 100%/python", "$x"]) == '"/opt/a$b 100%%/python" "$$x"'


@pytest.mark.parametrize("exe", ["/opt/it's/python", '/opt/"q"/python', "/opt/back\\slash/python"])
def test_executable_systemd_refuses_runs_through_env(exe: str) -> None:
    # systemd rejects quotes and backslashes in the executable word however it is quoted
    # ("Executable name contains special characters"); as an argument of env(1) they are fine.
    line = exec_line([exe, "-m", "daemonkit"])
    assert line == f'"/usr/bin/env" {quote_exec_arg(exe)} "-m" "daemonkit"'


@pytest.mark.parametrize("bad", ["line\nbreak", "cr\rhere", "tab\there", "nul\x00", "bell\x07"])
def test_control_characters_are_refused(bad: str) -> None:
    with pytest.raises(DaemonkitError, match="control character"):
        exec_line(["/usr/bin/python3", "--home", bad])


def test_relative_executable_is_refused() -> None:
    with pytest.raises(DaemonkitError, match="absolute path"):
        exec_line(["python3", "-m", "daemonkit"])


def test_undecodable_path_is_refused() -> None:
    with pytest.raises(DaemonkitError, match="UTF-8"):
        exec_line(["/usr/bin/python3", "/home/\udcff"])


def test_description_cannot_break_the_file() -> None:
    spec = make_spec(description="50% off\nInjected=1 \\")
    unit = keys(render_unit(spec, ARGV, scope="user"))
    assert unit[("Unit", "Description")] == ["daemonkit supervisor for demo: 50%% off Injected=1"]
    assert ("Unit", "Injected") not in unit


def test_unit_name() -> None:
    assert unit_name(make_spec("my-bot")) == "daemonkit-my-bot.service"
    assert unit_name(make_spec("gw", app="myapp")) == "myapp-gw.service"


@pytest.mark.parametrize("field, value", [
    ("name", "a b/../c"), ("name", "x@y"), ("name", "ünï"), ("name", "semi;colon"), ("name", "n" * 250),
    ("app", "my app"), ("app", "-leading"), ("app", "tmpl@"), ("app", "$HOME"),
])
def test_unit_name_with_odd_characters_is_refused(field: str, value: str) -> None:
    # "@" would make a template instance, "/" a path, spaces and non-ASCII are not unit-name characters.
    spec = make_spec()
    object.__setattr__(spec, field, value)  # bypass Spec validation: the backend checks again
    with pytest.raises(DaemonkitError, match="cannot make a systemd unit name") as info:
        unit_name(spec)
    assert "letters, digits" in info.value.message


def test_drift_names_each_difference() -> None:
    expected = render_unit(make_spec(), ARGV, scope="user")
    edited = expected.replace("KillMode=mixed", "KillMode=process").replace("Restart=on-failure\n", "") \
        + "[Service]\nMemoryMax=1G\n"
    drift = unit_drift(expected, edited)
    assert any("KillMode= is 'process', daemonkit sets 'mixed'" in d for d in drift)
    assert any("[Service] Restart= is missing" in d for d in drift)
    assert any("MemoryMax='1G' was added by hand" in d for d in drift)
    assert unit_drift(expected, expected) == []
    foreign = unit_drift(expected, expected.replace("# Managed by daemonkit", "# mine"))
    assert foreign and "no '# Managed by daemonkit' line" in foreign[0]


def test_parse_unit_joins_continuations() -> None:
    parsed = parse_unit("[Service]\nExecStart=/bin/a \\\n  b\n; comment\n")
    assert parsed[("Service", "ExecStart")] == ["/bin/a b"]


def test_render_is_deterministic() -> None:
    spec: Spec = make_spec()
    assert render_unit(spec, ARGV, scope="user") == render_unit(spec, ARGV, scope="user")
