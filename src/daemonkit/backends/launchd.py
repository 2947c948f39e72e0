"""launchd backend (macOS): the supervisor as a LaunchAgent (``~/Library/LaunchAgents``, domain
``gui/UID``, starts at login) or a LaunchDaemon (``/Library/LaunchDaemons``, domain ``system``, starts
at boot, root only).

Only the modern verbs are used: ``bootstrap``, ``bootout``, ``kickstart``, ``print``, ``enable``
(``load``/``unload`` are deprecated and hide errors). Known traps, each handled below:

- ``bootout`` returns before launchd has finished unloading; bootstrapping at once fails with the
  ambiguous exit 5 ("Input/output error"). We wait until ``print`` no longer finds the label.
- exit 5 also means "already bootstrapped"; ``print`` tells the two apart.
- ``kickstart`` does not re-read a changed plist: a changed plist is booted out and in again.
- a service disabled with ``launchctl disable`` refuses to bootstrap: ``enable`` first.
- the default soft limit of 256 open files is too low for a supervisor of many programs.

Exit-code contract: launchd cannot refuse to restart on one exit code; it can only spare a successful
exit (``KeepAlive = {SuccessfulExit: false}``). So that is the KeepAlive for every spec, and the
supervisor spells "configuration error, do not restart me" as exit 0 when ``DAEMONKIT_BACKEND`` is
launchd (78 elsewhere). The supervisor exits 0 otherwise only when asked to stop, which launchd must
not undo either.
"""

from __future__ import annotations

import math
import os
import plistlib
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import DaemonkitError, NotInstalledError
from . import _files
from .base import Artifact, Availability, BackendContext, BackendStatus, CommandResult, supervisor_argv

if TYPE_CHECKING:
    from ..paths import Home
    from ..spec import Spec

QUICK = 10.0
THROTTLE_INTERVAL = 5  # launchd's minimum seconds between two starts of the supervisor
STOP_MARGIN = 15
NUMBER_OF_FILES = 10240  # OPEN_MAX on macOS; the launchd default is 256
BOOTOUT_WAIT = 10.0  # seconds to wait for an asynchronous bootout to finish

_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# launchctl's "not loaded" answers: ESRCH (3) and "Could not find service" (113).
_NOT_LOADED = (3, 113)
_MARKER_COMMENT = (f"<!-- {_files.MARKER}: 'daemonkit install' rewrites this file and "
                   "'daemonkit uninstall' removes it. -->\n").encode()


def label(spec: "Spec") -> str:
    value = f"{spec.app}.{spec.name}"
    if not _LABEL_RE.match(value):
        raise DaemonkitError(f"cannot make a launchd label from {spec.app!r} and {spec.name!r}",
                             "labels may contain letters, digits, '_', '-' and '.' only",
                             "rename the daemon")
    return value


def exit_timeout(spec: "Spec") -> int:
    return math.ceil(spec.max_stop_grace) + STOP_MARGIN


def plist_dict(spec: "Spec", home: "Home", python: str, *, run_as: str | None = None) -> dict[str, Any]:
    """The job definition. ``KeepAlive`` restarts the supervisor after an unsuccessful exit (a crash, a
    signal, a non-zero code) whatever the programs' policies: the supervisor restarts the programs
    itself, and its exit 0 means "stopped on request" or "configuration error" (see the module doc)."""
    job: dict[str, Any] = {
        "Label": label(spec),
        "ProgramArguments": supervisor_argv(home, python),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_INTERVAL,
        "ExitTimeOut": exit_timeout(spec),
        "SoftResourceLimits": {"NumberOfFiles": NUMBER_OF_FILES},
        # Only what escapes the supervisor's own logging (an import error, a traceback at start).
        "StandardOutPath": str(home.logs_dir / "launchd.out.log"),
        "StandardErrorPath": str(home.logs_dir / "launchd.err.log"),
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1", "DAEMONKIT_BACKEND": "launchd"},
        "Umask": 0o077,
    }
    if spec.scope == "system" and run_as:
        job["UserName"] = run_as
        job["InitGroups"] = True
    return job


def render_plist(job: dict[str, Any]) -> bytes:
    data = plistlib.dumps(job, fmt=plistlib.FMT_XML, sort_keys=True)
    # plistlib cannot write comments; the marker goes right after the DOCTYPE line.
    head, sep, rest = data.partition(b"<plist")
    return head + _MARKER_COMMENT + sep + rest


def is_ours(content: bytes) -> bool:
    """Our marker comment, or, since plist editors drop comments, a job that runs daemonkit's supervisor."""
    if _files.is_ours(content):
        return True
    try:
        job = plistlib.loads(content)
    except Exception:  # not a plist at all: certainly not ours
        return False
    args = job.get("ProgramArguments") if isinstance(job, dict) else None
    return isinstance(args, list) and args[1:4] == ["-m", "daemonkit", "supervise"]


def plist_drift(expected: dict[str, Any], actual_bytes: bytes) -> list[str]:
    drift: list[str] = []
    if not _files.is_ours(actual_bytes):
        drift.append("the plist has no 'Managed by daemonkit' comment (written or edited by someone else)")
    try:
        actual = plistlib.loads(actual_bytes)
    except Exception as exc:  # plistlib raises several types (InvalidFileException, ExpatError, ValueError)
        return drift + [f"the plist cannot be parsed: {exc}"]
    if not isinstance(actual, dict):
        return drift + ["the plist is not a dictionary"]
    for key, value in expected.items():
        if key not in actual:
            drift.append(f"{key} is missing (daemonkit sets {value!r})")
        elif actual[key] != value:
            drift.append(f"{key} is {actual[key]!r}, daemonkit sets {value!r}")
    for key in actual:
        if key not in expected:
            drift.append(f"{key}={actual[key]!r} was added by hand")
    return drift


class LaunchdBackend:
    name = "launchd"

    def __init__(self, ctx: BackendContext | None = None, *, run_as: str | None = None, uid: int | None = None,
                 euid: int | None = None, sleep: Callable[[float], None] = time.sleep,
                 bootout_wait: float = BOOTOUT_WAIT) -> None:
        """``run_as``: the account a LaunchDaemon runs as (default root). ``uid`` selects ``gui/UID``;
        ``euid`` decides whether system scope is allowed (both default to this process's)."""
        self.ctx = ctx if ctx is not None else BackendContext()
        self.run_as = run_as
        self.uid = os.getuid() if uid is None else uid
        self.euid = os.geteuid() if euid is None else euid
        self._sleep = sleep
        self.bootout_wait = bootout_wait

    # ------------------------------------------------------------------------------------ locations

    def plist_dir(self, scope: str) -> Path:
        if scope == "system":
            return Path(self.ctx.dirs.get("launch_daemons_dir", "/Library/LaunchDaemons"))
        if "launch_agents_dir" in self.ctx.dirs:
            return Path(self.ctx.dirs["launch_agents_dir"])
        home = self.ctx.env.get("HOME")
        return (Path(home) if home and os.path.isabs(home) else Path.home()) / "Library" / "LaunchAgents"

    def plist_path(self, spec: "Spec") -> Path:
        return self.plist_dir(spec.scope) / f"{label(spec)}.plist"

    def domain(self, spec: "Spec") -> str:
        return "system" if spec.scope == "system" else f"gui/{self.uid}"

    def target(self, spec: "Spec") -> str:
        return f"{self.domain(spec)}/{label(spec)}"

    # ------------------------------------------------------------------------------------- commands

    def _launchctl(self, *args: str, timeout: float = QUICK) -> CommandResult:
        return self.ctx.runner.run(["launchctl", *args], timeout=timeout)

    def _loaded(self, spec: "Spec") -> tuple[bool, CommandResult]:
        result = self._launchctl("print", self.target(spec))
        return result.ok, result

    def _bootout(self, spec: "Spec") -> bool:
        """Unload the job and wait until launchd has really let go of it. True if it was loaded."""
        target = self.target(spec)
        result = self._launchctl("bootout", target, timeout=exit_timeout(spec) + 15)
        if result.returncode in _NOT_LOADED:
            return False
        if not result.ok and self._loaded(spec)[0]:
            raise DaemonkitError(f"could not unload {target}", result.summary(),
                                 f"run 'launchctl bootout {target}' by hand, or log out and in again")
        deadline = self.bootout_wait
        while deadline > 0 and self._loaded(spec)[0]:
            self._sleep(0.1)
            deadline -= 0.1
        if self._loaded(spec)[0]:
            raise DaemonkitError(f"{target} is still loaded after bootout",
                                 f"launchd did not finish unloading it within {self.bootout_wait:g} s",
                                 "try again in a few seconds")
        return result.ok

    def _bootstrap(self, spec: "Spec", path: Path) -> str:
        domain, target = self.domain(spec), self.target(spec)
        result = CommandResult(("launchctl",), 0)
        for attempt in range(3):
            result = self._launchctl("bootstrap", domain, str(path))
            if result.ok:
                return f"loaded {target} (RunAtLoad starts it now)"
            text = f"{result.stdout} {result.stderr}"
            if result.returncode == 125 or "Domain does not support" in text:
                raise DaemonkitError(
                    f"cannot load {label(spec)} into {domain}", "this user has no GUI login session (SSH or a "
                    "headless Mac); LaunchAgents live in the login session",
                    "log in at the Mac's screen (or with Screen Sharing) once, or install it for the whole machine: "
                    "scope = \"system\" in its spec, then sudo daemonkit install --spec FILE")
            # Exit 5 / 37 / "already": either the job is already there, or an earlier bootout is still
            # settling. print tells the first; a short wait and retry covers the second.
            if self._loaded(spec)[0]:
                return f"{target} was already loaded"
            if result.returncode not in (5, 17, 37) and "already" not in text.lower():
                break
            self._sleep(0.5 * (attempt + 1))
        raise DaemonkitError(
            f"launchctl could not load {path}", result.summary(),
            f"check the file with 'plutil -lint {path}', and 'launchctl print {target}'")

    # ------------------------------------------------------------------------------------ protocol

    def available(self, scope: str = "user") -> Availability:
        if sys.platform != "darwin":
            return Availability(False, "launchd runs on macOS only")
        if scope == "system" and self.euid != 0:
            return Availability(False, "LaunchDaemons need root")
        return Availability(True, "launchd is the service manager")

    def render(self, spec: "Spec", home: "Home") -> list[Artifact]:
        job = plist_dict(spec, home, self.ctx.python, run_as=self.run_as)
        return [Artifact(self.plist_path(spec), render_plist(job), 0o644)]

    def install(self, spec: "Spec", home: "Home") -> list[str]:
        if spec.scope == "system" and self.euid != 0:
            raise DaemonkitError("cannot install a LaunchDaemon", "system scope needs root",
                                 "re-run with sudo, or pass --fallback user to install it for your user only")
        (artifact,) = self.render(spec, home)
        path = artifact.path
        lines = [f"removed {tmp}, left by an interrupted install" for tmp in _files.remove_stale_temps(path)]
        existing = _files.read_file(path)
        if existing is not None and not is_ours(existing) and not self.ctx.force:
            raise DaemonkitError(
                f"refusing to overwrite {path}", "a job with that label exists and was not written by daemonkit",
                "rename or remove that plist, pick another daemon name, or pass --force to replace it")
        # launchd opens the log files itself and fails the job if their directory is missing.
        home.ensure()
        changed = existing != artifact.content
        if changed:
            _files.write_artifact(artifact, scope_hint="make the directory writable by you (system scope: use sudo)")
            if existing is None:
                lines.append(f"wrote {path}")
            elif not is_ours(existing):
                lines.append(f"replaced the foreign plist {path} (--force)")
            else:
                drift = plist_drift(plist_dict(spec, home, self.ctx.python, run_as=self.run_as), existing)
                lines.append(f"repaired {path}: " + "; ".join(drift or ["content differed"]))
        target = self.target(spec)
        # Clears a 'launchctl disable' override, which would make bootstrap fail and skip login starts.
        self._launchctl("enable", target)
        loaded = self._loaded(spec)[0]
        if loaded and changed:
            self._bootout(spec)
            lines.append(f"unloaded {target} to apply the changed plist")
            loaded = False
        if not loaded:
            lines.append(self._bootstrap(spec, path))
        else:
            result = self._launchctl("kickstart", target)  # no -k: a running job is left alone
            if not result.ok:
                raise DaemonkitError(f"could not start {target}", result.summary(),
                                     f"see {home.logs_dir / 'launchd.err.log'}")
            lines.append(f"{target} is loaded and up to date")
        return lines

    def uninstall(self, spec: "Spec", home: "Home") -> list[str]:
        path = self.plist_path(spec)
        existing = _files.read_file(path)
        if existing is not None and not is_ours(existing) and not self.ctx.force:
            raise DaemonkitError(f"refusing to remove {path}", "it was not written by daemonkit",
                                 "remove it yourself if it is no longer needed, or pass --force")
        lines = []
        if self._bootout(spec):
            lines.append(f"unloaded {self.target(spec)}")
        if _files.remove_file(path):
            lines.append(f"removed {path}")
        lines += [f"removed {tmp}, left by an interrupted install" for tmp in _files.remove_stale_temps(path)]
        return lines or [f"{label(spec)} was not installed; nothing to remove"]

    def start(self, spec: "Spec", home: "Home") -> None:
        path = self.plist_path(spec)
        existing = _files.read_file(path)
        if existing is None or not is_ours(existing):
            raise NotInstalledError(f"{spec.name} is not installed as a launchd job", f"no daemonkit plist at {path}",
                                    f"run 'daemonkit install {spec.name}'")
        if not self._loaded(spec)[0]:
            self._bootstrap(spec, path)
            return
        result = self._launchctl("kickstart", self.target(spec))
        if not result.ok:
            raise DaemonkitError(f"could not start {self.target(spec)}", result.summary(),
                                 f"see {home.logs_dir / 'launchd.err.log'}")

    def stop(self, spec: "Spec", home: "Home") -> None:
        """Unload the job: with KeepAlive a plain kill would be undone at once. The plist stays, so it
        starts again at the next login (or ``start``)."""
        self._bootout(spec)

    def status(self, spec: "Spec", home: "Home") -> BackendStatus:
        status = BackendStatus(backend=self.name, installed=False)
        existing = _files.read_installed(status, self.plist_path(spec), "plist", ours=is_ours)
        if existing is None:
            return status
        status.drift.extend(plist_drift(plist_dict(spec, home, self.ctx.python, run_as=self.run_as), existing))
        loaded, result = self._loaded(spec)
        status.evidence.append(f"launchctl print {self.target(spec)}: {result.summary(80) if not loaded else 'loaded'}")
        fields = parse_print(result.stdout) if loaded else {}
        status.active = fields.get("state") == "running"
        status.detail = ("not loaded" if not loaded else
                         f"{fields.get('state', '?')}, pid {fields.get('pid', '-')}, "
                         f"last exit code {fields.get('last exit code', '-')}, runs {fields.get('runs', '?')}")
        disabled = self._launchctl("print-disabled", self.domain(spec))
        if disabled.ok:
            status.enabled = not _is_disabled(disabled.stdout, label(spec))
        return status


def parse_print(text: str) -> dict[str, str]:
    """Top-level ``key = value`` lines of ``launchctl print`` (the first occurrence wins; nested blocks
    such as endpoints repeat keys like ``state`` deeper down)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\t(\w[\w ]*?) = (.*)$", line)
        if match and match.group(1) not in fields:
            fields[match.group(1)] = match.group(2).strip()
    return fields


def _is_disabled(text: str, job_label: str) -> bool:
    # macOS 11+: '"label" => disabled'; older: '"label" => true' (true meaning disabled).
    match = re.search(rf'"{re.escape(job_label)}"\s*=>\s*(\w+)', text)
    return bool(match and match.group(1) in ("disabled", "true"))
