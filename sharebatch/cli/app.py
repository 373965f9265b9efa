"""The Typer application and what every command shares: options, logging, error reporting.

Commands are plain functions, one module per group, named in ``COMMANDS`` and imported when
run; only the ``cli`` package writes to the terminal.
Every ``SharebatchError`` is caught once, by the command group (``_Commands.invoke``), and
mapped to its exit code: the console script, ``python -m sharebatch`` and ``CliRunner`` alike.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.models import CommandInfo

from sharebatch.audit import configure
from sharebatch.errors import ManifestError, SharebatchError, UsageError
from sharebatch.manifest.fields import check_endpoint, check_region
from sharebatch.units import counted
from sharebatch.version import __version__
from sharebatch.visible import visible

COMMANDS: dict[str, str] = {
    "run": "sharebatch.cli.commands:run",
    "merge": "sharebatch.cli.shards:merge",
    "validate": "sharebatch.cli.commands:validate",
    "schema": "sharebatch.cli.commands:schema",
    "demo": "sharebatch.cli.commands:demo",
    "doctor": "sharebatch.cli.doctor:doctor",
    "policy": "sharebatch.cli.policy:policy",
    "inbox": "sharebatch.cli.inbox:inbox",
    "inspect": "sharebatch.cli.links:inspect",
    "verify": "sharebatch.cli.links:verify",
    "renew": "sharebatch.cli.links:renew",
    "approve": "sharebatch.cli.approve:approve",
    "notify": "sharebatch.cli.notify:notify",
    "remind": "sharebatch.cli.remind:remind",
    "usage": "sharebatch.cli.usage:usage",
}
"""Every command, in the order ``sharebatch --help`` lists them: its name and where its function
lives. A command's module is imported when the command is looked up, not before, because
together they import the whole library (~2 s of a short command: a ``merge`` or ``validate``
paid for the mail client, the scanner and the receipts reader it never used)."""


class _Commands(TyperGroup):
    """The command group; its ``invoke`` parses and runs the chosen command, option callbacks
    included, so it is the one place a ``SharebatchError`` is caught. It builds each command
    from ``COMMANDS`` on first use (``--help`` and shell completion look every one up)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in COMMANDS:
            module, _, function = COMMANDS[cmd_name].partition(":")
            callback = getattr(importlib.import_module(module), function)
            command = typer.main.get_command_from_info(
                CommandInfo(name=cmd_name, callback=callback),
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=self.rich_markup_mode,
            )
            self.commands[cmd_name] = command
        return command

    # ctx is the Context of the click Typer vendors, which has no public name (typer.Context
    # is a subclass, too narrow for an override).
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SharebatchError as exc:
            _report(exc)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_Commands,
    name="sharebatch",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    # Pretty tracebacks print local variables, and locals here hold credentials and URLs.
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)


class LogFormat(StrEnum):
    auto = "auto"
    json = "json"
    console = "console"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sharebatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Share private S3 files through scheduled, reviewable bundles of presigned URLs.

    Example: sharebatch doctor manifests/q3.yml

    Example: sharebatch run manifests/q3.yml --out /srv/bundles

    Every command has its own --help with examples. Shell completion: --install-completion.
    """


AsOfOpt = Annotated[
    datetime | None,
    typer.Option(
        formats=["%Y-%m-%d"],
        help="Run date for period templates (YYYY-MM-DD); default: today in UTC.",
    ),
]


def _checked(
    check: Callable[[str, str], str],
) -> Callable[[typer.Context, typer.CallbackParam, str | None], str | None]:
    """An option callback applying a manifest field's own check, by the option's name."""

    def callback(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
        if value is None or ctx.resilient_parsing:  # resilient: shell completion in progress
            return value
        try:
            return check(value, param.opts[0])
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    return callback


def endpoint_option(help: str) -> Any:
    """``--endpoint-url``, held to the manifest's ``endpoint_url`` rule as it is parsed."""
    return typer.Option(callback=_checked(check_endpoint), help=help)


def region_option(help: str) -> Any:
    """``--region``, held to the manifest's ``region`` rule as it is parsed."""
    return typer.Option(callback=_checked(check_region), help=help)


VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log every link issued.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings and errors only.")]
FormatOpt = Annotated[
    LogFormat, typer.Option("--log-format", help="stderr log format; auto: JSON unless a TTY.")
]
ProfileOpt = Annotated[str | None, typer.Option(help="AWS profile for credentials.")]
MetricsFileOpt = Annotated[
    Path | None,
    typer.Option(help="Write Prometheus metrics here (node_exporter textfile collector)."),
]


def setup_logging(verbose: bool, quiet: bool, fmt: LogFormat) -> None:
    level = "debug" if verbose else "warning" if quiet else "info"
    configure(level=level, fmt=fmt.value)


def _report(exc: SharebatchError) -> None:
    # Messages quote paths, keys and values chosen by others: shown through ``visible``.
    if isinstance(exc, ManifestError):
        # One line per problem, compiler style, so editors can jump to file:line:column.
        for issue in exc.issues:
            typer.echo(visible(str(issue)), err=True)
        typer.echo(
            f"sharebatch: {counted(len(exc.issues), 'problem')} in the manifest; "
            "nothing was listed or written",
            err=True,
        )
    else:
        typer.echo(f"sharebatch: error: {visible(str(exc))}", err=True)
