"""The installed version of sharebatch, for ``--version``, the audit log and the User-Agent."""

from __future__ import annotations

from importlib import metadata

__all__ = ["__version__"]

try:
    __version__ = metadata.version("sharebatch")
except metadata.PackageNotFoundError:  # pragma: no cover - a source tree without install
    __version__ = "0+unknown"
