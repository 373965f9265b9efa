"""The run folder, ``OUT/<run-id>/``, and the lock that lets one run at a time write to OUT.

A run creates its folder fresh (0700, never reused, never written through a symbolic link),
stages its part files under ``.staging``, writes one folder per job and recipient, and, when
it does not finish, discards what it wrote besides its audit log and summary.

One run at a time per output folder: an exclusive ``flock`` on ``OUT/.sharebatch.lock``.
A second run on the same OUT fails at once with ``RunLocked`` (exit 75) instead of racing the
first. The kernel drops a ``flock`` when its holder exits, however it exits (SIGKILL, OOM, a
reboot), so a lock left by a killed run never blocks the next one: the file may remain, the
lock does not. The file is never deleted, because deleting a lock file another process has
just opened would let two runs each lock a different file.

The lock file holds the holder's pid, run id and start time, only to make the refusal useful.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

from sharebatch.errors import RunLocked, SharebatchError, UsageError
from sharebatch.files import private_dir
from sharebatch.run.bundles import PartFile
from sharebatch.times import iso

STAGING = ".staging"
# The disk, not the command line: full, over quota, failing.
_DISK_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EIO)
# Job names and recipient ids are slugs (manifest rules); anything else never names a folder.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class RunFolder:
    """``OUT/<run-id>/``: created fresh for each run, never reused."""

    def __init__(self, out: Path, run_id: str) -> None:
        self.out = out
        self.path = out / run_id
        self.staging = self.path / STAGING
        self.lock: RunLock | None = None

    @classmethod
    def create(cls, out: Path, run_id: str) -> RunFolder:
        folder = cls(out, run_id)
        made = False
        try:
            if not out.exists():
                private_dir(out)
            # mkdir, never exist_ok: an existing folder, or a symbolic link in its place, is
            # refused rather than written through.
            folder.path.mkdir(mode=0o700)
            made = True
            folder.path.chmod(0o700)
            private_dir(folder.staging)
        except FileExistsError:
            raise UsageError(
                f"run folder {folder.path} already exists; a run never overwrites another"
            ) from None
        except OSError as exc:
            if made:  # half made (its staging refused): not kept
                shutil.rmtree(folder.path, ignore_errors=True)
            if exc.errno in _DISK_FAILURES:
                raise  # a crash (exit 1, recorded as failed), not an invalid command line
            raise UsageError(f"cannot create the run folder under {out}: {exc.strerror}") from None
        return folder

    @classmethod
    def create_locked(cls, out: Path, run_id: str) -> RunFolder:
        """``create``, holding ``out``'s run lock first (``RunLocked`` if another run has it).

        The lock is held until ``release``: the caller releases it when the run has ended.
        """
        try:
            if not out.exists():
                private_dir(out)
        except OSError as exc:
            raise UsageError(f"cannot create the output folder {out}: {exc.strerror}") from None
        lock = RunLock.acquire(out, run_id)
        try:
            folder = cls.create(out, run_id)
        except BaseException:
            lock.release()
            raise
        folder.lock = lock
        return folder

    def release(self) -> None:
        """Let the next run on ``out`` start (process exit does it as well)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def audit_path(self) -> Path:
        return self.path / "audit.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def bundle_dir(self, job: str, recipient: str) -> Path:
        """``<run>/<job>/<recipient>/``, created 0700; never outside the run folder.

        The manifest already restricts both names; this refuses anything but a plain folder
        name again, and refuses to write through a symbolic link found in the run folder.
        """
        for name in (job, recipient):
            if not _FOLDER_NAME.fullmatch(name):
                raise SharebatchError(f"{name!r} cannot name a folder of a run")
        dest = self.path
        for name in (job, recipient):
            dest = dest / name
            try:
                dest.mkdir(mode=0o700)
            except FileExistsError:
                if dest.is_symlink() or not dest.is_dir():
                    raise SharebatchError(
                        f"{dest} is not a folder this run made (a symbolic link?);"
                        " refusing to write through it"
                    ) from None
        return dest

    def discard_outputs(self) -> list[Path]:
        """Remove what a run that did not finish wrote besides its audit log and summary."""
        removed = []
        for child in sorted(self.path.iterdir()):
            if child.name in (self.audit_path.name, self.summary_path.name, STAGING):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
            removed.append(child)
        return removed

    def part(self, route: int, position: int, segment: int = 0, *, csv: bool = True) -> PartFile:
        name = f"{route:06d}-{position:06d}-{segment:06d}.jsonl"
        return PartFile(self.staging / name, csv=csv)

    def discard_staging(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


LOCK_NAME = ".sharebatch.lock"


class RunLock:
    """A held lock on one output folder; ``release`` (or process exit) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, out: Path, run_id: str, name: str = LOCK_NAME) -> RunLock:
        """Lock ``out`` (which must exist) for ``run_id``, or raise ``RunLocked`` at once.

        ``name``: another lock file in ``out`` (a shard locks only its own name, so the
        shards of a run sharing OUT run at once)."""
        path = out / name
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
