"""Files that appear whole or not at all, and folders only their owner can open.

Links are bearer secrets, so what sharebatch writes is private (0600 files, 0700 folders)
unless the caller says otherwise (metrics are read by another user's exporter). A file is
written to a temporary name beside it, flushed to the disk, and renamed over the old one: a
reader sees the old file or the new one, never half of either. This is the only writer that
does so; every module that writes a finished file uses it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

PRIVATE = 0o600


class HashingWriter:
    """Text sink that encodes, hashes and writes, so a file's sha256 costs no re-read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.sha256.update(data)
        self._raw.write(data)
        return len(text)

    def write_bytes(self, data: bytes) -> None:
        """``data``, UTF-8 already (text copied from another file, never decoded)."""
        self.sha256.update(data)
        self._raw.write(data)


@contextmanager
def atomic_writer(
    dest: Path, *, mode: int = PRIVATE, replace: bool = True
) -> Iterator[HashingWriter]:
    """Write ``dest`` (UTF-8 text) through a temporary file renamed into place on success.

    The file gets exactly ``mode``, whatever the umask. With ``replace=False`` an existing
    ``dest`` is never touched: ``FileExistsError``. On any failure the temporary file is
    removed and ``dest`` is as it was.
    """
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    # O_EXCL already refuses a symbolic link at the temporary name; O_NOFOLLOW says so.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as raw:
            os.fchmod(raw.fileno(), mode)  # the umask may have narrowed a shared mode
            sink = HashingWriter(raw)
            yield sink
            raw.flush()
            os.fsync(raw.fileno())
        if replace:
            os.replace(tmp, dest)
        else:
            os.link(tmp, dest)  # unlike a rename, fails when dest exists, atomically
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(dest: Path, data: Mapping[str, Any]) -> str:
    """Write ``data`` as indented JSON, atomically and 0600; return its sha256."""
    with atomic_writer(dest) as out:
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return out.sha256.hexdigest()


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents as 0700 (whatever the umask); return it."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=0o700)
            except FileExistsError:
                # Made meanwhile, or an existing folder reached through '..' ('new/../out'):
                # not ours to narrow.
                if not folder.is_dir():
                    raise
                continue
            made.append(folder)
            folder.chmod(0o700)
    except OSError:
        # A path that cannot be made (a name too long, say) leaves none of its parents.
        for folder in reversed(made):
            with suppress(OSError):
                folder.rmdir()
        raise
    return path


def copy_range(source: int, offset: int, dest: int, size: int) -> None:
    """Append ``size`` bytes of ``source`` from ``offset`` on to ``dest`` at its position.

    In the kernel where it can (``copy_file_range``: no byte passes through Python); by
    ``pread`` and ``write`` where the two files' systems or the kernel refuse it.
    """
    end = offset + size
    while offset < end:
        try:
            copied = os.copy_file_range(source, dest, end - offset, offset)
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE:
                raise
            break
        if copied == 0:  # the source is shorter than said: never loop on it
            raise OSError(errno.EIO, f"{size} bytes to copy, {end - offset} missing")
        offset += copied
    while offset < end:
        data = os.pread(source, min(end - offset, 1 << 20), offset)
        if not data:
            raise OSError(errno.EIO, f"{size} bytes to copy, {end - offset} missing")
        view = memoryview(data)
        while view:
            view = view[os.write(dest, view) :]
        offset += len(data)


_NO_COPY_RANGE = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}
)
"""What ``copy_file_range`` says when it cannot copy between these two files (across file
systems on old kernels, not a regular file, an ``O_APPEND`` destination, no such call)."""


def read_range(source: int, offset: int, size: int) -> bytes:
    """``size`` bytes of ``source`` from ``offset`` on (``OSError`` if it holds fewer)."""
    pieces = []
    end = offset + size
    while offset < end:
        data = os.pread(source, end - offset, offset)
        if not data:
            raise OSError(errno.EIO, f"{size} bytes to read, {end - offset} missing")
        pieces.append(data)
        offset += len(data)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
