"""The ``daemonkit`` command line (argparse; heavy modules are imported only by the command that needs them).

Exit codes: 0 ok, 1 error, 2 usage (bad arguments or spec), 3 not running, 4 not installed.

Host apps mount the same commands under their own CLI with ``add_commands(subparsers, spec=SPEC)``;
then no NAME argument is taken, the app's spec is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .errors import EXIT_ERROR, EXIT_NOT_RUNNING, EXIT_OK, EXIT_USAGE, DaemonkitError

if TYPE_CHECKING:
    from .paths import Home
    from .spec import Spec

Command = Callable[[argparse.Namespace, "Target"], int]


class Target:
    """Resolves which daemon a command acts on: a fixed spec (host apps) or NAME / --spec FILE."""

    def __init__(self, spec: "Spec | None" = None, prog: str = "daemonkit") -> None:
        self.fixed = spec
        self.prog = prog

    def resolve(self, args: argparse.Namespace, *, from_file: bool = True) -> tuple["Spec", "Home"]:
        from . import api
        from .spec import load_spec

        if self.fixed is not None:
            home = api.home_for_spec(self.fixed)
            return self.fixed, home
        spec_file = getattr(args, "spec", None) if from_file else None
        if spec_file:
            spec = load_spec(spec_file)
            if args.name and args.name != spec.name:
                raise DaemonkitError(f"NAME {args.name!r} does not match the spec's name {spec.name!r}",
                                     hint=f"omit NAME or use {spec.name}")
            return spec, api.home_for_spec(spec)
        if not args.name:
            raise DaemonkitError("which daemon?", "no NAME given", f"{self.prog} {args.command} NAME (see '{self.prog} list')")
        return api.load_installed(args.name)

    def respell(self, text: str) -> str:
        """A host app's users type ``myapp gateway logs``, not ``daemonkit logs gateway`` (daemonkit may not
        even be on their PATH): rewrite the library's hints into this CLI's spelling."""
        if self.fixed is None:
            return text
        import re

        name = re.escape(self.fixed.name)
        return re.sub(rf"\bdaemonkit ([a-z][\w-]*) {name}\b", lambda m: f"{self.prog} {m.group(1)}", text)

    def cmd(self, text: str, name: str = "") -> str:
        """A follow-up command to suggest, spelled for this CLI."""
        if self.fixed is not None:
            return f"{self.prog} {text}"
        return f"{self.prog} {text} {name}".rstrip()


# ------------------------------------------------------------------------------------------ commands


def cmd_add(args: argparse.Namespace, target: Target) -> int:
    from . import api
    from .spec import Backoff, Program, Readiness, Spec

    argv = list(args.argv)
    if not argv:
        raise DaemonkitError("nothing to run", "no command after --", f"{target.prog} add {args.name} -- python3 -m myapp")
    ready = None
    for kind in ("tcp", "http", "file"):
        value = getattr(args, f"ready_{kind}")
        if value:
            ready = Readiness(kind, value, args.ready_timeout)
    if args.ready_notify:
        ready = Readiness("notify", "", args.ready_timeout)
    env = {}
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise DaemonkitError(f"bad --env {item!r}", "expected KEY=VALUE")
        env[key] = value
    program = Program(name=args.program or args.name, argv=tuple(argv), cwd=args.cwd, env=env, restart=args.restart,
                      stop_signal=args.stop_signal.upper().removeprefix("SIG"), stop_grace=args.stop_grace,
                      ready=ready, backoff=Backoff())
    spec = Spec(name=args.name, programs=(program,))
    home = api.home_of(args.name)
    if home.exists() and not args.force:
        raise DaemonkitError(f"a daemon named {args.name!r} exists already", str(home.spec_file),
                             f"{target.prog} add --force {args.name} -- ..., or {target.prog} remove {args.name}")
    api.save_spec(spec, home)
    print(f"added {args.name}: {' '.join(argv)}")
    print(f"  spec: {home.spec_file}")
    print(f"next: {target.prog} start {args.name}")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace, target: Target) -> int:
    from . import api

    for line in api.remove(args.name):
        print(line)
    return EXIT_OK


def cmd_start(args: argparse.Namespace, target: Target) -> int:
    from . import api
    from .render import render_status

    spec, home = target.resolve(args)
    result = api.start(spec, home, program=args.program, timeout=args.timeout)
    for note in result.notes:
        print(f"note: {note}")
    what = f"program {args.program} of {spec.name}" if args.program else spec.name
    print(f"started {what}" + (f" (supervisor pid {result.supervisor_pid})" if result.supervisor_pid else ""))
    if result.status is not None:
        print(render_status(result.status, color=_color()))
    return EXIT_OK


def cmd_stop(args: argparse.Namespace, target: Target) -> int:
    from . import api

    spec, home = target.resolve(args, from_file=False)
    result = api.stop(spec, home, program=args.program, timeout=args.timeout)
    for note in result.notes:
        print(f"note: {note}")
    if args.program:
        print(f"stopped program {args.program} of {spec.name}")
    elif result.was_running or result.killed:
        print(f"stopped {spec.name}")
    else:
        print(f"{spec.name} was not running")
    return EXIT_OK


def cmd_restart(args: argparse.Namespace, target: Target) -> int:
    from . import api
    from .render import render_status

    spec, home = target.resolve(args)
    if args.after_exit is not None:
        return _restart_after_exit(args, target, spec, home)
    result = api.restart(spec, home, program=args.program, timeout=args.timeout)
    print(f"restarted {args.program or spec.name}")
    if result.status is not None:
        print(render_status(result.status, color=_color()))
    return EXIT_OK


def _restart_after_exit(args: argparse.Namespace, target: Target, spec: "Spec", home: "Home") -> int:
    """For an updater that must exit before the restart: a detached watcher waits for PID, then restarts."""
    from .update import respawn_after_update

    if args.program:
        raise DaemonkitError("--after-exit restarts the whole daemon", "it cannot be combined with --program",
                             target.cmd("restart --after-exit PID", spec.name))
    result = respawn_after_update(spec, home, after_exit=args.after_exit, timeout=args.timeout)
    print(result.detail)
    for note in result.notes:
        print(f"note: {note}")
    return EXIT_OK


def cmd_respawn(args: argparse.Namespace, target: Target) -> int:
    """Internal: the detached watcher behind ``restart --after-exit`` and ``update.respawn_after_update``."""
    from .paths import Home
    from .spec import load_spec
    from .update import launch_watcher, parse_identity, run_watcher

    home = Home(os.path.abspath(args.home))
    if args.detach:
        tail = ["--home", str(home.path)]
        for flag, value in (("--expect", args.expect), ("--after-exit", args.after_exit), ("--timeout", args.timeout)):
            if value is not None:
                tail += [flag, str(value)]
        return launch_watcher(tail, home)
    spec = load_spec(home.spec_file)
    return run_watcher(spec, home, expect=parse_identity(args.expect) if args.expect else None,
                       after_exit=parse_identity(args.after_exit) if args.after_exit else None, timeout=args.timeout)


def cmd_status(args: argparse.Namespace, target: Target) -> int:
    if args.json and not args.deep and target.fixed is None and args.name and os.name == "posix":
        # Fast path for pollers: a live supervisor answers without the spec, psutil or the API layer.
        from .supervisor.fastpath import live_status

        live = live_status(args.name)
        if live is not None:
            print(json.dumps(live, sort_keys=True, separators=(",", ":")))
            return EXIT_OK
    from . import api
    from .render import render_status

    spec, home = target.resolve(args, from_file=False)
    if args.deep:
        return _status_deep(args, target, spec, home)
    result = api.status_of(spec, home)
    if args.json:
        print(json.dumps(result.to_json(), sort_keys=True, separators=(",", ":")))
    else:
        print(render_status(result, color=_color()))
    return EXIT_OK if result.running else EXIT_NOT_RUNNING


def _status_deep(args: argparse.Namespace, target: Target, spec: "Spec", home: "Home") -> int:
    from .doctor import diagnose

    report = diagnose(spec, home, budget=args.timeout, cmd=lambda verb: target.cmd(verb, spec.name))
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        from .doctor.table import render_deep

        print(render_deep(report, color=_color(), verbose=args.verbose, width=_width()))
    return report.exit_code


def _width() -> int:
    import shutil

    return max(60, min(120, shutil.get_terminal_size((100, 24)).columns))


def cmd_list(args: argparse.Namespace, target: Target) -> int:
    from . import api
    from .render import render_list

    daemons = api.list_daemons()
    if args.json:
        print(json.dumps([d.to_json() for d in daemons], indent=2, sort_keys=True))
    else:
        print(render_list(daemons))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, target: Target) -> int:
    from .logview import show_logs

    spec, home = target.resolve(args, from_file=False)
    return show_logs(spec, home, lines=args.lines, follow=args.follow, program=args.program,
                     stream=args.stream, events=args.events, as_json=args.json, since=args.since)


def cmd_run(args: argparse.Namespace, target: Target) -> int:
    """Run the supervisor in the foreground (Ctrl-C stops it and its programs)."""
    from . import api
    from .supervisor.engine import run_supervisor

    spec, home = target.resolve(args)
    home = api.save_spec(spec, home)
    print(f"running {spec.name} in the foreground (home {home.path}); Ctrl-C to stop", file=sys.stderr)
    return run_supervisor(spec, home, backend="foreground")


def cmd_supervise(args: argparse.Namespace, target: Target) -> int:
    """Internal: what service managers and detached spawns run (``python -m daemonkit supervise`` takes
    the lean path in ``supervisor/entry.py`` without coming through here; both run the same code)."""
    from .supervisor.entry import supervise

    return supervise(args.home, args.backend)


def cmd_install(args: argparse.Namespace, target: Target) -> int:
    from . import api

    spec, _home = target.resolve(args)
    result = api.install(spec, backend=args.backend, fallback=args.fallback, force=args.force)
    print(f"installing {result.name} with {result.backend} ({result.scope} scope): {result.reason}")
    for line in result.lines:
        print(f"  {line}")
    for note in result.notes:
        print(f"note: {note}")
    if result.status is not None:
        from .render import render_status

        print(render_status(result.status, color=_color()))
    print(f"next: {target.cmd('status', result.name)} --deep")
    return EXIT_OK


def cmd_uninstall(args: argparse.Namespace, target: Target) -> int:
    from . import api

    spec, home = target.resolve(args, from_file=False)
    for line in api.uninstall(spec, home, force=args.force):
        print(line)
    print(f"uninstalled {spec.name}; its spec and logs stay in {home.path}"
          + ("" if target.fixed is not None else f" ('{target.prog} remove {spec.name}' deletes them)"))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, target: Target) -> int:
    from .demo import run_demo

    return run_demo(port=args.port, color=_color())


# ------------------------------------------------------------------------------------------ parser


def _name_arg(parser: argparse.ArgumentParser, target: Target, *, optional: bool = False, spec_file: bool = False) -> None:
    if target.fixed is not None:
        parser.set_defaults(name=None, spec=None)
        return
    parser.add_argument("name", metavar="NAME", nargs="?" if (optional or spec_file) else None,
                        help="the daemon's name (see 'list')")
    if spec_file:
        parser.add_argument("--spec", metavar="FILE", help="a TOML spec file (copied into the daemon's home)")


def add_commands(subparsers: Any, spec: "Spec | None" = None, *, prog: str = "daemonkit") -> Target:
    """Add daemonkit's commands to an argparse ``subparsers`` object.

    With ``spec`` (host apps) the commands act on that spec and take no NAME. Dispatch with
    ``daemonkit.cli.dispatch(args)`` after parsing.
    """
    target = Target(spec, prog)

    def sub(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p = subparsers.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_daemonkit_func=func, _daemonkit_target=target, command=name)
        return p

    def prog_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--program", "-p", metavar="PROGRAM", help="act on one program of the daemon")

    def timeout_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--timeout", type=float, metavar="SECONDS", help="how long to wait (default: from the spec)")

    if spec is None:
        p = sub("add", cmd_add, "write a one-program spec (like 'pm2 start'): add NAME [OPTIONS] -- CMD [ARGS...]")
        p.add_argument("name", metavar="NAME")
        p.set_defaults(argv=[])  # filled by main() from everything after "--"
        p.add_argument("--program", help="program name (default: NAME)")
        p.add_argument("--cwd")
        p.add_argument("--env", action="append", metavar="KEY=VALUE")
        p.add_argument("--restart", choices=("always", "on-failure", "never"), default="on-failure")
        p.add_argument("--stop-signal", default="TERM")
        p.add_argument("--stop-grace", type=float, default=10.0)
        p.add_argument("--ready-tcp", metavar="HOST:PORT")
        p.add_argument("--ready-http", metavar="URL")
        p.add_argument("--ready-file", metavar="PATH")
        p.add_argument("--ready-notify", action="store_true", help="the program sends READY=1 to $NOTIFY_SOCKET")
        p.add_argument("--ready-timeout", type=float, default=30.0)
        p.add_argument("--force", action="store_true", help="replace an existing spec of that name")

        p = sub("remove", cmd_remove, "stop a daemon and delete its home (spec, records, logs)")
        p.add_argument("name", metavar="NAME")

    p = sub("start", cmd_start, "start the daemon and wait until its programs are ready")
    _name_arg(p, target, spec_file=True)
    prog_arg(p)
    timeout_arg(p)

    p = sub("stop", cmd_stop, "stop the daemon (or one program) gracefully")
    _name_arg(p, target)
    prog_arg(p)
    timeout_arg(p)

    p = sub("restart", cmd_restart, "restart the daemon (or one program)")
    _name_arg(p, target, spec_file=True)
    prog_arg(p)
    timeout_arg(p)
    p.add_argument("--after-exit", type=int, metavar="PID",
                   help="for an updater that must exit first: return at once; a detached watcher waits for PID "
                        "to exit, then restarts the daemon if it is still running (log: logs/respawn.log)")

    p = sub("status", cmd_status, "show state (exit 3 when not running)")
    _name_arg(p, target)
    p.add_argument("--json", action="store_true",
                   help="machine-readable output (schema daemonkit.status/1; with --deep daemonkit.status-deep/1, "
                        "see docs/status-schema.json)")
    p.add_argument("--deep", action="store_true",
                   help="numbered PASS/FAIL/WARN/SKIP probes of every signal, each FAIL with its fix")
    p.add_argument("--verbose", "-v", action="store_true", help="with --deep: the evidence of every probe")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="with --deep: how long to wait for the service manager and health checks (default 5)")

    p = sub("logs", cmd_logs, "show program output and the lifecycle events")
    _name_arg(p, target)
    prog_arg(p)
    p.add_argument("-n", "--lines", type=int, default=None, metavar="N",
                   help="the last N lines (default 20; all of them with --since), across rotated files")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (survives rotation)")
    p.add_argument("--since", metavar="WHEN",
                   help="only newer than WHEN: 90s, 10m, 2h, 1d, an ISO date/time, or Unix seconds")
    p.add_argument("--stream", choices=("out", "err", "both"), default="both")
    p.add_argument("--events", action="store_true", help="the lifecycle ledger instead of program output")
    p.add_argument("--json", action="store_true", help="one JSON object a line")

    p = sub("install", cmd_install, "register with the OS service manager: start at login/boot, restart if killed")
    _name_arg(p, target, spec_file=True)
    p.add_argument("--backend", help="force a backend (systemd, launchd, schtasks, startup, winservice, detached)")
    p.add_argument("--fallback", choices=("user",), help="system scope without admin rights: install for this user")
    p.add_argument("--force", action="store_true", help="replace a foreign registration of the same name")

    p = sub("uninstall", cmd_uninstall, "stop the daemon and remove its OS registration")
    _name_arg(p, target)
    p.add_argument("--force", action="store_true", help="also remove a registration daemonkit did not write")

    p = sub("run", cmd_run, "run the supervisor in the foreground")
    _name_arg(p, target, spec_file=True)

    if spec is None:
        p = sub("list", cmd_list, "list daemons and their state")
        p.add_argument("--json", action="store_true")

        p = sub("demo", cmd_demo, "start the bundled demo gateway and show what daemonkit does")
        p.add_argument("--port", type=int, default=0, help="port for the demo (default: a free one)")

        p = subparsers.add_parser("respawn", help=argparse.SUPPRESS)
        p.set_defaults(_daemonkit_func=cmd_respawn, _daemonkit_target=target, command="respawn")
        p.add_argument("--home", required=True)
        p.add_argument("--detach", action="store_true")
        p.add_argument("--expect", metavar="PID:CREATE_TIME")
        p.add_argument("--after-exit", metavar="PID[:CREATE_TIME]")
        p.add_argument("--timeout", type=float)

        p = subparsers.add_parser("supervise", help=argparse.SUPPRESS)
        p.set_defaults(_daemonkit_func=cmd_supervise, _daemonkit_target=target, command="supervise")
        p.add_argument("--home", required=True)
        p.add_argument("--backend")
    return target


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="daemonkit",
        description="Keep background programs alive: start at login, stop, restart, diagnose.",
        epilog="exit codes: 0 ok, 1 error, 2 usage, 3 not running, 4 not installed",
    )
    parser.add_argument("--version", action="version", version=f"daemonkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_commands(subparsers)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    """Run the command chosen by ``args``; turns DaemonkitErrors into one clear line and an exit code."""
    func: Command | None = getattr(args, "_daemonkit_func", None)
    if func is None:
        return EXIT_USAGE
    try:
        return func(args, args._daemonkit_target)
    except DaemonkitError as exc:
        return exc.report(args._daemonkit_target.respell(exc.message))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`status --deep | head`, `logs -f | grep -m1`): that is not an error.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is the program's command line, verbatim (argparse would mix
    # the program's own options with ours).
    tail: list[str] | None = None
    if "--" in words:
        cut = words.index("--")
        words, tail = words[:cut], words[cut + 1:]
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if tail is not None:
        if args.command != "add":
            parser.error(f"'--' is only used by 'add' (got: -- {' '.join(tail)})")
        args.argv = tail
    return dispatch(args)


def run_command(argv: Sequence[str], spec: "Spec | None" = None, *, prog: str = "daemonkit") -> int:
    """Parse and run one daemonkit command line, e.g. ``run_command(["status", "--json"], spec=SPEC,
    prog="myapp gateway")``: what a host app's own CLI (or the click adapter) forwards to."""
    if spec is None:
        return main(argv)
    parser = argparse.ArgumentParser(prog=prog, description=f"manage the {spec.name} daemon")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_commands(subparsers, spec=spec, prog=prog)
    args = parser.parse_args(list(argv))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return dispatch(args)


def _color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


__all__ = ["add_commands", "build_parser", "dispatch", "main", "run_command", "EXIT_ERROR", "EXIT_NOT_RUNNING"]
