"""Looking at processes from a test: whether one is gone."""

from __future__ import annotations

from pathlib import Path


def gone(pid: int) -> bool:
    """``pid`` has ended: no such process, or a zombie (ended, not yet reaped) or dead one.
    The state is the first field after the command's closing parenthesis in /proc/PID/stat
    (a command name may hold spaces and parentheses itself)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")
