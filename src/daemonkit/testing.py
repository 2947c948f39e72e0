"""pytest plugin: run tests in a daemonkit sandbox so they never touch the real machine.

Registered through the ``pytest11`` entry point (name ``daemonkit``), so installing daemonkit makes it
available; it changes nothing until asked:

* the ``daemonkit_sandbox`` fixture, or the ``@pytest.mark.daemonkit_sandbox`` marker, sandboxes one test;
* ``daemonkit_sandbox = auto`` in the ini file (or ``--daemonkit-sandbox=auto``) sandboxes every test and
  keeps a guard up for the whole session (collection and broader-scoped fixtures included);
* ``@pytest.mark.daemonkit_real(reason)`` runs a test against the real machine (a real systemd lane, say):
  no sandbox and no guard for that test and for the fixtures set up for it.

What a sandbox relocates, records and refuses is described in ``daemonkit.sandbox`` and docs/testing.md.
A refused operation raises ``SandboxViolation`` where it happens, and the test fails at teardown with
every refusal, also those the code under test caught.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from .sandbox import Sandbox, SandboxViolation, default_allowed, guard, protected_locations

__all__ = ["Sandbox", "SandboxViolation"]

MODES = ("auto", "opt-in", "off")
_STATE = pytest.StashKey["_State"]()


class _State:
    def __init__(self, mode: str, allow: list[Path], real_env: dict[str, str]) -> None:
        self.mode = mode
        self.allow = allow
        self.real_env = real_env  # captured before any sandbox moved HOME
        self.session_policy: guard.Policy | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("daemonkit_sandbox", "daemonkit sandbox: 'auto' sandboxes every test, 'opt-in' (default) only "
                  "tests marked daemonkit_sandbox or using the daemonkit_sandbox fixture, 'off' disables the plugin",
                  default="opt-in")
    group = parser.getgroup("daemonkit")
    group.addoption("--daemonkit-sandbox", choices=MODES, default=None, dest="daemonkit_sandbox",
                    help="override the daemonkit_sandbox ini value")


@pytest.hookimpl(trylast=True)  # after the tmpdir plugin: its base temp dir is allowed
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "daemonkit_sandbox: run this test in a daemonkit sandbox (relocated "
                            "HOME/XDG/APPDATA/Startup, recorded service-manager commands, write guard)")
    config.addinivalue_line("markers", "daemonkit_real(reason): this test acts on the real machine on purpose; "
                            "no daemonkit sandbox or guard while it runs")
    mode = config.getoption("daemonkit_sandbox") or str(config.getini("daemonkit_sandbox")).strip() or "opt-in"
    if mode not in MODES:
        raise pytest.UsageError(f"daemonkit_sandbox = {mode!r} is not one of {', '.join(MODES)}")
    allow = [config.rootpath, *_cache_dirs(config)]
    state = _State(mode, allow, dict(os.environ))
    config.stash[_STATE] = state
    _warn_if_shadowed(config)
    if mode == "auto":
        state.session_policy = guard.Policy(forbidden=protected_locations(state.real_env),
                                            allowed=default_allowed([*allow, *_tmp_roots(config)]),
                                            label="daemonkit session guard")
        guard.push(state.session_policy)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and state.session_policy is not None:
        guard.pop(state.session_policy)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # A real-lane test lifts the guard for everything done on its behalf, its module fixtures included.
    lift = item.get_closest_marker("daemonkit_real") is not None and _state(item.config).mode != "off"
    permissive = guard.Policy(forbidden=[], blocked_tools=frozenset(), label="daemonkit_real")
    if lift:
        guard.push(permissive)
    try:
        yield
    finally:
        if lift:
            guard.pop(permissive)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is not None and state.session_policy is not None and state.session_policy.violations:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and state.session_policy is not None and state.session_policy.violations:
        terminalreporter.section("daemonkit sandbox", red=True)
        for line in state.session_policy.violations:
            terminalreporter.line(line)


@pytest.fixture
def daemonkit_sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox active for this test: see ``daemonkit.sandbox.Sandbox`` (``.home``, ``.daemonkit_home``,
    ``.startup_dir``, ``.runner``, ``.commands``, ``.context()``, ``.refused_commands()``)."""
    state = _state(request.config)
    sandbox = Sandbox.create(tmp_path_factory.mktemp("dksandbox"), allow=[*state.allow, *_tmp_roots(request.config)],
                             real_env=state.real_env, label=f"daemonkit sandbox ({request.node.nodeid})")
    sandbox.activate()
    try:
        yield sandbox
        sandbox.stop_daemons()
    finally:
        sandbox.deactivate()
    found = sandbox.violations()
    if found:
        pytest.fail("the test tried to touch the real machine (use the sandbox's paths and runner, or mark it "
                    "@pytest.mark.daemonkit_real):\n  " + "\n  ".join(found), pytrace=False)


@pytest.fixture(autouse=True)
def _daemonkit_autosandbox(request: pytest.FixtureRequest) -> None:
    state = _state(request.config)
    if state.mode == "off" or request.node.get_closest_marker("daemonkit_real") is not None:
        return
    if state.mode == "auto" or request.node.get_closest_marker("daemonkit_sandbox") is not None:
        request.getfixturevalue("daemonkit_sandbox")


# ------------------------------------------------------------------------------------------ helpers


def _state(config: pytest.Config) -> _State:
    state = config.stash.get(_STATE, None)
    if state is None:  # registered after configure (pytester with -p); behave as opt-in
        state = _State("opt-in", [config.rootpath], dict(os.environ))
        config.stash[_STATE] = state
    return state


def _tmp_roots(config: pytest.Config) -> list[Path]:
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return []
    try:
        return [factory.getbasetemp()]
    except OSError:
        return []


def _cache_dirs(config: pytest.Config) -> list[Path]:
    cache = getattr(config, "cache", None)
    return [Path(cache._cachedir)] if cache is not None and hasattr(cache, "_cachedir") else []


def _warn_if_shadowed(config: pytest.Config) -> None:
    """Testing a checkout of daemonkit itself while another copy was imported would test the wrong code."""
    checkout = config.rootpath / "src" / "daemonkit"
    if not (checkout / "testing.py").exists():
        return
    here = Path(__file__).resolve().parent
    if here != checkout.resolve():
        config.issue_config_time_warning(pytest.PytestConfigWarning(
            f"daemonkit was imported from {here}, not from this checkout's {checkout}: the tests run "
            "against that other copy (put the checkout's src first on sys.path, e.g. pip install -e .)"),
            stacklevel=2)

