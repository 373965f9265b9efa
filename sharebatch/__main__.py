"""``python -m sharebatch``."""

from sharebatch.cli import main

main()
