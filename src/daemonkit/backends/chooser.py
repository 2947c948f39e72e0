"""Which backend registers a daemon here, and why.

An ordered chain per platform: the first backend whose ``available()`` says yes wins, and the answer
carries a one-line reason plus what was skipped and why (shown by ``install`` and ``status --deep``).
``--backend NAME`` forces one (and fails clearly if it cannot work here). A system-scope spec without
root/admin rights is an error unless the caller asked for ``--fallback user``; then it becomes a user
daemon and the choice says so.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from ..errors import EXIT_USAGE, DaemonkitError
from .base import Availability, Backend, BackendContext
from .detached import DetachedBackend
from .wsl import WslInfo, detect, guidance, read_inputs

if TYPE_CHECKING:
    from ..spec import Spec

Factory = Callable[[BackendContext], Backend]

# name -> "module:Class", imported only when that backend is considered (keeps the CLI path light).
# The Windows entries are provided by their own modules; a missing one is reported as unavailable.
BACKENDS: dict[str, str] = {
    "systemd": "daemonkit.backends.systemd:SystemdBackend",
    "launchd": "daemonkit.backends.launchd:LaunchdBackend",
    "schtasks": "daemonkit.backends.schtasks:SchtasksBackend",
    "startup": "daemonkit.backends.startup:StartupBackend",
    "winservice": "daemonkit.backends.winservice:WinServiceBackend",
    "detached": "daemonkit.backends.detached:DetachedBackend",
}


def chain(platform: str, scope: str) -> list[str]:
    """The backends tried, best first. ``detached`` always ends the chain: it works everywhere."""
    if platform == "win32":
        return ["winservice", "detached"] if scope == "system" else ["schtasks", "startup", "detached"]
    if platform == "darwin":
        return ["launchd", "detached"]
    return ["systemd", "detached"]


@dataclass(frozen=True)
class Choice:
    backend: Backend
    name: str
    scope: str  # may differ from the spec's after --fallback user
    reason: str
    notes: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = field(default=())  # (backend, why not)

    def apply(self, spec: "Spec") -> "Spec":
        """The spec to install: its scope replaced when the choice fell back to user scope."""
        return spec if spec.scope == self.scope else spec.replace(scope=self.scope)


def is_admin() -> bool:
    if sys.platform == "win32":
        try:
            import ctypes

            return bool(ctypes.windll.shell32.IsUserAnAdmin())  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            return False
    return os.geteuid() == 0


def _usage_error(what: str, why: str, hint: str) -> DaemonkitError:
    error = DaemonkitError(what, why, hint)
    error.exit_code = EXIT_USAGE
    return error


def _default_factory(name: str) -> Factory | None:
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, class_name, None)


def _available(backend: Backend, scope: str) -> Availability:
    # Backends that register per scope (systemd, launchd) take it; the protocol's plain form does not.
    try:
        takes_scope = "scope" in inspect.signature(backend.available).parameters
    except (TypeError, ValueError):
        takes_scope = False
    return backend.available(scope) if takes_scope else backend.available()  # type: ignore[call-arg]


def choose(spec: "Spec", ctx: BackendContext | None = None, *, backend: str | None = None,
           fallback: str | None = None, platform: str | None = None, admin: bool | None = None,
           wsl_info: WslInfo | None = None, factories: Mapping[str, Factory] | None = None) -> Choice:
    """Pick the backend for ``spec``. ``factories`` overrides how a backend is built (the api passes a
    detached factory wired to its own spawn/stop; tests pass fakes)."""
    ctx = ctx if ctx is not None else BackendContext()
    platform = platform or sys.platform
    admin = is_admin() if admin is None else admin
    if fallback not in (None, "user"):
        raise _usage_error(f"unknown fallback {fallback!r}", "the only fallback is 'user'", "--fallback user")
    if wsl_info is None and platform.startswith("linux"):
        wsl_info = detect(read_inputs(Path(ctx.dirs.get("proc", "/proc")),
                                      Path(ctx.dirs.get("run", "/run")), ctx.env))
    notes: list[str] = guidance(wsl_info, spec.name) if wsl_info is not None else []

    scope = spec.scope
    if scope == "system" and not admin:
        if fallback != "user":
            raise DaemonkitError(
                f"cannot install {spec.name} for the whole machine",
                "system scope needs root (an elevated, administrator prompt on Windows)",
                "re-run with sudo (or elevated), or pass --fallback user to install it for your user only")
        scope = "user"
        notes.insert(0, f"system scope needs root/admin rights, so {spec.name} is installed for your user "
                        "instead, as asked (--fallback user): it starts at your login, not at boot")

    def build(name: str) -> Backend | None:
        if factories is not None and name in factories:
            return factories[name](ctx)
        factory = _default_factory(name)
        return factory(ctx) if factory is not None else None

    if backend is not None:
        if backend not in BACKENDS and not (factories and backend in factories):
            raise _usage_error(f"unknown backend {backend!r}", f"known backends: {', '.join(BACKENDS)}",
                               "pick one of those, or leave out --backend to let daemonkit choose")
        instance = build(backend)
        if instance is None:
            raise DaemonkitError(f"the {backend} backend is not part of this daemonkit build",
                                 f"{BACKENDS.get(backend, backend)} cannot be imported",
                                 "leave out --backend to let daemonkit choose")
        availability = _available(instance, scope)
        if not availability.ok:
            raise DaemonkitError(f"cannot use the {backend} backend here", availability.reason,
                                 "leave out --backend to let daemonkit choose one that works")
        if isinstance(instance, DetachedBackend):
            instance.reason = "chosen with --backend detached"
            instance.guidance = notes
        return Choice(instance, backend, scope, f"{backend} (forced with --backend): {availability.reason}",
                      tuple(notes))

    skipped: list[tuple[str, str]] = []
    for name in chain(platform, scope):
        instance = build(name)
        if instance is None:
            skipped.append((name, "not part of this daemonkit build"))
            continue
        availability = _available(instance, scope)
        if not availability.ok and isinstance(availability.blocking, DaemonkitError):
            # The manager is here but unreachable from this shell: falling back would install a daemon
            # that never starts at login. Say so; --backend detached remains a conscious choice.
            error = availability.blocking
            error.hint = (f"{error.hint}; " if error.hint else "") + \
                "or pass --backend detached to run it without a service manager (no start at login)"
            raise error
        if not availability.ok:
            skipped.append((name, availability.reason))
            continue
        reason = f"{name}: {availability.reason}"
        if skipped:
            reason += " (skipped " + "; ".join(f"{n}: {why}" for n, why in skipped) + ")"
        if isinstance(instance, DetachedBackend):
            instance.reason = "; ".join(f"{n}: {why}" for n, why in skipped) or instance.reason
            instance.guidance = notes
        return Choice(instance, name, scope, reason, tuple(notes), tuple(skipped))
    raise DaemonkitError(f"no backend can run {spec.name} here",
                         "; ".join(f"{n}: {why}" for n, why in skipped) or "the chain is empty",
                         "pass --backend detached to run it without a service manager")
