"""The command line: a thin Typer layer over the library."""

# Each command module registers its commands on ``app`` when imported.
from sharebatch.cli import commands, doctor, inbox, links  # noqa: F401
from sharebatch.cli.app import app
from sharebatch.cli.commands import main

__all__ = ["app", "main"]
