"""Task Scheduler backend (Windows, user scope, preferred): a logon task that runs the supervisor.

The task (XML rendered from the spec, written UTF-16, registered with ``schtasks /Create /XML /TN /F``;
``/Change`` is never used: it silently keeps stale settings) encodes what the Windows lessons taught:

- ``LogonTrigger`` for this user, ``InteractiveToken`` + ``LeastPrivilege``: no password stored, no
  elevation, runs in the user's session;
- the action is the supervisor itself through ``pythonw.exe`` (no console, so no window flashes) in the
  foreground: its real exit code reaches Task Scheduler, so ``RestartOnFailure`` fires when it dies
  (a launcher that exits 0 at once would hide every crash);
- ``ExecutionTimeLimit PT0S`` (the default kills after 72 h), no stop or refusal on battery,
  ``StartWhenAvailable``, ``MultipleInstancesPolicy IgnoreNew`` (never two supervisors; the supervisor
  lock enforces it too);
- ``schtasks`` calls have timeouts (it can hang) and output is decoded from the OEM code page
  (``SubprocessRunner``); messages are localized, so decisions use exit codes, never English text.

When the task cannot be registered (access denied by policy, Task Scheduler service off, a timeout),
``install`` falls back to the Startup folder and says why; ``status`` and ``uninstall`` handle
whichever autostart exists, and there is never more than one.

Exit-code contract: Task Scheduler cannot skip restarts for one exit code, so a supervisor exiting 78
(configuration error) is restarted every ``RESTART_INTERVAL`` up to ``RESTART_COUNT`` times.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from ..errors import DaemonkitError
from . import _files
from .base import Artifact, Availability, BackendContext, BackendStatus, supervisor_argv
from .startup import StartupBackend, windowless, write_outside_then_move

if TYPE_CHECKING:
    from ..paths import Home
    from ..spec import Spec

SCHTASKS_TIMEOUT = 20.0
RESTART_INTERVAL = "PT1M"  # Task Scheduler's minimum
RESTART_COUNT = 999  # its maximum
TASK_NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def schtasks_exe(ctx: BackendContext) -> str:
    root = next((v for k, v in ctx.env.items() if k.upper() == "SYSTEMROOT"), "C:\\Windows")
    return f"{root}\\System32\\schtasks.exe"


def user_id(ctx: BackendContext) -> str:
    env = {k.upper(): v for k, v in ctx.env.items()}
    user = env.get("USERNAME", "")
    if not user:
        raise DaemonkitError("cannot tell which user the logon task is for", "USERNAME is not set",
                             "run daemonkit from your own logon session")
    domain = env.get("USERDOMAIN", "")
    return f"{domain}\\{user}" if domain else user


def task_name(spec: "Spec", ctx: BackendContext) -> str:
    """Unique per app, daemon and user: tasks live in one machine-wide namespace."""
    user = {k.upper(): v for k, v in ctx.env.items()}.get("USERNAME", "user")
    return _UNSAFE.sub("_", f"{spec.app}-{spec.name}-{user}")


def task_arguments(argv: list[str]) -> str:
    """``<Arguments>``: read by the interpreter's C runtime, so list2cmdline rules, nothing for cmd."""
    from ..proc.cmdline import command_line

    return command_line(["x.exe", *argv]).line[len("x.exe "):]


def render_task_xml(spec: "Spec", home: "Home", python: str, user: str) -> str:
    argv = supervisor_argv(home, python) + ["--backend", "schtasks"]
    fields = {
        "description": escape(f"{_files.MARKER}: supervisor of {spec.name} ('daemonkit uninstall {spec.name}' "
                              "removes this task)"),
        "user": escape(user), "command": escape(argv[0]), "arguments": escape(task_arguments(argv[1:])),
        "cwd": escape(str(home.path)), "interval": RESTART_INTERVAL, "count": RESTART_COUNT, "ns": TASK_NS,
    }
    return """<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="{ns}">
  <RegistrationInfo>
    <Description>{description}</Description>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
      <UserId>{user}</UserId>
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{user}</UserId>
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <WakeToRun>false</WakeToRun>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>7</Priority>
    <RestartOnFailure>
      <Interval>{interval}</Interval>
      <Count>{count}</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{command}</Command>
      <Arguments>{arguments}</Arguments>
      <WorkingDirectory>{cwd}</WorkingDirectory>
    </Exec>
  </Actions>
</Task>
""".format(**fields).replace("\n", "\r\n")


def encode_task_xml(text: str) -> bytes:
    """UTF-16 LE with a BOM, as the XML declaration says and schtasks /XML expects."""
    return b"\xff\xfe" + text.encode("utf-16-le")


class SchtasksBackend:
    name = "schtasks"

    def __init__(self, ctx: BackendContext | None = None, *, spawner: Any = None) -> None:
        self.ctx = ctx if ctx is not None else BackendContext()
        self.startup = StartupBackend(self.ctx, spawner=spawner)  # the fallback

    def _run(self, *args: str):  # type: ignore[no-untyped-def]
        return self.ctx.runner.run([schtasks_exe(self.ctx), *args], timeout=SCHTASKS_TIMEOUT)

    def xml_path(self, home: "Home") -> Path:
        return home.path / "task.xml"

    def available(self, scope: str = "user") -> Availability:
        if scope != "user":
            return Availability(False, "a logon task runs in a user's session; system scope uses winservice")
        if sys.platform != "win32" and "schtasks" not in self.ctx.dirs:
            return Availability(False, "not Windows")
        return Availability(True, "a logon task in Task Scheduler starts it at logon and restarts it on failure")

    def render(self, spec: "Spec", home: "Home") -> list[Artifact]:
        xml = render_task_xml(spec, home, windowless(self.ctx.python), user_id(self.ctx))
        return [Artifact(self.xml_path(home), encode_task_xml(xml), 0o600)]

    def install(self, spec: "Spec", home: "Home") -> list[str]:
        if spec.scope != "user":
            raise DaemonkitError(f"cannot install {spec.name} as a logon task", "it is a system-scope daemon",
                                 "use --backend winservice (elevated) for system scope")
        lines: list[str] = []
        (artifact,) = self.render(spec, home)
        write_outside_then_move(artifact, home.path)
        name = task_name(spec, self.ctx)
        created = self._run("/Create", "/TN", name, "/XML", str(artifact.path), "/F")
        if created.ok:
            lines.append(f"registered the logon task {name} (Task Scheduler)")
            if self._startup_exists(spec):  # exactly one autostart
                lines += self.startup.uninstall(spec, home)
            self.start(spec, home)  # now, through Task Scheduler (the caller waits until it is ready)
            lines.append(f"{spec.name} starts at each logon and is restarted by Task Scheduler if it fails; "
                         "started it now")
            return lines
        why = created.summary()
        lines.append(f"could not register the logon task {name} ({why}); using your Startup folder instead "
                     "(starts at logon; nothing restarts the supervisor itself if it is killed)")
        lines += self.startup.install(spec, home)
        return lines

    def _startup_exists(self, spec: "Spec") -> bool:
        try:
            return self.startup.launcher_path(spec).exists()
        except DaemonkitError:
            return False

    def uninstall(self, spec: "Spec", home: "Home") -> list[str]:
        lines: list[str] = []
        name = task_name(spec, self.ctx)
        if self._run("/Query", "/TN", name).ok:
            self._end(spec, home)
            deleted = self._run("/Delete", "/TN", name, "/F")
            if not deleted.ok:
                raise DaemonkitError(f"cannot remove the logon task {name}", deleted.summary(),
                                     f"remove it in Task Scheduler, or run: schtasks /Delete /TN {name} /F")
            lines.append(f"removed the logon task {name}")
        if self._startup_exists(spec):
            lines += self.startup.uninstall(spec, home)
        if _files.remove_file(self.xml_path(home)):
            lines.append(f"removed {self.xml_path(home)}")
        return lines or [f"no logon task {name} and no Startup item: nothing to remove"]

    def start(self, spec: "Spec", home: "Home") -> None:
        name = task_name(spec, self.ctx)
        if not self._run("/Query", "/TN", name).ok:
            if self._startup_exists(spec):
                self.startup.start(spec, home)
                return
            raise DaemonkitError(f"{spec.name} has no logon task", f"schtasks does not know {name}",
                                 f"daemonkit install {spec.name}")
        ran = self._run("/Run", "/TN", name)
        if not ran.ok:
            raise DaemonkitError(f"Task Scheduler did not start {spec.name}", ran.summary(),
                                 f"daemonkit status {spec.name} --deep")

    def stop(self, spec: "Spec", home: "Home") -> None:
        """A graceful stop through the supervisor's control channel first (so programs drain), then
        ``/End`` in case Task Scheduler still counts the task as running."""
        from .. import api

        api.stop_supervisor(spec, home)
        self._end(spec, home)

    def _end(self, spec: "Spec", home: "Home") -> None:
        self._run("/End", "/TN", task_name(spec, self.ctx))

    def status(self, spec: "Spec", home: "Home") -> BackendStatus:
        from ..store.lock import probe_lock

        name = task_name(spec, self.ctx)
        query = self._run("/Query", "/TN", name, "/XML", "ONE")
        active = probe_lock(home.lock_file).held
        if not query.ok:
            if self._startup_exists(spec):
                status = self.startup.status(spec, home)
                status.notes.append(f"the logon task {name} is not registered; the Startup item is the autostart")
                return status
            return BackendStatus(self.name, installed=False, active=active, enabled=False,
                                 detail=f"no logon task {name} ({query.summary()})")
        (artifact,) = self.render(spec, home)
        drift = task_drift(artifact.text, query.stdout)
        notes = []
        if self._startup_exists(spec):
            notes.append("a Startup item exists next to the logon task: two autostarts; 'daemonkit install' "
                         "removes the Startup item")
        return BackendStatus(self.name, installed=True, active=active, enabled=True, drift=drift,
                             detail=f"logon task {name}", evidence=[query.summary(120)], notes=notes)


_CHECKED = ("Command", "Arguments", "WorkingDirectory", "ExecutionTimeLimit", "MultipleInstancesPolicy",
            "DisallowStartIfOnBatteries", "StopIfGoingOnBatteries", "LogonType", "RunLevel", "Interval", "Count")


def task_drift(expected_xml: str, registered_xml: str) -> list[str]:
    """Differences in the elements that matter between our XML and what Task Scheduler holds."""
    import xml.etree.ElementTree as ET

    def values(text: str) -> dict[str, str]:
        body = text[text.find("<Task"):] if "<Task" in text else text
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return {}
        return {el.tag.split("}")[-1]: (el.text or "").strip() for el in root.iter()
                if el.tag.split("}")[-1] in _CHECKED}

    want, have = values(expected_xml), values(registered_xml)
    if not have:
        return ["the registered task's XML cannot be read"]
    return [f"{key}: registered {have.get(key, '(missing)')!r}, daemonkit wants {value!r}"
            for key, value in want.items() if have.get(key) != value]
