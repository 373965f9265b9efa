"""Judge uploads: each object scanned once per ETag, its verdict tagged, infected ones moved.

``scan_objects`` takes the objects a listing found (``Upload``: where, which ETag, which
``ScanSetting``) and returns one ``Verdict`` each, at most ``concurrency`` at once:

- engine clamd: the object's tags are read first; a verdict of ours recorded for its current
  ETag (clean or infected) stands, so an unchanged object is not scanned again. Otherwise the
  object is streamed from S3 (``S3Gateway.read_object``, bounded chunks, ``If-Match`` the
  listed ETag) into clamd's INSTREAM, and the verdict is written back as tags, other tags
  kept. Fail closed: a read that breaks off, a read of more or fewer bytes than the listed
  size, a clamd that hangs, drops or answers garbage, a stream over clamd's size limit: never
  clean. After tagging, the object is HEADed: an ETag other than the scanned one means it was
  replaced while being scanned, a ``scan_error`` (the tag speaks of bytes no longer there).
  An object listed without an ETag is a ``scan_error`` at once: verdicts are trusted only at
  an ETag.
- engine guardduty: GuardDuty's own tag is read and mapped (``verdicts.guardduty``).

Infected, with a ``quarantine_prefix``: the object (tagged first, so the copy keeps the tags)
is copied to ``quarantine_key`` (``<quarantine_prefix><key>@<etag>``, so two infected versions
of one key both stay) while its ETag is still the one judged, then deleted from the slot only
while its ETag is still that one (``If-Match``), so a fresh upload that replaced it stays;
``upload_quarantined`` records both keys. Each fresh scan is logged as
``upload_scanned``. Credentials S3 refuses end the whole scan (``CredentialsError``, exit 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sharebatch.audit import get_logger
from sharebatch.errors import S3ReadError, SharebatchError
from sharebatch.models import BucketTarget, ScanSetting
from sharebatch.s3.gateway import S3Gateway
from sharebatch.scanning.clamd import DEFAULT_TIMEOUT, Clamd, ClamdVerdict
from sharebatch.scanning.verdicts import (
    Status,
    Verdict,
    guardduty,
    merged_tags,
    recorded,
    verdict_tags,
)

log = get_logger()

CHUNK = 1 << 20
"""Bytes read from S3 at a time at most, each piece sent to clamd as one chunk: memory per scan
stays near it. (A read gives what the connection has buffered, up to this; larger pieces
than 64 KiB mean fewer reads, sends and timeouts per MB.)"""
MAX_KEY_BYTES = 1024

_STATUS: dict[str, Status] = {
    "clean": "clean",
    "infected": "infected",
    "too_large": "too_large_to_scan",
    "error": "scan_error",
}


@dataclass(frozen=True, slots=True)
class Upload:
    """One listed object of a slot to judge: ``etag`` as listed, ``setting`` its grant's."""

    job: str
    recipient: str
    target: BucketTarget
    key: str
    etag: str
    size: int
    setting: ScanSetting


def quarantine_key(prefix: str, key: str, etag: str) -> str:
    """Where an infected ``key`` at ``etag`` is moved: the ETag in the name keeps each
    infected version apart."""
    return f"{prefix}{key}@{etag}"


class _SizeMismatch(S3ReadError):
    """The bytes read are not the listed size: the object changed or the stream broke."""


@dataclass(frozen=True, slots=True)
class Judged:
    """An upload's verdict, and where it went when it was quarantined."""

    upload: Upload
    verdict: Verdict
    quarantined_to: str | None = None


async def scan_objects(
    gateway: S3Gateway,
    uploads: Sequence[Upload],
    *,
    concurrency: int = 4,
    step_timeout: float = DEFAULT_TIMEOUT,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Judged]:
    """Judge every upload (in the order given), at most ``concurrency`` at once; each step of
    talking to clamd (connect, each chunk, the answer) waits at most ``step_timeout`` seconds."""
    limit = asyncio.Semaphore(concurrency)
    scanners: dict[str, Clamd] = {}

    async def one(upload: Upload) -> Judged:
        async with limit:
            verdict = await _judge(gateway, upload, scanners, step_timeout, clock)
            moved = None
            if verdict.status == "infected" and upload.setting.quarantine_prefix is not None:
                verdict, moved = await _quarantine(gateway, upload, verdict)
            return Judged(upload, verdict, moved)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(u)) for u in uploads]
    except BaseExceptionGroup as failed:
        # Credentials refused: every object would fail alike; report it once (exit 3).
        ours, others = failed.split(SharebatchError)
        if ours is None or others is not None:
            raise
        raise ours.exceptions[0] from None
    return [t.result() for t in tasks]


async def _judge(
    gateway: S3Gateway,
    upload: Upload,
    scanners: dict[str, Clamd],
    step_timeout: float,
    clock: Callable[[], datetime],
) -> Verdict:
    if not upload.etag:
        return Verdict("scan_error", detail="listed without an ETag: no verdict can name it")
    tags = await gateway.objects.get_tags(upload.target, upload.key)
    if tags.error is not None:
        detail = f"cannot read the object's tags ({tags.error}: {tags.message})"
        return Verdict("scan_error", detail=detail)
    if upload.setting.engine == "guardduty":
        return guardduty(tags.facts)
    known = recorded(tags.facts, upload.etag)
    if known is not None and known.status in ("clean", "infected"):
        return known
    address = upload.setting.clamd
    if address is None:  # the loader gives engine clamd an address; never trust a default
        return Verdict("scan_error", detail="no clamd address")
    scanner = scanners.setdefault(address, Clamd(address, timeout=step_timeout))
    started = time.monotonic()
    try:
        # Closed here, not left to the garbage collector: when clamd stops reading (size
        # limit) or the size is wrong, the S3 body still holds a connection until closed.
        async with contextlib.aclosing(_chunks(gateway, upload)) as chunks:
            answer = await scanner.instream(chunks)
    except _SizeMismatch as exc:
        answer = ClamdVerdict("error", detail=f"not the listed bytes ({exc})")
    except S3ReadError as exc:
        answer = ClamdVerdict("error", detail=f"reading the object broke off ({exc})")
    seconds = time.monotonic() - started
    verdict = Verdict(
        _STATUS[answer.outcome], answer.signature, answer.detail, round(seconds, 3), fresh=True
    )
    log.info(
        "upload_scanned",
        job=upload.job,
        recipient=upload.recipient,
        key=upload.key,
        etag=upload.etag,
        verdict=verdict.status,
        signature=verdict.signature,
        seconds=verdict.seconds,
        detail=verdict.detail,
    )
    written = await gateway.objects.put_tags(
        upload.target,
        upload.key,
        merged_tags(tags.facts, verdict_tags(verdict, upload.etag, clock())),
    )
    if written.error is not None:
        log.error("scan_tags_failed", job=upload.job, key=upload.key, error=written.error)
        # Any verdict, not only clean: an infected one left untagged is moved without its
        # infected tag, and the report is the only place that says so.
        verdict = _noted(verdict, f"verdict not tagged ({written.error})")
    # The If-Match read pinned the bytes at their start only: a PUT landing while they were
    # streamed (or before the tags were written) leaves a tag naming bytes no longer there.
    now = await gateway.head_object(upload.target, upload.key)
    if now.etag != upload.etag:
        seen = now.etag or now.error or f"status {now.status}"
        log.error("scan_replaced", job=upload.job, key=upload.key, etag=upload.etag, now=seen)
        return replace(
            verdict,
            status="scan_error",
            signature=None,
            detail=f"replaced while scanning (ETag {upload.etag} scanned, now {seen})",
        )
    return verdict


def _noted(verdict: Verdict, note: str) -> Verdict:
    """``verdict`` with ``note`` added to its detail: an earlier note (an untagged verdict)
    is kept, not overwritten by a later one."""
    detail = f"{verdict.detail}; {note}" if verdict.detail else note
    return replace(verdict, detail=detail)


async def _chunks(gateway: S3Gateway, upload: Upload) -> AsyncGenerator[bytes, None]:
    """The object's bytes; raises (so clamd never gets the stream's end) unless exactly the
    listed size arrives: fewer or more means other bytes than the ones listed."""
    got = 0
    body = gateway.read_object(upload.target, upload.key, chunk_size=CHUNK, if_match=upload.etag)
    async with contextlib.aclosing(body):
        async for chunk in body:
            got += len(chunk)
            if got > upload.size:
                raise _SizeMismatch("SizeMismatch", f"more than the listed {upload.size} bytes")
            yield chunk
    if got != upload.size:
        raise _SizeMismatch("SizeMismatch", f"{got} bytes read, {upload.size} listed")


async def _quarantine(
    gateway: S3Gateway, upload: Upload, verdict: Verdict
) -> tuple[Verdict, str | None]:
    """Copy an infected upload to the quarantine (tags kept), then delete it from the slot."""
    prefix = upload.setting.quarantine_prefix or ""
    dest = quarantine_key(prefix, upload.key, upload.etag)
    if len(dest.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        detail = f"not quarantined: {prefix}+key is over S3's {MAX_KEY_BYTES}-byte key limit"
        log.error("quarantine_failed", job=upload.job, key=upload.key, error="KeyTooLong")
        return _noted(verdict, detail), None
    copied = await gateway.objects.copy(upload.target, upload.key, dest, if_match=upload.etag)
    if copied.error is not None:
        log.error("quarantine_failed", job=upload.job, key=upload.key, error=copied.error)
        return _noted(verdict, f"not quarantined ({copied.error})"), None
    deleted = await gateway.objects.delete(upload.target, upload.key, if_match=upload.etag)
    log.warning(
        "upload_quarantined",
        job=upload.job,
        recipient=upload.recipient,
        bucket=upload.target.bucket,
        key=upload.key,
        quarantine_key=dest,
        etag=upload.etag,
        signature=verdict.signature,
        deleted=deleted.error is None,
    )
    if deleted.error == "PreconditionFailed":
        detail = "copied to quarantine; a newer upload replaced it in the slot and stays"
        return _noted(verdict, detail), dest
    if deleted.error is not None:
        detail = f"copied to quarantine, but still in the slot ({deleted.error})"
        return _noted(verdict, detail), dest
    return verdict, dest
