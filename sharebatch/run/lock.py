"""One run at a time per output folder: an exclusive ``flock`` on ``OUT/.sharebatch.lock``.

A second run on the same OUT fails at once with ``RunLocked`` (exit 75) instead of racing the
first. The kernel drops a ``flock`` when its holder exits, however it exits (SIGKILL, OOM, a
reboot), so a lock left by a killed run never blocks the next one: the file may remain, the
lock does not. The file is never deleted, because deleting a lock file another process has
just opened would let two runs each lock a different file.

The file holds the holder's pid, run id and start time, only to make the refusal useful.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from sharebatch.errors import RunLocked, UsageError
from sharebatch.times import iso

LOCK_NAME = ".sharebatch.lock"


class RunLock:
    """A held lock on one output folder; ``release`` (or process exit) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, out: Path, run_id: str) -> RunLock:
        """Lock ``out`` (which must exist) for ``run_id``, or raise ``RunLocked`` at once."""
        path = out / LOCK_NAME
        try:
            # O_NOFOLLOW: a symbolic link planted here must not make us create or write a file
            # somewhere else.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UsageError(
                    f"{path} is a symbolic link; refusing to follow it (remove it to run)"
                ) from None
            raise UsageError(f"cannot lock output folder {out}: {exc.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UsageError(f"{path} is not a regular file; remove it to run")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(_refusal(out, fd)) from None
            _record(fd, run_id)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _record(fd: int, run_id: str) -> None:
    holder = {"pid": os.getpid(), "run_id": run_id, "since": iso(datetime.now(UTC))}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def _refusal(out: Path, fd: int) -> str:
    holder: dict[str, object] = {}
    # The holder writes its details just after locking; a refusal in between says less.
    with contextlib.suppress(OSError, ValueError):
        found = json.loads(os.pread(fd, 4096, 0) or b"{}")
        if isinstance(found, dict):
            holder = found
    who = ", ".join(f"{k} {holder[k]}" for k in ("pid", "run_id", "since") if k in holder)
    return (
        f"another sharebatch run is writing to {out}"
        + (f" ({who})" if who else "")
        + "; this run did nothing. Runs on one output folder take turns: try again when it"
        " has finished"
    )
