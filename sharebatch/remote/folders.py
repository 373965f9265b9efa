"""A folder's files published to S3 and fetched back, and whether a remote folder is complete.

``publish_folder``: every regular file under a local folder is uploaded under the URI's prefix
(the gateway's ``uploads``: private, no ACL; the bucket's default encryption, read once, asked
for in each request so a bucket policy demanding the header is met; streamed, multipart above
8 MiB), a few at a time, and the marker (``summary.json``) last, alone, after every other file
is in. A failure anywhere stops the publish before the marker: a folder without it is
recognisably unfinished, and ``is_complete`` says so. With ``exclusive`` (the default) the
prefix must be empty to begin with and the marker is written with ``If-None-Match: *``, so of
two writers of one prefix at most one completes it. Without it (a shard re-run replacing its
own output), a marker already there is deleted first (``If-Match`` its ETag), so the folder
reads as unfinished until the new marker is in.

``fetch_folder``: every object under a prefix downloaded into a private local folder (0700
folders, 0600 files, ``O_NOFOLLOW | O_EXCL``), each read with ``If-Match`` its listed ETag.
Every key is checked before anything is written: a key that would land outside the folder
(``..`` or ``.`` segments, a leading ``/``, ``//``, a backslash, NUL or another control
character) or that is both a file and a folder refuses the whole fetch (``LinkError``, exit 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sharebatch.audit import get_logger
from sharebatch.blocking import blocking
from sharebatch.errors import (
    LinkError,
    RunLocked,
    S3ListingError,
    S3ReadError,
    S3WriteError,
    SharebatchError,
    UsageError,
)
from sharebatch.files import private_dir
from sharebatch.models import BucketTarget, Connection, LinkProbe
from sharebatch.remote.uri import S3Uri, parse_uri
from sharebatch.visible import visible

if TYPE_CHECKING:
    from sharebatch.s3.gateway import S3Gateway

log = get_logger()
T = TypeVar("T")

MARKER = "summary.json"
UPLOADS_AT_ONCE = 4
_TYPES = {
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".csv": "text/csv; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".prom": "text/plain; version=0.0.4",
}


@dataclass(frozen=True)
class Published:
    """What ``publish_folder`` put where: files and bytes, and the encryption it asked for."""

    uri: str
    files: int
    bytes: int
    encryption: dict[str, object] = field(default_factory=dict)
    complete: bool = True


@dataclass(frozen=True)
class Fetched:
    """What ``fetch_folder`` wrote: the local folder, files and bytes."""

    path: Path
    files: int
    bytes: int


def _uri(value: S3Uri | str) -> S3Uri:
    return value if isinstance(value, S3Uri) else parse_uri(value, "folder")


def content_type(name: str) -> str:
    """The Content-Type a browser or a person downloading the file expects."""
    return _TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def local_files(folder: Path, exclude: Collection[str] = ()) -> list[tuple[str, Path]]:
    """Every regular file under ``folder`` as (``/``-separated relative path, path), sorted;
    none under the top-level names in ``exclude`` (a merged run's ``shards/``, already there).

    A symbolic link or anything but a folder or regular file is refused (``UsageError``):
    a run folder holds none, and following one could publish a file from elsewhere.
    """
    found: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        if Path(root) == folder:
            dirs[:] = [d for d in dirs if d not in exclude]
            files = [f for f in files if f not in exclude]
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise UsageError(f"{visible(str(path))} is not a regular file; not published")
        for name in files:
            path = Path(root) / name
            found.append((path.relative_to(folder).as_posix(), path))
    return sorted(found)


async def publish_folder_async(
    local: Path,
    uri: S3Uri | str,
    *,
    connection: Connection = Connection(),
    gateway: S3Gateway | None = None,
    exclusive: bool = True,
    marker: str = MARKER,
    at_once: int = UPLOADS_AT_ONCE,
    exclude: Collection[str] = (),
) -> Published:
    """Upload every file of ``local`` under ``uri``, ``marker`` last; see the module's notes.

    Raises ``UsageError`` when ``exclusive`` and the prefix already holds objects (nothing
    uploaded), ``S3WriteError`` when an upload fails (the marker never sent),
    ``CredentialsError`` when S3 refuses the credentials.
    """
    dest = _uri(uri)
    files = local_files(local, exclude)
    sizes_of = {rel: path.stat().st_size for rel, path in files}
    rest = [(rel, path) for rel, path in files if rel != marker]
    last = [(rel, path) for rel, path in files if rel == marker]

    async def work(s3: S3Gateway) -> Published:
        target = s3.effective(dest.target())
        if exclusive and await _holds_any(s3, dest):
            raise UsageError(
                f"{visible(str(dest))} already holds objects; a run folder is never written"
                " over another (choose another --run-id or prefix)"
            )
        if not exclusive:
            await _unmark(s3, dest, marker)
        encryption = await s3.uploads.bucket_encryption(target)
        if encryption.algorithm is None:
            log.warning("bucket_encryption_unread", uri=str(dest), source=encryption.source)
        gate = asyncio.Semaphore(at_once)

        async def one(rel: str, path: Path, *, first: bool = False) -> int:
            async with gate:
                await s3.uploads.upload_file(
                    target,
                    dest.key(rel),
                    path,
                    content_type=content_type(rel),
                    encryption=encryption,
                    if_none_match=first,
                )
            return sizes_of[rel]

        sizes = await _all(one(rel, path) for rel, path in rest)
        for rel, path in last:
            sizes.append(await one(rel, path, first=exclusive))
        published = Published(
            uri=str(dest),
            files=len(sizes),
            bytes=sum(sizes),
            encryption=encryption.describe(),
            complete=bool(last),
        )
        log.info(
            "folder_published",
            uri=str(dest),
            files=published.files,
            bytes=published.bytes,
            encryption=encryption.algorithm,
        )
        return published

    return await _run(gateway, connection, work)


async def _all(coroutines: Iterable[Coroutine[Any, Any, int]]) -> list[int]:
    """Every upload, or the first failure with the others cancelled (no marker after it)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]


async def _holds_any(s3: S3Gateway, uri: S3Uri) -> bool:
    try:
        # Closed at once: one key answers the question, the rest is never fetched.
        async with contextlib.aclosing(
            s3.list_objects(s3.effective(uri.target()), uri.prefix)
        ) as found:
            async for _ in found:
                return True
    except S3ListingError as exc:
        raise S3WriteError(exc.code, f"cannot list {visible(str(uri))}: {exc}") from None
    return False


async def _unmark(s3: S3Gateway, folder: S3Uri, marker: str) -> None:
    """Remove a previous publish's marker first: while its files are replaced the folder
    must read as unfinished, never as complete with a mix of old and new files."""
    target = s3.effective(folder.target())
    probe = await s3.head_object(target, folder.key(marker))
    if probe.status == 404:
        return
    if probe.status != 200 or probe.etag is None:
        raise S3WriteError(probe.error or "HeadObject", f"{visible(folder.key(marker))}")
    gone = await s3.objects.delete(target, folder.key(marker), if_match=probe.etag)
    if gone.error is not None:
        raise S3WriteError(gone.error, f"{visible(folder.key(marker))}: {gone.message}")


async def holds_any_async(
    uri: S3Uri | str,
    *,
    connection: Connection = Connection(),
    gateway: S3Gateway | None = None,
) -> bool:
    """Whether anything is stored under ``uri`` (one ListObjectsV2 page at most).

    Raises ``S3WriteError`` when the prefix cannot be listed (no such bucket, refused).
    """
    folder = _uri(uri)
    return await _run(gateway, connection, lambda s3: _holds_any(s3, folder))


async def _run(
    gateway: S3Gateway | None,
    connection: Connection,
    work: Callable[[S3Gateway], Awaitable[T]],
) -> T:
    """``work`` on the caller's gateway, or on one of its own closed after."""
    if gateway is not None:
        return await work(gateway)
    # Imported here, not with the module: a local merge uses none of this, and the AWS SDK
    # costs ~0.6 s of CPU to import.
    from sharebatch.s3.gateway import S3Gateway

    async with S3Gateway(connection) as own:
        return await work(own)


def checked_relative(key: str, prefix: str) -> str:
    """``key`` relative to ``prefix``, as a safe relative path, or ``LinkError``."""
    rel = key[len(prefix) :] if key.startswith(prefix) else None
    problem = None
    if rel is None:
        problem = "is not under the folder's prefix"
    elif not rel:
        problem = "is the folder itself"
    elif rel.startswith("/"):
        problem = "is absolute (a leading '/')"
    elif any(c == "\\" for c in rel):
        problem = "holds a backslash"
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in rel):
        problem = "holds a control character (NUL, newline, ...)"
    elif any(s in ("", ".", "..") for s in rel.split("/")):
        problem = "has an empty, '.' or '..' segment (a folder marker, '//', '..')"
    if problem is not None:
        raise LinkError(f"object {visible(key)} {problem}; refusing to fetch the folder")
    assert rel is not None
    return rel


async def fetch_folder_async(
    uri: S3Uri | str,
    local: Path,
    *,
    connection: Connection = Connection(),
    gateway: S3Gateway | None = None,
) -> Fetched:
    """Download every object under ``uri`` into ``local`` (new, or an empty folder).

    Raises ``LinkError`` (exit 2, nothing written) for a hostile key, ``UsageError`` when
    ``local`` holds anything, ``S3ReadError``/``S3ListingError`` when S3 refuses or breaks
    off (the files fetched so far stay; the folder is not complete).
    """
    source = _uri(uri)
    _fresh(local)

    async def work(s3: S3Gateway) -> Fetched:
        target = s3.effective(source.target())
        listed = [o async for o in s3.list_objects(target, source.prefix)]
        wanted = [(checked_relative(o.key, source.prefix), o) for o in listed]
        files = {rel for rel, _ in wanted}
        folders = {
            "/".join(rel.split("/")[:i]) for rel in files for i in range(1, rel.count("/") + 1)
        }
        clash = sorted(files & folders)
        if clash:
            raise LinkError(
                f"object {visible(source.key(clash[0]))} is both a file and a folder;"
                " refusing to fetch the folder"
            )
        _made(local)
        total = 0
        for rel, found in wanted:
            with os.fdopen(_new_file(local, rel), "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                async for chunk in s3.read_object(target, found.key, if_match=found.etag):
                    out.write(chunk)
                    total += len(chunk)
        return Fetched(path=local, files=len(wanted), bytes=total)

    return await _run(gateway, connection, work)


def _fresh(local: Path) -> None:
    if local.is_symlink() or (local.exists() and (not local.is_dir() or any(local.iterdir()))):
        raise UsageError(f"{visible(str(local))} is not a new or empty folder; not fetched into")


def _made(local: Path) -> None:
    private_dir(local)
    local.chmod(0o700)


def _new_file(local: Path, rel: str) -> int:
    """A new 0600 file at ``rel`` under ``local``, its folders made 0700 on the way."""
    dest = local
    for name in rel.split("/")[:-1]:
        dest = dest / name
        with contextlib.suppress(FileExistsError):
            dest.mkdir(mode=0o700)
        if dest.is_symlink() or not dest.is_dir():
            raise SharebatchError(f"{visible(str(dest))} is not a folder this fetch made")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(dest / rel.split("/")[-1], flags, 0o600)


async def _found(s3: S3Gateway, target: BucketTarget, key: str) -> LinkProbe | None:
    """HeadObject's answer for an object that is there, None for one that is not; anything
    else (403, a broken connection) is ``S3ReadError``: neither yes nor no."""
    probe = await s3.head_object(target, key)
    if probe.status == 404:
        return None
    if probe.status != 200:
        raise S3ReadError(
            probe.error or str(probe.status or "ConnectionError"),
            f"{visible(key)}: {probe.message or 'no answer'}",
        )
    return probe


async def is_complete_async(
    uri: S3Uri | str,
    *,
    connection: Connection = Connection(),
    gateway: S3Gateway | None = None,
    marker: str = MARKER,
) -> bool:
    """Whether the folder at ``uri`` holds its ``marker`` (written last: complete).

    Raises ``S3ReadError`` when S3 answers neither yes nor no (403, a broken connection).
    """
    folder = _uri(uri)

    async def work(s3: S3Gateway) -> bool:
        return await _found(s3, s3.effective(folder.target()), folder.key(marker)) is not None

    return await _run(gateway, connection, work)


async def fetch_file_async(
    uri: S3Uri | str,
    rel: str,
    local: Path,
    *,
    connection: Connection = Connection(),
    gateway: S3Gateway | None = None,
) -> bool:
    """Download the one object ``rel`` of the folder at ``uri`` to a new 0600 file ``local``;
    False, nothing written, when there is no such object.

    Raises ``S3ReadError`` when S3 answers neither (403, a broken connection).
    """
    folder = _uri(uri)
    key = folder.key(checked_relative(folder.key(rel), folder.prefix))

    async def work(s3: S3Gateway) -> bool:
        target = s3.effective(folder.target())
        probe = await _found(s3, target, key)
        if probe is None:
            return False
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(local, flags, 0o600), "wb") as out:
            async for chunk in s3.read_object(target, key, if_match=probe.etag):
                out.write(chunk)
        return True

    return await _run(gateway, connection, work)


async def claim_async(
    uri: S3Uri | str,
    name: str,
    note: Path,
    *,
    connection: Connection = Connection(),
    gateway: S3Gateway | None = None,
) -> str:
    """Create the object ``name`` in the folder at ``uri`` from the file ``note``, only if no
    such object exists (``If-None-Match: *``); its ETag, for ``release``.

    S3 has no locks, but a conditional write has exactly one winner: of two merges of one run
    on S3 one claims it, and the other gets ``RunLocked`` (exit 75). A claim left by a merge
    that was killed stays until removed by hand; its text says when and where it was made.
    """
    folder = _uri(uri)

    async def work(s3: S3Gateway) -> str:
        target = s3.effective(folder.target())
        encryption = await s3.uploads.bucket_encryption(target)
        try:
            return await s3.uploads.upload_file(
                target,
                folder.key(name),
                note,
                content_type=content_type(name),
                encryption=encryption,
                if_none_match=True,
            )
        except S3WriteError as exc:
            if exc.code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            raise RunLocked(
                f"{visible(folder.key(name))} exists: another merge of this run is under way"
                f" (if none is, one was killed: delete {visible(str(folder))}{visible(name)})"
            ) from None

    return await _run(gateway, connection, work)


async def release_async(
    uri: S3Uri | str,
    name: str,
    etag: str,
    *,
    connection: Connection = Connection(),
    gateway: S3Gateway | None = None,
) -> None:
    """Delete the claim ``name`` made (``If-Match`` its ETag: never another's claim)."""
    folder = _uri(uri)

    async def work(s3: S3Gateway) -> None:
        gone = await s3.objects.delete(
            s3.effective(folder.target()), folder.key(name), if_match=etag
        )
        if gone.error is not None:
            log.warning("claim_not_released", key=folder.key(name), error=gone.error)

    await _run(gateway, connection, work)


publish_folder = blocking(publish_folder_async)
fetch_file = blocking(fetch_file_async)
claim = blocking(claim_async)
release = blocking(release_async)
fetch_folder = blocking(fetch_folder_async)
is_complete = blocking(is_complete_async)
holds_any = blocking(holds_any_async)
