"""chatgateway's command line. `chatgateway gateway ...` is daemonkit's commands, mounted for our daemon."""

import argparse
import os
import sys

from daemonkit import Daemon, Program, Readiness
from daemonkit.cli import dispatch

from chatgateway import __version__


def gateway() -> Daemon:
    """Our daemon, declared in code. Its files live under chatgateway's own state dir (platformdirs)."""
    port = int(os.environ.get("CHATGATEWAY_PORT", "8765"))
    server = Program("gateway", [sys.executable, "-m", "chatgateway.server", "--port", str(port)],
                     restart="always", stop_grace=5.0,
                     ready=Readiness("http", f"http://127.0.0.1:{port}/health", 20.0))
    return Daemon("chatgateway", server, name="gateway", prog="chatgateway gateway",
                  description="chatgateway's local gateway")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="chatgateway", description="A chat gateway that runs in the background.")
    parser.add_argument("--version", action="version", version=f"chatgateway {__version__}")
    commands = parser.add_subparsers(dest="app_command", metavar="COMMAND")
    mounted = commands.add_parser("gateway", help="the background gateway: install, start, stop, status, logs, ...")
    gateway().add_commands(mounted.add_subparsers(metavar="ACTION"))
    commands.add_parser("update", help="(after upgrading the package) restart the gateway onto the new code")
    args = parser.parse_args(argv)
    if hasattr(args, "_daemonkit_func"):  # one of daemonkit's mounted commands
        return dispatch(args)
    if args.app_command == "update":
        result = gateway().respawn_after_update()
        print(result.detail)
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
