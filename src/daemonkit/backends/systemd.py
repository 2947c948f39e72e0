"""systemd backend: the supervisor as a user unit (``~/.config/systemd/user``, starts at login) or a
system unit (``/etc/systemd/system``, starts at boot, root only).

The unit text comes from ``systemd_unit.render_unit`` (pure); this module writes it, runs ``systemctl``
through ``ctx.runner`` with timeouts, and reports drift. Every step of ``install`` and ``uninstall``
is idempotent and checked against what is there, so a run killed half-way is completed (install) or
undone (uninstall) by the next one.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DaemonkitError, NotInstalledError
from . import _files
from .base import Artifact, Availability, BackendContext, BackendStatus, CommandResult, supervisor_argv
from .systemd_unit import RunAs, render_unit, start_timeout, stop_timeout, unit_drift, unit_name

if TYPE_CHECKING:
    from ..paths import Home
    from ..spec import Spec

QUICK = 10.0  # seconds for queries (show, loginctl); systemctl's own D-Bus timeout is 25 s
CHANGE = 30.0  # daemon-reload, enable, disable

_BUS_TROUBLE = (
    "Failed to connect to bus",
    "Failed to connect to user scope bus",
    "$DBUS_SESSION_BUS_ADDRESS and $XDG_RUNTIME_DIR not defined",
    "No medium found",
)
_SHOW_PROPS = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID", "NRestarts",
               "Result", "ExecMainStatus", "FragmentPath", "DropInPaths", "NeedDaemonReload")
SUPERVISOR_SAYS = "daemonkit supervise: "  # how cli.cmd_supervise prefixes a fatal error on stderr
_RUNNING_STATES = ("active", "activating", "reloading", "deactivating")


class SystemdBackend:
    name = "systemd"

    def __init__(self, ctx: BackendContext | None = None, *, run_as: str | None = None,
                 user_session: bool = False, manage_linger: bool = True, euid: int | None = None) -> None:
        """``run_as``: the account a *system* unit runs as (default root). ``user_session``: order a
        system unit after that user's ``user@UID.service``. ``manage_linger``: let a user-scope install
        try ``loginctl enable-linger`` when linger is off (it only reports when that is not allowed)."""
        self.ctx = ctx if ctx is not None else BackendContext()
        self.run_as = run_as
        self.user_session = user_session
        self.manage_linger = manage_linger
        self.euid = os.geteuid() if euid is None else euid

    # ------------------------------------------------------------------------------------ locations

    def unit_dir(self, scope: str) -> Path:
        if scope == "system":
            return Path(self.ctx.dirs.get("systemd_system_dir", "/etc/systemd/system"))
        if "systemd_user_dir" in self.ctx.dirs:
            return Path(self.ctx.dirs["systemd_user_dir"])
        return self._config_home() / "systemd" / "user"

    def unit_path(self, spec: "Spec") -> Path:
        return self.unit_dir(spec.scope) / unit_name(spec)

    def _user_home(self) -> Path:
        home = self.ctx.env.get("HOME")
        return Path(home) if home and os.path.isabs(home) else Path.home()

    def _config_home(self) -> Path:
        # systemd --user looks in $XDG_CONFIG_HOME/systemd/user, so we write where it reads.
        xdg = self.ctx.env.get("XDG_CONFIG_HOME")
        return Path(xdg) if xdg and os.path.isabs(xdg) else self._user_home() / ".config"

    def _user_name(self) -> str:
        try:
            import pwd

            return pwd.getpwuid(self.euid).pw_name
        except (ImportError, KeyError):
            return self.ctx.env.get("USER") or self.ctx.env.get("LOGNAME") or str(self.euid)

    def _resolve_run_as(self, spec: "Spec") -> RunAs | None:
        if spec.scope != "system" or not self.run_as:
            return None
        import pwd

        try:
            entry = pwd.getpwnam(self.run_as)
        except KeyError:
            raise DaemonkitError(f"cannot run {spec.name} as {self.run_as!r}", "no such user on this machine",
                                 "create the account first, or pick an existing user") from None
        import grp

        try:
            group = grp.getgrgid(entry.pw_gid).gr_name
        except KeyError:  # a primary gid without a group entry: let systemd use the gid's default
            group = ""
        return RunAs(entry.pw_name, entry.pw_uid, group)

    # ------------------------------------------------------------------------------------- commands

    def _systemctl(self, scope: str, *args: str, timeout: float = CHANGE) -> CommandResult:
        argv = ["systemctl", *(["--user"] if scope == "user" else []), *args]
        return self.ctx.runner.run(argv, timeout=timeout, env=self._command_env())

    def _command_env(self) -> dict[str, str]:
        # Only what systemctl needs to find the manager; plain, uncoloured, unpaged output.
        env = {"SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        for key in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"):
            if key in self.ctx.env:
                env[key] = self.ctx.env[key]
        return env

    def _bus_error(self, result: CommandResult | None = None) -> DaemonkitError:
        user = self._user_name()
        why = result.summary() if result is not None else "XDG_RUNTIME_DIR is not set"
        return DaemonkitError(
            "cannot reach your systemd user manager",
            f"there is no user bus for {user} ({why}); shells opened with 'sudo su -' or 'su' have none",
            f"log in as {user} directly (ssh {user}@host, or 'machinectl shell {user}@'), "
            "or install it for the whole machine: scope = \"system\" in its spec, then sudo daemonkit install --spec FILE",
        )

    def _check_result(self, result: CommandResult, scope: str) -> CommandResult:
        """Turn a missing user bus into a clear error wherever it shows up."""
        if scope == "user" and not result.ok and any(s in result.stderr for s in _BUS_TROUBLE):
            raise self._bus_error(result)
        return result

    def _require_manager(self, scope: str) -> None:
        if scope == "system":
            if self.euid != 0:
                raise DaemonkitError(
                    "cannot manage a system unit", f"system scope needs root (you are uid {self.euid})",
                    "re-run with sudo, or pass --fallback user to install it for your user only")
            return
        if not self.ctx.env.get("XDG_RUNTIME_DIR") and not self.ctx.env.get("DBUS_SESSION_BUS_ADDRESS"):
            raise self._bus_error()
        self._check_result(self._systemctl(scope, "show", "--property=Version", timeout=QUICK), scope)

    def _show(self, scope: str, unit: str) -> dict[str, str]:
        result = self._check_result(
            self._systemctl(scope, "show", unit, "--property=" + ",".join(_SHOW_PROPS), timeout=QUICK), scope)
        if not result.ok:
            raise DaemonkitError(f"cannot query {unit}", result.summary(),
                                 f"check 'systemctl{' --user' if scope == 'user' else ''} status {unit}'")
        props = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key] = value
        return props

    def _journal_tail(self, scope: str, unit: str, lines: int = 20, since: float | None = None) -> str:
        """The unit's last journal lines (only those since ``since``, a time.time(), when given), headed
        so they read as the manager's view below an error."""
        argv = ["journalctl", *(["--user"] if scope == "user" else []), "-u", unit, "-n", str(lines),
                "--no-pager", "-o", "short-precise"]
        if since is not None:
            argv.append(f"--since=@{math.floor(since)}")  # whole seconds: journalctl's @EPOCH form
        result = self.ctx.runner.run(argv, timeout=QUICK, env=self._command_env())
        text = result.stdout.strip() if result.ok else ""
        if not text or text.startswith("-- No entries --"):
            return ""
        return f"--- journalctl{' --user' if scope == 'user' else ''} -u {unit}:\n{text}"

    def recent_log(self, spec: "Spec", home: "Home", *, since: float, lines: int = 20) -> str:
        """What the manager logged about the unit since ``since``: for start failures and timeouts."""
        return self._journal_tail(spec.scope, unit_name(spec), lines, since)

    def _journal_hint(self, scope: str, unit: str) -> str:
        return f"journalctl{' --user' if scope == 'user' else ''} -u {unit} -n 50"

    # ------------------------------------------------------------------------------------ protocol

    def available(self, scope: str = "user") -> Availability:
        if not sys.platform.startswith("linux"):
            return Availability(False, "systemd runs on Linux only")
        marker = Path(self.ctx.dirs.get("sd_booted", "/run/systemd/system"))
        if not marker.is_dir():
            return Availability(False, f"systemd is not the init system here (no {marker})")
        if shutil.which("systemctl", path=self.ctx.env.get("PATH")) is None:
            return Availability(False, "systemctl is not on PATH")
        if scope == "system":
            if self.euid != 0:
                return Availability(False, f"system units need root (you are uid {self.euid})")
            return Availability(True, "systemd is the init system and we are root")
        try:
            self._require_manager("user")
        except DaemonkitError as exc:
            return Availability(False, exc.message, blocking=exc)
        return Availability(True, "a systemd user manager is reachable")

    def render(self, spec: "Spec", home: "Home") -> list[Artifact]:
        text = render_unit(spec, supervisor_argv(home, self.ctx.python), scope=spec.scope,
                           run_as=self._resolve_run_as(spec), user_session=self.user_session)
        return [Artifact(self.unit_path(spec), text.encode("utf-8"), 0o644)]

    def install(self, spec: "Spec", home: "Home") -> list[str]:
        scope, unit = spec.scope, unit_name(spec)
        (artifact,) = self.render(spec, home)
        self._require_manager(scope)
        path = artifact.path
        lines = [f"removed {tmp}, left by an interrupted install" for tmp in _files.remove_stale_temps(path)]
        existing = _files.read_file(path)
        if existing is not None and not _files.is_ours(existing) and not self.ctx.force:
            raise DaemonkitError(
                f"refusing to overwrite {path}",
                "a unit of that name exists and was not written by daemonkit (no '# Managed by daemonkit' line)",
                "rename or remove that unit, pick another daemon name, or pass --force to replace it")
        changed = existing != artifact.content
        if changed:
            _files.write_artifact(artifact, scope_hint=self._write_hint(scope))
            if existing is None:
                lines.append(f"wrote {path}")
            elif not _files.is_ours(existing):
                lines.append(f"replaced the foreign unit {path} (--force)")
            else:
                drift = unit_drift(artifact.text, existing.decode("utf-8", errors="replace"))
                lines.append(f"repaired {path}: " + "; ".join(drift or ["content differed"]))
        props = self._show(scope, unit)
        if changed or props.get("NeedDaemonReload") == "yes" or props.get("LoadState") != "loaded":
            self._must(self._systemctl(scope, "daemon-reload"), scope, "reload systemd")
            lines.append("reloaded systemd's unit files")
            props = self._show(scope, unit)
        if props.get("LoadState") != "loaded":
            flag = " --user" if scope == "user" else ""
            hint = (f"it is masked: 'systemctl{flag} unmask {unit}' if that is no longer wanted"
                    if props.get("LoadState") == "masked" else f"check 'systemd-analyze{flag} verify {path}'")
            raise DaemonkitError(f"systemd did not load {unit}", f"LoadState={props.get('LoadState')}", hint)
        if props.get("UnitFileState") != "enabled":
            self._must(self._systemctl(scope, "enable", unit), scope, f"enable {unit}")
            lines.append(f"enabled {unit}: it starts at every {'login' if scope == 'user' else 'boot'}")
        active = props.get("ActiveState") in _RUNNING_STATES
        if active and changed:
            self._start(spec, "restart")
            lines.append(f"restarted {unit} to apply the new unit")
        elif not active:
            self._start(spec, "start")
            lines.append(f"started {unit}")
        else:
            lines.append(f"{unit} is already running and up to date")
        if scope == "user":
            lines.extend(self._linger_lines(spec, try_enable=self.manage_linger))
        return lines

    def uninstall(self, spec: "Spec", home: "Home") -> list[str]:
        scope, unit = spec.scope, unit_name(spec)
        path = self.unit_path(spec)
        existing = _files.read_file(path)
        if existing is not None and not _files.is_ours(existing) and not self.ctx.force:
            raise DaemonkitError(f"refusing to remove {path}", "it was not written by daemonkit",
                                 "remove it yourself if it is no longer needed, or pass --force")
        self._require_manager(scope)
        lines: list[str] = []
        props = self._show(scope, unit)
        if props.get("ActiveState") in _RUNNING_STATES:
            result = self._systemctl(scope, "stop", unit, timeout=stop_timeout(spec) + 15)
            self._must(result, scope, f"stop {unit}")
            lines.append(f"stopped {unit}")
        if existing is not None and props.get("UnitFileState") not in ("", "disabled", None):
            self._must(self._systemctl(scope, "disable", unit), scope, f"disable {unit}")
            lines.append(f"disabled {unit}")
        unit_dir = self.unit_dir(scope)
        # A half-done uninstall can leave an enablement link to a unit file that is gone.
        wants_dirs = sorted(p for p in self._glob(unit_dir, "*.wants") + self._glob(unit_dir, "*.requires"))
        for directory in wants_dirs:
            link = directory / unit
            if link.is_symlink() and _files.remove_file(link):
                lines.append(f"removed the leftover link {link}")
        if _files.remove_file(path):
            lines.append(f"removed {path}")
        lines += [f"removed {tmp}, left by an interrupted install" for tmp in _files.remove_stale_temps(path)]
        if lines or props.get("NeedDaemonReload") == "yes":
            self._must(self._systemctl(scope, "daemon-reload"), scope, "reload systemd")
            lines.append("reloaded systemd's unit files")
        # Forget a failed state so 'systemctl --user list-units --failed' does not name a removed unit.
        self._systemctl(scope, "reset-failed", unit, timeout=QUICK)
        for directory in wants_dirs:
            _files.prune_empty_dirs(directory, unit_dir)
        if scope == "user" and "systemd_user_dir" not in self.ctx.dirs:
            home_dir = self._user_home()
            top = home_dir if unit_dir.is_relative_to(home_dir) else self._config_home()
            _files.prune_empty_dirs(unit_dir, top)
        return lines or [f"{unit} was not installed; nothing to remove"]

    def start(self, spec: "Spec", home: "Home") -> None:
        self._require_installed(spec)
        self._require_manager(spec.scope)
        self._start(spec, "start")

    def stop(self, spec: "Spec", home: "Home") -> None:
        self._require_installed(spec)
        self._require_manager(spec.scope)
        unit = unit_name(spec)
        self._must(self._systemctl(spec.scope, "stop", unit, timeout=stop_timeout(spec) + 15), spec.scope,
                   f"stop {unit}")

    def status(self, spec: "Spec", home: "Home") -> BackendStatus:
        scope, unit = spec.scope, unit_name(spec)
        status = BackendStatus(backend=self.name, installed=False)
        try:
            (artifact,) = self.render(spec, home)
        except DaemonkitError as exc:
            status.detail = exc.message
            return status
        existing = _files.read_installed(status, artifact.path, "unit file")
        if existing is None:
            return status
        status.drift.extend(unit_drift(artifact.text, existing.decode("utf-8", errors="replace")))
        try:
            self._require_manager(scope)
            props = self._show(scope, unit)
        except DaemonkitError as exc:
            status.notes.append(exc.message)
            return status
        status.evidence.append("systemctl show: " + " ".join(f"{k}={props.get(k, '')}" for k in _SHOW_PROPS[:7]))
        status.active = props.get("ActiveState") == "active"
        status.enabled = props.get("UnitFileState") in ("enabled", "enabled-runtime", "linked", "linked-runtime")
        status.detail = (f"{props.get('ActiveState')} ({props.get('SubState')}), main pid {props.get('MainPID')}, "
                         f"restarted {props.get('NRestarts', '0')} times by systemd")
        if props.get("ActiveState") == "failed":
            status.detail += f", result {props.get('Result')}, exit status {props.get('ExecMainStatus')}"
        if props.get("NeedDaemonReload") == "yes":
            status.drift.append("systemd has not loaded the current unit file (daemonkit install reloads it)")
        fragment = props.get("FragmentPath")
        if fragment and Path(fragment) != artifact.path:
            status.drift.append(f"systemd loads {unit} from {fragment}, not from {artifact.path}")
        if props.get("DropInPaths"):
            status.notes.append(f"drop-ins change {unit}: {props['DropInPaths']}")
        if scope == "user":
            status.notes.extend(self._linger_lines(spec, try_enable=False))
        return status

    # ------------------------------------------------------------------------------------- helpers

    def _require_installed(self, spec: "Spec") -> None:
        path = self.unit_path(spec)
        existing = _files.read_file(path)
        if existing is None or not _files.is_ours(existing):
            raise NotInstalledError(f"{spec.name} is not installed as a systemd unit",
                                    f"no daemonkit unit at {path}", f"run 'daemonkit install {spec.name}'")

    def _start(self, spec: "Spec", verb: str) -> None:
        scope, unit = spec.scope, unit_name(spec)
        since = time.time()
        # Type=notify: this returns when the supervisor reports READY=1, or fails with its reason.
        result = self._check_result(self._systemctl(scope, verb, unit, timeout=start_timeout(spec) + 15), scope)
        if not result.ok:
            journal = self._journal_tail(scope, unit, since=since)
            # systemctl only says "the control process exited"; the supervisor's own last words say why.
            said = [line.split(SUPERVISOR_SAYS, 1)[1] for line in journal.splitlines() if SUPERVISOR_SAYS in line]
            why = said[-1] if said else result.summary()
            raise DaemonkitError(f"{unit} did not start", why, "" if "(try:" in why else self._journal_hint(scope, unit),
                                 details=journal)

    def _must(self, result: CommandResult, scope: str, what: str) -> CommandResult:
        self._check_result(result, scope)
        if not result.ok:
            raise DaemonkitError(f"could not {what}", result.summary(),
                                 f"run '{' '.join(result.argv)}' by hand to see the whole message")
        return result

    def _write_hint(self, scope: str) -> str:
        if scope == "system":
            return "system units need root: re-run with sudo, or pass --fallback user to install it for your user only"
        return "make the directory writable by you, or remove a file of the same name that is in the way"

    @staticmethod
    def _glob(directory: Path, pattern: str) -> list[Path]:
        try:
            return [p for p in directory.glob(pattern) if p.is_dir()]
        except OSError:
            return []

    # -------------------------------------------------------------------------------------- linger

    def linger(self) -> tuple[bool | None, str]:
        """Whether the user manager outlives the user's sessions, and how we know."""
        user = self._user_name()
        linger_dir = Path(self.ctx.dirs.get("linger_dir", "/var/lib/systemd/linger"))
        if (linger_dir / user).exists():
            return True, f"{linger_dir / user} exists"
        result = self.ctx.runner.run(["loginctl", "show-user", user, "--property=Linger", "--value"],
                                     timeout=QUICK)
        if result.ok and result.stdout.strip() in ("yes", "no"):
            return result.stdout.strip() == "yes", f"loginctl: Linger={result.stdout.strip()}"
        if "not logged in or lingering" in result.stderr:
            return False, "loginctl: the user is not lingering"
        if linger_dir.is_dir():
            return False, f"{linger_dir / user} does not exist"
        return None, f"loginctl: {result.summary(120)}"

    def _linger_lines(self, spec: "Spec", *, try_enable: bool) -> list[str]:
        user = self._user_name()
        state, evidence = self.linger()
        if state:
            return [f"linger is on for {user}: {spec.name} keeps running after you log out and starts at boot"]
        if state is None:  # logind unreachable: enabling would fail the same way
            return [f"could not tell whether linger is on for {user} ({evidence}): if {spec.name} must run "
                    f"while you are logged out, run: sudo loginctl enable-linger {user}"]
        failure = ""
        if try_enable:
            result = self.ctx.runner.run(["loginctl", "--no-ask-password", "enable-linger", user], timeout=QUICK)
            if result.ok:
                return [f"enabled linger for {user}: {spec.name} keeps running after you log out and starts at boot"]
            failure = f"; enabling it failed: {result.summary(120)}"
        return [f"linger is off for {user} ({evidence}{failure}): systemd stops {spec.name} when your last "
                f"session ends and starts it again at your next login, not at boot; to keep it running: "
                f"sudo loginctl enable-linger {user}"]
