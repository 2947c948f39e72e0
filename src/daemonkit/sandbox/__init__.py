"""A sandbox that keeps code under test off the real machine: homes, autostart places, service managers.

The origin app's tests wrote to the real Windows Startup folder because one test forgot to stub
``is_windows()``. A sandbox removes the need to remember: while it is active

* ``HOME``/``USERPROFILE``, every ``XDG_*`` base dir, ``APPDATA``/``LOCALAPPDATA``/``PROGRAMDATA`` (on every
  OS, so simulated-Windows tests are covered too), platformdirs' Windows overrides and ``DAEMONKIT_HOME``
  point into the sandbox; the user bus address is removed;
* ``daemonkit.backends.default_context()`` returns a context whose runner only *records* commands and
  whose unit/plist/task/Startup directories live in the sandbox, and where no systemd is booted, so the
  chooser falls back to the (real, detached) supervisor unless a test models a manager;
* an audit hook (``daemonkit.sandbox.guard``) refuses, in this process, writes into the real home and the
  real autostart/service locations and any spawn of ``systemctl``, ``launchctl``, ``schtasks``, ``sc``,
  ``reg`` or ``loginctl``;
* on POSIX, shims of those tools come first on ``PATH``, so a *subprocess* (``python -m daemonkit install``)
  that calls one is refused and recorded too.

``check()`` raises with every refusal, including ones the code under test caught and ignored.
``daemonkit.testing`` is the pytest face of this; it works without pytest too::

    with Sandbox.create(tmpdir) as sandbox:
        ...  # run the code
    sandbox.check()
"""

from __future__ import annotations

import json
import os
import shlex
import site
import stat
import sys
import sysconfig
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from . import guard
from .guard import BLOCKED_TOOLS, Policy, SandboxViolation

__all__ = ["Sandbox", "SandboxViolation", "default_allowed", "protected_locations", "BLOCKED_TOOLS"]

_REFUSED_LOG = "refused-commands.jsonl"
_SHIM_MAIN = '''\
"""daemonkit sandbox shim: a test tried to run a real service-manager tool; record it and refuse."""
import json, os, sys
entry = {"tool": sys.argv[1], "argv": sys.argv[1:], "cwd": os.getcwd(), "pid": os.getpid(), "ppid": os.getppid()}
with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), %(log)r), "a") as f:
    f.write(json.dumps(entry) + "\\n")
sys.stderr.write("daemonkit sandbox: refused to run the real %%s inside a test sandbox\\n" %% sys.argv[1])
sys.exit(1)
'''


def protected_locations(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[Path]:
    """The real places a test must never write: the user's home and every autostart/service location
    daemonkit (or a host app) could register in, on any OS. Computed from the *real* environment."""
    env = os.environ if env is None else env
    home = Path(home or env.get("HOME") or env.get("USERPROFILE") or Path.home())
    places = [home, home / ".config" / "systemd", home / ".config" / "autostart", home / "Library" / "LaunchAgents"]
    if env.get("XDG_CONFIG_HOME"):
        places += [Path(env["XDG_CONFIG_HOME"]) / "systemd", Path(env["XDG_CONFIG_HOME"]) / "autostart"]
    if env.get("DAEMONKIT_HOME"):
        places.append(Path(env["DAEMONKIT_HOME"]))
    if sys.platform == "win32":
        for key, tail in (("APPDATA", r"Microsoft\Windows\Start Menu\Programs\Startup"),
                          ("PROGRAMDATA", r"Microsoft\Windows\Start Menu\Programs\StartUp"),
                          ("SYSTEMROOT", r"System32\Tasks"), ("PROGRAMDATA", "daemonkit"),
                          ("LOCALAPPDATA", "daemonkit")):
            if env.get(key):
                places.append(Path(env[key]) / tail)
    else:
        places += [Path(p) for p in (
            "/etc/systemd", "/lib/systemd", "/usr/lib/systemd", "/var/lib/systemd", "/etc/xdg/autostart",
            "/etc/init.d", "/etc/cron.d", "/var/spool/cron", "/var/lib/daemonkit",
            "/Library/LaunchAgents", "/Library/LaunchDaemons", "/Library/Application Support/daemonkit",
        )]
    return places


def default_allowed(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Real places a sandboxed process may still write: the temp dir and Python's own directories
    (bytecode caches; a pyenv or venv often sits inside the home), plus ``extra``."""
    return [Path(tempfile.gettempdir()), *_interpreter_dirs(), *map(Path, extra)]


def _interpreter_dirs() -> list[Path]:
    """Where Python itself may write (bytecode caches), e.g. a pyenv or venv inside the home."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values()}
    try:
        dirs.add(site.getusersitepackages())
    except AttributeError:  # site disabled
        pass
    return [Path(d) for d in dirs if d]


@dataclass
class Sandbox:
    """One sandbox under ``root``. Build it with ``Sandbox.create``; use it as a context manager or call
    ``activate()``/``deactivate()``."""

    root: Path
    policy: Policy
    runner: Any  # daemonkit.backends.base.RecordingRunner
    _saved_env: dict[str, str | None] = field(default_factory=dict)
    _saved_context: Any = None
    _active: bool = False

    # ------------------------------------------------------------------------------------ building

    @classmethod
    def create(cls, root: str | os.PathLike[str], *, allow: Iterable[str | os.PathLike[str]] = (),
               protect: Iterable[str | os.PathLike[str]] = (), real_env: Mapping[str, str] | None = None,
               label: str = "daemonkit sandbox") -> "Sandbox":
        """Prepare a sandbox in the empty or new directory ``root``. ``allow``: extra real places that may
        be written (e.g. the checkout for bytecode); ``protect``: extra places that may not."""
        from ..backends.base import RecordingRunner

        root = Path(root).absolute()
        root.mkdir(parents=True, exist_ok=True)
        forbidden = [*protected_locations(real_env), *map(Path, protect)]
        allowed = default_allowed([root, *allow])
        policy = Policy(forbidden=forbidden, allowed=allowed, label=label)
        return cls(root=root, policy=policy, runner=RecordingRunner())

    # ------------------------------------------------------------------------------------ places

    @property
    def home(self) -> Path:
        """The relocated ``HOME`` (and ``USERPROFILE``)."""
        return self.root / "home"

    @property
    def daemonkit_home(self) -> Path:
        """The relocated ``DAEMONKIT_HOME``: every daemon's home is a directory below it."""
        return self.root / "daemonkit"

    @property
    def appdata(self) -> Path:
        return self.home / "AppData" / "Roaming"

    @property
    def localappdata(self) -> Path:
        return self.home / "AppData" / "Local"

    @property
    def programdata(self) -> Path:
        return self.root / "ProgramData"

    @property
    def startup_dir(self) -> Path:
        """The relocated per-user Windows Startup folder."""
        return self.appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    def dirs(self) -> dict[str, Path]:
        """Backend directory overrides (``BackendContext.dirs``), all inside the sandbox."""
        return {
            "systemd_user_dir": self.home / ".config" / "systemd" / "user",
            "systemd_system_dir": self.root / "etc" / "systemd" / "system",
            "linger_dir": self.root / "var" / "lib" / "systemd" / "linger",
            # Absent unless a test creates it: the sandbox has no booted systemd.
            "sd_booted": self.root / "run" / "systemd" / "system",
            "launch_agents_dir": self.home / "Library" / "LaunchAgents",
            "launch_daemons_dir": self.root / "Library" / "LaunchDaemons",
            "startup_dir": self.startup_dir,
            "common_startup_dir": self.programdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "StartUp",
            "tasks_dir": self.root / "Windows" / "System32" / "Tasks",
        }

    def environ(self) -> dict[str, str | None]:
        """The variables the sandbox sets (None: removed)."""
        home = str(self.home)
        env: dict[str, str | None] = {
            "HOME": home, "USERPROFILE": home,
            "XDG_CONFIG_HOME": str(self.home / ".config"), "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_STATE_HOME": str(self.home / ".local" / "state"), "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_RUNTIME_DIR": str(self.root / "run" / "user"),
            "APPDATA": str(self.appdata), "LOCALAPPDATA": str(self.localappdata),
            "PROGRAMDATA": str(self.programdata),
            # platformdirs >= 4.4 on Windows asks the shell, not the environment, unless these are set.
            "WIN_PD_OVERRIDE_APPDATA": str(self.appdata), "WIN_PD_OVERRIDE_LOCAL_APPDATA": str(self.localappdata),
            "WIN_PD_OVERRIDE_COMMON_APPDATA": str(self.programdata),
            "DAEMONKIT_HOME": str(self.daemonkit_home), "DAEMONKIT_SANDBOX": str(self.root),
            "DBUS_SESSION_BUS_ADDRESS": None,
        }
        if os.name == "posix":
            env["PATH"] = os.pathsep.join([str(self.bin_dir), os.environ.get("PATH", os.defpath)])
        return env

    def context(self, **overrides: Any) -> Any:
        """A ``BackendContext`` with the recording runner, the sandbox's directories and environment."""
        from ..backends.base import BackendContext

        env = {k: v for k, v in os.environ.items()}
        env.update({k: v for k, v in self.environ().items() if v is not None})
        for key, value in self.environ().items():
            if value is None:
                env.pop(key, None)
        fields: dict[str, Any] = {"runner": self.runner, "python": sys.executable, "dirs": self.dirs(), "env": env}
        fields.update(overrides)
        return BackendContext(**fields)

    # ------------------------------------------------------------------------------------ lifecycle

    def activate(self) -> "Sandbox":
        if self._active:
            return self
        with guard.paused():
            self._make_tree()
        for key, value in self.environ().items():
            self._saved_env[key] = os.environ.get(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        import daemonkit.backends as backends

        # default_context() consults this hook, so even a `from daemonkit.backends import default_context`
        # made before the sandbox started gets the recording context.
        self._saved_context = backends.context_override
        backends.context_override = self.context
        guard.push(self.policy)
        self._active = True
        return self

    def deactivate(self) -> None:
        if not self._active:
            return
        guard.pop(self.policy)
        import daemonkit.backends as backends

        backends.context_override = self._saved_context
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        self._active = False

    def __enter__(self) -> "Sandbox":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_daemons()
        finally:
            self.deactivate()

    def _make_tree(self) -> None:
        for directory in (self.home, self.daemonkit_home, self.appdata, self.localappdata, self.programdata,
                          self.root / "run" / "user"):
            directory.mkdir(parents=True, exist_ok=True)
        (self.root / "run" / "user").chmod(0o700)
        if os.name == "posix":
            self._write_shims()

    def _write_shims(self) -> None:
        self.bin_dir.mkdir(exist_ok=True)
        main = self.bin_dir / "_refuse.py"
        main.write_text(_SHIM_MAIN % {"log": _REFUSED_LOG})
        python = shlex.quote(sys.executable)
        for tool in sorted(BLOCKED_TOOLS):
            shim = self.bin_dir / tool
            shim.write_text(f"#!/bin/sh\nexec {python} {shlex.quote(str(main))} {tool} \"$@\"\n")
            shim.chmod(stat.S_IRWXU)

    # ------------------------------------------------------------------------------------ results

    @property
    def commands(self) -> list[tuple[str, ...]]:
        """The commands backends ran through the recording runner (in this process)."""
        return list(self.runner.calls)

    def refused_commands(self) -> list[dict[str, Any]]:
        """Service-manager tools that subprocesses tried to run (caught by the PATH shims)."""
        try:
            lines = (self.root / _REFUSED_LOG).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def violations(self) -> list[str]:
        """Every refusal: in this process (audit hook) and in subprocesses (shims)."""
        found = list(self.policy.violations)
        for entry in self.refused_commands():
            found.append(f"{self.policy.label}: refused: a subprocess (pid {entry['ppid']}) ran the real "
                         f"{entry['tool']!r} ({' '.join(entry['argv'])})")
        return found

    @contextmanager
    def expect_refusal(self) -> Iterator[list[str]]:
        """For tests of code that must be refused (a guard test, a "never calls systemctl" test): the block
        must be refused at least once, in this process or by a subprocess; those refusals are swallowed,
        not held against the test, and yielded as a list of messages."""
        policy = guard.active() or self.policy
        log = self.root / _REFUSED_LOG
        before_log = len(self.refused_commands())
        caught: list[str] = []
        try:
            with guard.collect_refusals(policy, caught):
                yield caught
        finally:
            entries = self.refused_commands()
            caught.extend(f"a subprocess ran the real {e['tool']!r} ({' '.join(e['argv'])})"
                          for e in entries[before_log:])
            if len(entries) > before_log:
                log.write_text("".join(json.dumps(e) + "\n" for e in entries[:before_log]))
        if not caught:
            raise AssertionError("expected the daemonkit sandbox to refuse something in this block; nothing was")

    def check(self) -> None:
        """Raise ``SandboxViolation`` listing every refusal, also those the code under test swallowed."""
        found = self.violations()
        if found:
            raise SandboxViolation("the code under test tried to touch the real machine:\n  " + "\n  ".join(found))

    def stop_daemons(self, timeout: float = 10.0) -> list[str]:
        """Stop every daemon that has a home in the sandbox (nothing a test starts may outlive it)."""
        try:
            homes = [p for p in self.daemonkit_home.iterdir() if (p / "spec.toml").exists()]
        except OSError:
            return []
        if not homes:
            return []
        from .. import api
        from ..errors import DaemonkitError
        from ..paths import Home
        from ..spec import load_spec

        stopped = []
        for path in homes:
            home = Home(path)
            try:
                result = api.stop(load_spec(home.spec_file), home, timeout=timeout)
            except DaemonkitError:
                continue
            if result.was_running or result.killed:
                stopped.append(home.name)
        return stopped
