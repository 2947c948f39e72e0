"""daemonkit: keep an app's background process alive on Windows, macOS, Linux and WSL.

The top-level package imports nothing heavy: the CLI path stays fast. Import what you need from the
submodules (``daemonkit.spec``, ``daemonkit.api``, ``daemonkit.cli``) or use the lazy names below.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Spec": "daemonkit.spec",
    "Program": "daemonkit.spec",
    "Readiness": "daemonkit.spec",
    "Backoff": "daemonkit.spec",
    "LogLimits": "daemonkit.spec",
    "load_spec": "daemonkit.spec",
    "DaemonkitError": "daemonkit.errors",
    "Daemon": "daemonkit.hostapp",
    "respawn_after_update": "daemonkit.update",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'daemonkit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
