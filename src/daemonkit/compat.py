"""Windows subprocess compatibility helpers, kept with the seed's names and semantics.

These five names come from the origin document (an agent app's Windows reliability fix) and are
pinned by tests. Every helper is a no-op on POSIX, so calling them from portable code is safe.

The engine's own spawns (``daemonkit.proc.spawn``) deliberately differ in one place: they do not use
``DETACHED_PROCESS`` for the supervisor, because it cancels ``CREATE_NO_WINDOW`` for console programs and
a console-less daemon makes every console child it starts flash a window. Here the seed's values are
kept as they are, because host apps already depend on them.
"""

from __future__ import annotations

import shutil
import sys
from typing import Sequence

__all__ = [
    "IS_WINDOWS",
    "resolve_node_command",
    "windows_detach_flags",
    "windows_hide_flags",
    "windows_detach_popen_kwargs",
]

IS_WINDOWS = sys.platform == "win32"

# Win32 process-creation flags, spelled out because ``subprocess`` only defines them on Windows builds.
CREATE_NEW_PROCESS_GROUP = 0x00000200
DETACHED_PROCESS = 0x00000008
CREATE_NO_WINDOW = 0x08000000
# Without it a "detached" child stays in its parent's job object and dies when e.g. Electron's job closes.
CREATE_BREAKAWAY_FROM_JOB = 0x01000000


def resolve_node_command(name: str, argv: Sequence[str]) -> list[str]:
    """Return ``[absolute path of name, *argv]``, or ``[name, *argv]`` when ``name`` is not on PATH.

    On Windows ``npm``, ``npx``, ``yarn`` … are ``.cmd`` shims that ``CreateProcessW`` cannot run by bare
    name; ``shutil.which`` resolves them through PATHEXT. Unresolved names are returned unchanged so the
    caller's ``Popen`` raises the usual, readable ``FileNotFoundError``.
    """
    resolved = shutil.which(name)
    return [resolved or name, *argv]


def windows_detach_flags() -> int:
    """Creation flags that detach a child from its parent's console, group and job; 0 on POSIX."""
    if not IS_WINDOWS:
        return 0
    return CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS | CREATE_NO_WINDOW | CREATE_BREAKAWAY_FROM_JOB


def windows_hide_flags() -> int:
    """Creation flags that only hide a short-lived console child's window; 0 on POSIX.

    No ``DETACHED_PROCESS``: the child keeps inherited stdio so ``capture_output=True`` still works.
    """
    if not IS_WINDOWS:
        return 0
    return CREATE_NO_WINDOW


def windows_detach_popen_kwargs() -> dict[str, object]:
    """``Popen`` keyword arguments that detach a child: creation flags on Windows, a new session on POSIX."""
    if IS_WINDOWS:
        return {"creationflags": windows_detach_flags()}
    return {"start_new_session": True}
