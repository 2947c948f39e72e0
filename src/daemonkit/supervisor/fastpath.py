"""``status NAME --json`` for a running daemon, without loading the spec or psutil.

Scripts and monitoring poll ``status --json``; with 500 programs, loading the TOML spec, importing
psutil and the API layer cost more than the answer itself. When the supervisor is live it already
knows everything ``status`` reports, in spec order, so this path asks its control socket and prints
the same document ``api.status_of(...).to_json()`` would (a test checks they are equal).

Anything unusual returns ``None`` and the caller takes the full path, which explains problems: a
name the spec rules would reject, no user-scope home, a long home path (socket moved to a temp
dir), no supervisor answering, a spec edited after the supervisor started.
"""

from __future__ import annotations

import json
import os
import re
import socket
from typing import Any

# The same rule as daemonkit.spec.validate_name; a name it rejects goes the full path, which says why.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_MAX_SOCKET_PATH = 100  # as daemonkit.paths: longer homes put the socket elsewhere
TIMEOUT = 3.0


def live_status(name: str) -> dict[str, Any] | None:
    if not _NAME_RE.fullmatch(name) or name.endswith("."):
        return None
    root = _user_root()
    if root is None:
        return None
    home = os.path.join(root, name)
    spec_file = os.path.join(home, "spec.toml")
    control = os.path.join(home, "control.sock")
    if len(os.fsencode(control)) > _MAX_SOCKET_PATH:
        return None
    try:
        spec_mtime = os.stat(spec_file).st_mtime
    except OSError:
        return None  # not installed for this user (maybe system scope): the full path looks further
    answer = _ask(control)
    if not answer or not answer.get("ok") or not isinstance(answer.get("state"), dict):
        return None
    state = answer["state"]
    sup = state.get("supervisor") or {}
    started = sup.get("started_at")
    if not isinstance(started, (int, float)) or spec_mtime > started:
        return None  # the spec changed since: the full path shows its programs, not the running ones
    entries = state.get("programs")
    if not isinstance(entries, dict):
        return None
    programs = []
    for pname, entry in entries.items():
        if not isinstance(entry, dict):
            return None
        programs.append({
            "name": pname, "state": str(entry.get("state", "unknown")), "reason": str(entry.get("reason", "")),
            "pid": entry.get("pid"), "ready": bool(entry.get("ready")), "restarts": int(entry.get("restarts") or 0),
            "since": entry.get("since"), "last_exit": entry.get("last_exit"),
            "status_text": str(entry.get("status_text", "")),
        })
    from .. import __version__

    return {
        "name": state.get("name", name), "home": home, "running": True, "source": "live",
        "supervisor_pid": sup.get("pid"), "supervisor_started_at": started, "backend": str(sup.get("backend", "")),
        "programs": programs, "problems": [], "schema": "daemonkit.status/1", "version": __version__,
        "healthy": all(p["state"] in ("running", "ready") for p in programs if p["state"] != "stopped"),
    }


def _user_root() -> str | None:
    override = os.environ.get("DAEMONKIT_HOME")
    if override:
        root = os.path.expanduser(override)
        # pathlib would normalise these spellings; leave them to the full path so "home" matches.
        if not os.path.isabs(root) or root.endswith(("/", "/.")) or "//" in root or "/./" in root:
            return None
        return root
    import platformdirs

    return platformdirs.user_state_dir("daemonkit", appauthor=False)


def _ask(path: str) -> dict[str, Any] | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT)
        sock.connect(path)
        sock.sendall(b'{"op":"status"}\n')
        chunks = []
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            chunks.append(data)
            if data.endswith(b"\n"):
                break
        answer = json.loads(b"".join(chunks))
        return answer if isinstance(answer, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        sock.close()
