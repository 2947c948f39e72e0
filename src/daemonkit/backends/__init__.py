"""OS service-manager backends behind one protocol (see ``base.Backend``).

``get_backend(name)`` builds a backend by name; the detached one is wired to ``daemonkit.api``'s own
spawn and stop. ``chooser.choose`` picks the right one for a spec on this machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..paths import Home
    from ..spec import Spec
    from .base import Backend, BackendContext

__all__ = ["Backend", "BackendContext", "default_context", "detached_backend", "get_backend"]


# Set by daemonkit.sandbox while a sandbox is active (its recording runner, its tmp directories).
context_override: Callable[[], BackendContext] | None = None


def __getattr__(name: str) -> Any:
    # ``base`` (subprocess, locale, the runner) loads on first use, not with the package: importing
    # ``backends.wsl`` for WSL detection in ``status --deep`` must not pay for it.
    if name in ("Backend", "BackendContext"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_context() -> BackendContext:
    """The context real commands use; inside a daemonkit sandbox, the sandbox's recording context."""
    if context_override is not None:
        return context_override()
    from .base import BackendContext

    return BackendContext()


def detached_backend(ctx: BackendContext | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
    from .. import api
    from .detached import DetachedBackend

    def start_fn(spec: "Spec", home: "Home") -> None:
        api.start_supervisor(spec, home)

    def stop_fn(spec: "Spec", home: "Home") -> None:
        api.stop_supervisor(spec, home)

    return DetachedBackend(ctx or default_context(), start_fn=start_fn, stop_fn=stop_fn, **kwargs)  # type: ignore[arg-type]


def get_backend(name: str, ctx: BackendContext | None = None) -> Backend:
    """The backend called ``name`` (as recorded in a home's ``install.json``)."""
    from ..errors import DaemonkitError
    from .chooser import BACKENDS, _default_factory

    ctx = ctx or default_context()
    if name == "detached":
        return detached_backend(ctx)
    if name not in BACKENDS:
        raise DaemonkitError(f"unknown backend {name!r}", f"known: {', '.join(BACKENDS)}")
    factory = _default_factory(name)
    if factory is None:
        raise DaemonkitError(f"the {name} backend is not available in this daemonkit build",
                             f"{BACKENDS[name]} cannot be imported", "reinstall daemonkit")
    return factory(ctx)
