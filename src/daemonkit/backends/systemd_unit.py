"""The systemd unit daemonkit writes, as pure functions: name, quoting, rendering, parsing, drift.

Nothing here touches the machine; ``systemd.py`` does the writing and the ``systemctl`` calls.

How the spec maps onto the unit (the supervisor is what systemd runs and restarts; the supervisor
restarts the programs itself, with its own backoff):

- ``Type=notify`` + ``NotifyAccess=main``: ``systemctl start`` returns when the supervisor sends
  ``READY=1`` (after its programs are ready), so a start that fails is reported by ``start`` itself.
- ``Restart=``: ``always`` if any program's policy is ``always``, else ``on-failure``. ``never`` is a
  program policy; a supervisor that crashes must still come back to look after the other programs.
  Under ``always`` a supervisor that exits 0 is restarted too, so stopping must go through
  ``systemctl stop`` (the backend's ``stop``), never through the supervisor alone.
- ``RestartPreventExitStatus=78``: the supervisor exits 78 on a configuration error; restarting would
  only repeat it. ``StartLimitIntervalSec=0``: systemd's start limit would otherwise leave the unit dead
  for good after 5 quick failures; the supervisor paces itself.
- ``TimeoutStopSec=`` the largest program ``stop_grace`` plus a margin (programs are stopped in
  parallel), so systemd never SIGKILLs a supervisor that is still draining its programs.
- ``KillMode=mixed``: SIGTERM only to the supervisor (it stops the programs in order, each with its own
  signal and grace), then SIGKILL to whatever is left in the cgroup after the timeout.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..errors import DaemonkitError
from ._files import MARKER

if TYPE_CHECKING:
    from ..spec import Spec

# systemd's unit name alphabet (unit-name.c: VALID_CHARS) and length limit.
_UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9:_.\\-]+$")
_UNIT_NAME_MAX = 255

# Characters systemd does not accept in ExecStart='s executable name, quoted or not (string_is_safe()).
_UNSAFE_EXECUTABLE = ('"', "'", "\\")
ENV_PROGRAM = "/usr/bin/env"

STOP_MARGIN = 15  # seconds on top of the largest stop_grace: the supervisor's own shutdown work
START_MARGIN = 30  # seconds on top of the largest readiness timeout before systemd gives up
RESTART_SEC = 1  # the supervisor restarts programs itself; this only paces supervisor crashes
CONFIG_ERROR_EXIT = 78  # EX_CONFIG: the exit-code contract, see docs/backends-unix.md

HEADER = (
    f"# {MARKER}: 'daemonkit install' rewrites this file and 'daemonkit uninstall' removes it.\n"
    "# Local changes here are reported as drift and undone by the next install; put them in a\n"
    "# drop-in instead (systemctl [--user] edit UNIT).\n"
)


@dataclass(frozen=True)
class RunAs:
    """The account a system unit runs as."""

    user: str
    uid: int
    group: str = ""  # the user's primary group; empty leaves Group= out


def unit_name(spec: "Spec") -> str:
    """``<app>-<name>.service``: one unit per daemon home, recognisable in ``systemctl list-units``."""
    name = f"{spec.app}-{spec.name}.service"
    if not _UNIT_NAME_RE.match(name) or len(name) > _UNIT_NAME_MAX or name.startswith("-"):
        raise DaemonkitError(
            f"cannot make a systemd unit name from {spec.app!r} and {spec.name!r}",
            "unit names may only contain letters, digits and ':_.-\\' (at most 255 characters)",
            "rename the daemon to letters, digits, '-', '_' and '.'",
        )
    return name


def _refuse_unprintable(arg: str, what: str) -> None:
    for ch in arg:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise DaemonkitError(
                f"cannot write {what} into a systemd unit",
                f"it contains the control character {ch!r} ({arg!r}); a unit file is line-based",
                "use a path without newlines or control characters",
            )
    try:
        arg.encode("utf-8")
    except UnicodeEncodeError:
        raise DaemonkitError(f"cannot write {what} into a systemd unit",
                             f"{arg!r} is not valid UTF-8 (unit files must be UTF-8)",
                             "use a path whose name is valid UTF-8") from None


def quote_exec_arg(arg: str, *, executable: bool = False) -> str:
    """Quote one word of an ``ExecStart=`` line so systemd passes it through unchanged.

    systemd first expands ``%`` specifiers over the whole line (``%%`` is a literal ``%``), then splits
    words honouring double quotes with C escapes (``\\\\``, ``\\"``), then expands ``$VAR`` in every
    argument except the executable (``$$`` is a literal ``$``). So the executable keeps its ``$`` as is,
    and every later word doubles it: checked against a real ``systemd --user`` in the tests.
    """
    _refuse_unprintable(arg, "the command line argument " + repr(arg))
    text = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if not executable:
        text = text.replace("$", "$$")
    return f'"{text}"'


def exec_line(argv: Sequence[str]) -> str:
    if not argv or not argv[0].startswith("/"):
        raise DaemonkitError(
            "cannot write the supervisor command into a systemd unit",
            f"its executable {argv[0] if argv else ''!r} is not an absolute path (systemd needs one)",
            "run daemonkit with an absolute Python path, e.g. /usr/bin/python3 -m daemonkit ...",
        )
    if any(ch in argv[0] for ch in _UNSAFE_EXECUTABLE):
        # systemd refuses such an executable name ("contains special characters") however it is quoted,
        # but accepts anything in an argument: let env(1) exec it (no shell, argv passed through).
        argv = [ENV_PROGRAM, *argv]
    return " ".join([quote_exec_arg(argv[0], executable=True), *(quote_exec_arg(a) for a in argv[1:])])


def _plain_value(text: str) -> str:
    """A free-text value (Description=): one line, specifiers escaped, no continuation backslash."""
    text = "".join(" " if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)
    return text.replace("%", "%%").strip().rstrip("\\").strip()


def restart_policy(spec: "Spec") -> str:
    return "always" if any(p.restart == "always" for p in spec.programs) else "on-failure"


def stop_timeout(spec: "Spec") -> int:
    return math.ceil(spec.max_stop_grace) + STOP_MARGIN


def start_timeout(spec: "Spec") -> int:
    ready = max((p.ready.timeout for p in spec.programs if p.ready is not None), default=0.0)
    return math.ceil(ready) + START_MARGIN


def render_unit(spec: "Spec", argv: Sequence[str], *, scope: str, run_as: RunAs | None = None,
                user_session: bool = False) -> str:
    """The unit file text. ``scope`` is "user" or "system"; ``run_as`` and ``user_session`` only apply
    to system units (``User=`` and ordering after the target user's ``user@UID.service``)."""
    description = f"daemonkit supervisor for {spec.name}"
    if spec.description:
        description += f": {spec.description}"
    unit = ["[Unit]", f"Description={_plain_value(description)}", "StartLimitIntervalSec=0"]
    service = [
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_line(argv)}",
        f"Restart={restart_policy(spec)}",
        f"RestartSec={RESTART_SEC}",
        f"RestartPreventExitStatus={CONFIG_ERROR_EXIT}",
        f"TimeoutStartSec={start_timeout(spec)}",
        f"TimeoutStopSec={stop_timeout(spec)}",
        "KillMode=mixed",
        # Runtime files (state, logs, sockets) are owner-only whatever the manager's umask is.
        "UMask=0077",
        # The journal shows the supervisor's own output live and labelled, not as "python3"; the
        # supervisor records which manager runs it (state.json, status).
        "Environment=PYTHONUNBUFFERED=1 DAEMONKIT_BACKEND=systemd",
        f"SyslogIdentifier={unit_name(spec).removesuffix('.service')}",
    ]
    if scope == "system":
        unit.append("After=network.target")
        if run_as is not None:
            service += [f"User={run_as.user}"] + ([f"Group={run_as.group}"] if run_as.group else [])
            if user_session:
                # Programs that talk to the user's session bus need the user manager up first.
                unit += [f"After=user@{run_as.uid}.service", f"Wants=user@{run_as.uid}.service"]
                service.append(f"Environment=XDG_RUNTIME_DIR=/run/user/{run_as.uid}")
        target = "multi-user.target"
    else:
        target = "default.target"
    install = ["[Install]", f"WantedBy={target}"]
    return HEADER + "\n".join(unit) + "\n\n" + "\n".join(service) + "\n\n" + "\n".join(install) + "\n"


# ----------------------------------------------------------------------------------------------- drift


def parse_unit(text: str) -> dict[tuple[str, str], list[str]]:
    """``(section, key) -> values`` in file order; comments and blank lines dropped, continuations joined."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep:
            out.setdefault((section, line), []).append("")
            continue
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def unit_drift(expected: str, actual: str) -> list[str]:
    """Human-readable differences between the unit ``render`` wants and the file on disk."""
    drift: list[str] = []
    if MARKER not in actual[:512]:
        drift.append("the file has no '# Managed by daemonkit' line (written or edited by someone else)")
    want, have = parse_unit(expected), parse_unit(actual)
    for key in want:
        if key not in have:
            drift.append(f"[{key[0]}] {key[1]}= is missing (daemonkit sets {_show(want[key])})")
        elif have[key] != want[key]:
            drift.append(f"[{key[0]}] {key[1]}= is {_show(have[key])}, daemonkit sets {_show(want[key])}")
    for key in have:
        if key not in want:
            drift.append(f"[{key[0]}] {key[1]}={_show(have[key])} was added by hand")
    return drift


def _show(values: list[str]) -> str:
    text = " / ".join(values)
    return repr(text if len(text) <= 120 else text[:117] + "...")
