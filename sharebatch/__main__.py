"""``python -m sharebatch``."""

from .cli import main

main()
