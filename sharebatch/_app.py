"""The Typer application and what every command shares: options, logging, error reporting.

Commands live in ``cli.py`` and the ``_cmd_*.py`` modules, each registering on ``app``; only
these modules write to the terminal. Every ``SharebatchError`` is caught once per command by
``fail`` and mapped to its exit code.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer

from . import __version__
from ._render import counted
from .audit import configure
from .errors import ManifestError, SharebatchError
from .visible import visible

app = typer.Typer(
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
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log every link issued.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings and errors only.")]
FormatOpt = Annotated[
    LogFormat, typer.Option("--log-format", help="stderr log format; auto: JSON unless a TTY.")
]


def setup_logging(verbose: bool, quiet: bool, fmt: LogFormat) -> None:
    level = "debug" if verbose else "warning" if quiet else "info"
    configure(level=level, fmt=fmt.value)


def fail(exc: SharebatchError) -> typer.Exit:
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
    return typer.Exit(exc.exit_code)
