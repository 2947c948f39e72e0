"""Mount daemonkit's commands under a click CLI: ``cli.add_command(daemonkit.integrations.click.group(SPEC))``.

click is optional: this module imports it when called and says how to get it when it is missing.
The commands are daemonkit's argparse commands (one definition, so every flag a daemonkit release adds
appears here too): each click subcommand hands its raw arguments to ``daemonkit.cli.run_command`` with
the app's spec, and ``--help`` prints daemonkit's own help spelled with the app's command path.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..errors import DaemonkitError

if TYPE_CHECKING:
    from ..spec import Spec


def _click() -> Any:
    try:
        import click
    except ImportError:
        raise DaemonkitError("daemonkit.integrations.click needs click", "click is not installed",
                             "pip install click (or mount the argparse commands: daemonkit.cli.add_commands)") from None
    return click


def command_table(spec: "Spec") -> list[tuple[str, str]]:
    """(name, one-line help) of every command a host app gets, in daemonkit's order."""
    from ..cli import add_commands

    parser = argparse.ArgumentParser(add_help=False)
    subparsers = parser.add_subparsers()
    add_commands(subparsers, spec=spec)
    helps = {action.dest: action.help or "" for action in subparsers._choices_actions}
    return [(name, helps.get(name, "")) for name in subparsers.choices]


def group(spec: "Spec", *, name: str | None = None, help: str | None = None) -> Any:
    """A ``click.Group`` named ``name`` (default: the daemon's name) with daemonkit's commands for ``spec``.

    Exit codes are daemonkit's (0 ok, 1 error, 2 usage, 3 not running, 4 not installed)."""
    click = _click()
    grp = click.Group(name=name or spec.name, help=help or f"Manage the {spec.name} background service.")
    for command, text in command_table(spec):
        grp.add_command(_forwarder(click, spec, command, text))
    return grp


def _forwarder(click: Any, spec: "Spec", command: str, text: str) -> Any:
    settings = {"ignore_unknown_options": True, "allow_extra_args": True, "allow_interspersed_args": False}

    @click.command(name=command, help=text, short_help=text, context_settings=settings, add_help_option=False)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_context
    def forward(ctx: Any, args: tuple[str, ...]) -> None:
        from ..cli import run_command

        prog = ctx.parent.command_path if ctx.parent is not None else spec.name
        try:
            code = run_command([command, *args], spec, prog=prog)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        ctx.exit(code)

    return forward


__all__ = ["group", "command_table"]
