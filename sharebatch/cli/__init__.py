"""The command line: a thin Typer layer over the library.

``app`` (``app.py``) is the Typer application, which maps every ``SharebatchError`` to its exit
code. The commands are plain functions, one module per group; they are registered here, in the
order ``sharebatch --help`` lists them.
"""

from sharebatch.cli import (
    approve,
    commands,
    doctor,
    inbox,
    links,
    notify,
    policy,
    remind,
    shards,
    usage,
)
from sharebatch.cli.app import app

for command in (
    commands.run,
    shards.merge,
    commands.validate,
    commands.schema,
    commands.demo,
    doctor.doctor,
    policy.policy,
    inbox.inbox,
    links.inspect,
    links.verify,
    links.renew,
    approve.approve,
    notify.notify,
    remind.remind,
    usage.usage,
):
    app.command()(command)


def main() -> None:
    """Console-script entry point: ``sharebatch`` and ``python -m sharebatch``."""
    app(prog_name="sharebatch")


__all__ = ["app", "main"]
