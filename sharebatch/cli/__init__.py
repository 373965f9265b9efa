"""The command line: a thin Typer layer over the library.

``app`` (``app.py``) is the Typer application, which maps every ``SharebatchError`` to its exit
code. The commands are plain functions, one module per group, listed in ``app.COMMANDS`` in the
order ``sharebatch --help`` lists them; a command's module is imported when it runs.
"""

from sharebatch.cli.app import app


def main() -> None:
    """Console-script entry point: ``sharebatch`` and ``python -m sharebatch``."""
    app(prog_name="sharebatch")


__all__ = ["app", "main"]
