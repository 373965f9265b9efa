"""Counts and sizes as people read them, for every rendering (terminal, page, messages)."""

from __future__ import annotations

__all__ = ["counted", "human_size"]

_BINARY_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 link``, ``0 links``, ``2 links``; ``plural`` where adding "s" is wrong."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {plural or noun + 's'}"


def human_size(size: int) -> str:
    """``512 B``, ``1.5 KiB``, ``2.0 GiB``: one decimal in the largest binary unit that fits."""
    for unit, scale in _BINARY_UNITS:
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
