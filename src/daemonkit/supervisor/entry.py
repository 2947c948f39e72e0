"""``python -m daemonkit supervise --home HOME [--backend NAME]``: what service managers run.

The supervisor lives as long as the daemon, so every module it imports is memory it keeps (see the
Memory section of docs/benchmarks.md). This entry therefore takes the two options by hand instead of
through ``cli.py`` (argparse, gettext and every command's imports); anything it does not recognise
(``--help``, a typo) goes to the full CLI, which answers as it always did. ``cli.cmd_supervise`` runs
the same ``supervise()``, so both paths behave alike.
"""

from __future__ import annotations

import os
import sys

from ..errors import AlreadyRunningError, DaemonkitError


def supervise(home_dir: str, backend: str | None) -> int:
    """Run the supervisor of the home at ``home_dir`` until it is shut down; returns its exit code.

    ``AlreadyRunningError`` propagates (exit 1 from the caller); any other ``DaemonkitError`` is a bad
    spec or a home that blocks the supervisor: printed, and answered with EX_CONFIG so that the service
    manager does not restart it into the same error."""
    from ..paths import Home, check_private_file
    from ..spec import load_spec
    from .engine import run_supervisor

    backend = backend or os.environ.get("DAEMONKIT_BACKEND", "detached")
    try:
        home = Home(os.path.abspath(home_dir)).ensure()
        check_private_file(home.spec_file)
        spec = load_spec(home.spec_file, cache=home.spec_cache)
        return run_supervisor(spec, home, backend=backend)
    except AlreadyRunningError:
        raise
    except DaemonkitError as exc:
        print(f"daemonkit supervise: {exc.message}", file=sys.stderr)
        return config_error_exit(backend)


def config_error_exit(backend: str) -> int:
    """EX_CONFIG (78): systemd's RestartPreventExitStatus=78 keeps the supervisor down until the next
    explicit start. launchd can only spare a *successful* exit (KeepAlive SuccessfulExit=false), so
    under launchd the same decision is spelled exit 0."""
    return 0 if backend == "launchd" else 78


def parse(words: list[str]) -> tuple[str, str | None] | None:
    """``supervise --home H [--backend B]`` (also ``--opt=value``) as (home, backend); None for
    anything else, which the full CLI then parses (and explains)."""
    if not words or words[0] != "supervise":
        return None
    found: dict[str, str] = {}
    rest = words[1:]
    while rest:
        word = rest.pop(0)
        name, eq, value = word.partition("=")
        if name not in ("--home", "--backend"):
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
            if value.startswith("-"):
                return None  # argparse would not take it as the value either
        found[name] = value
    if "--home" not in found:
        return None
    return found["--home"], found.get("--backend")


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parsed = parse(words)
    if parsed is None:
        from ..cli import main as cli_main

        return cli_main(words)
    # The same answers as cli.dispatch gives to the same failures.
    try:
        return supervise(*parsed)
    except DaemonkitError as exc:
        return exc.report()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
