"""Detached backend: no service manager (containers, CI, WSL without systemd, minimal hosts).

The supervisor is spawned detached and still restarts its programs, but nothing starts it at login or
boot and nothing restarts it if it is killed. ``install`` says exactly that instead of pretending.
Spawning and stopping are the api's job (it owns spawn, lock and records), injected here as callables
so this module stays a thin, honest adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import DaemonkitError
from .base import Artifact, Availability, BackendContext, BackendStatus

if TYPE_CHECKING:
    from ..paths import Home
    from ..spec import Spec

Action = Callable[["Spec", "Home"], None]


class DetachedBackend:
    name = "detached"

    def __init__(self, ctx: BackendContext | None = None, *, start_fn: Action | None = None,
                 stop_fn: Action | None = None, reason: str = "", guidance: Sequence[str] = ()) -> None:
        """``reason``: why no service manager is used (shown by install/status); ``guidance``: extra
        lines such as the WSL advice, from the chooser."""
        self.ctx = ctx if ctx is not None else BackendContext()
        self._start_fn = start_fn
        self._stop_fn = stop_fn
        self.reason = reason or "no service manager is available"
        self.guidance = list(guidance)

    def available(self, scope: str = "user") -> Availability:
        return Availability(True, "needs no service manager (no start at login, no restart if killed)")

    def render(self, spec: "Spec", home: "Home") -> list[Artifact]:
        return []

    def install(self, spec: "Spec", home: "Home") -> list[str]:
        when = "login" if spec.scope == "user" else "boot"
        return [
            f"{spec.name} is not registered with any service manager: {self.reason}",
            f"daemonkit cannot start {spec.name} at {when} here, and nothing restarts its supervisor if the "
            "supervisor itself is killed (the supervisor still restarts its programs)",
            f"start it with 'daemonkit start {spec.name}' from whatever runs at startup here: a container "
            "entrypoint, a shell profile, or a crontab line '@reboot daemonkit start " + spec.name + "'",
            *self.guidance,
        ]

    def uninstall(self, spec: "Spec", home: "Home") -> list[str]:
        return [f"{spec.name} was not registered with a service manager; nothing to remove there"]

    def start(self, spec: "Spec", home: "Home") -> None:
        self._call(self._start_fn, "start", spec, home)

    def stop(self, spec: "Spec", home: "Home") -> None:
        self._call(self._stop_fn, "stop", spec, home)

    def status(self, spec: "Spec", home: "Home") -> BackendStatus:
        return BackendStatus(
            backend=self.name, installed=home.exists(), active=None, enabled=False,
            detail=f"no service manager ({self.reason}): the supervisor is started by 'daemonkit start' only",
            notes=list(self.guidance),
        )

    @staticmethod
    def _call(action: Action | None, verb: str, spec: "Spec", home: "Home") -> None:
        if action is None:
            raise DaemonkitError(f"cannot {verb} {spec.name} detached",
                                 f"this DetachedBackend was created without a {verb}_fn",
                                 "create it with start_fn/stop_fn from daemonkit.api (a bug in the caller)")
        action(spec, home)
