"""DetachedBackend: honest about what it cannot do; start/stop go to the api's callables."""

from __future__ import annotations

import pytest

from daemonkit.backends.base import Backend
from daemonkit.backends.detached import DetachedBackend
from daemonkit.errors import DaemonkitError
from daemonkit.paths import Home

from .fakes import make_spec


def test_install_says_it_cannot_start_at_login(home: Home) -> None:
    backend = DetachedBackend(reason="systemd: not the init system here", guidance=["extra advice"])
    assert isinstance(backend, Backend)
    lines = backend.install(make_spec(), home)
    text = "\n".join(lines)
    assert "cannot start demo at login" in text and "systemd: not the init system here" in text
    assert "daemonkit start demo" in text and "@reboot" in text and lines[-1] == "extra advice"
    assert "at boot" in "\n".join(backend.install(make_spec(scope="system"), home))
    assert backend.render(make_spec(), home) == []
    assert not home.path.exists()  # install wrote nothing


def test_start_stop_delegate(home: Home) -> None:
    calls: list[tuple[str, str]] = []
    backend = DetachedBackend(start_fn=lambda s, h: calls.append(("start", s.name)),
                              stop_fn=lambda s, h: calls.append(("stop", s.name)))
    backend.start(make_spec(), home)
    backend.stop(make_spec(), home)
    assert calls == [("start", "demo"), ("stop", "demo")]


def test_unwired_start_is_a_clear_error(home: Home) -> None:
    with pytest.raises(DaemonkitError, match="without a start_fn"):
        DetachedBackend().start(make_spec(), home)


def test_status(home: Home) -> None:
    status = DetachedBackend(guidance=["note"]).status(make_spec(), home)
    assert status.enabled is False and status.active is None and not status.installed
    assert "no service manager" in status.detail and status.notes == ["note"]
