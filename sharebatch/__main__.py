"""``python -m sharebatch``."""

from sharebatch.cli.commands import main

main()
