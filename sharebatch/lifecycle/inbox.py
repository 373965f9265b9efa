"""What recipients sent back: the objects in each upload slot of a manifest, for its period.

``read_inbox`` resolves the manifest for a run date (so ``{period.*}`` in slot prefixes names
the period asked about), lists every slot prefix through ``s3`` and returns one ``InboxSlot``
per recipient with a slot: each object with its size and time, each fixed key not yet
uploaded, objects a fixed-key slot did not ask for, and files over ``max_size`` (a PUT URL
cannot limit the size; this is where ops see it). A slot that cannot be listed is reported
with its error and the others go on; credential problems end the whole listing (exit 3).

With ``scan=True`` every object of a slot whose grant has ``upload.scan`` is judged by
``scanning/scan.scan_objects`` (clamd or GuardDuty's tags) and the entry carries its
``Verdict``; the inbox then exits 1 unless every one of them is clean.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from sharebatch.audit import get_logger
from sharebatch.blocking import blocking
from sharebatch.errors import S3ListingError, SharebatchError, UsageError
from sharebatch.manifest.load import Grant, load_manifest
from sharebatch.models import BucketTarget, Connection, ObjectRef, ScanSetting, UploadSlot
from sharebatch.run.bundles import write_csv
from sharebatch.run.metrics import Gauge, labels
from sharebatch.s3.gateway import S3Gateway
from sharebatch.scanning.clamd import DEFAULT_TIMEOUT
from sharebatch.scanning.scan import Judged, Upload, scan_objects
from sharebatch.scanning.verdicts import STATUSES, Verdict
from sharebatch.times import iso

log = get_logger()

Status = Literal["received", "too_large", "missing", "unexpected"]
STATUS_NAMES: tuple[Status, ...] = ("received", "too_large", "missing", "unexpected")

COLUMNS = ("job", "recipient", "bucket", "key", "name", "status", "size", "last_modified")
SCAN_COLUMNS = ("etag", "scan", "signature", "quarantined_to", "scan_detail")
"""Added after ``COLUMNS`` when the inbox was scanned; ``etag`` is the one the verdict is of."""
SCAN_POOL_HEADROOM = 4
"""Connections beyond one per scan, for the tagging, HEADs and copies between streams."""


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One file of a slot: uploaded (``size`` and ``last_modified`` set) or still missing.

    ``name`` is the key after the slot prefix. ``too_large``: over the slot's ``max_size``;
    ``unexpected``: in a slot of fixed keys, but not one of them.
    """

    key: str
    name: str
    status: Status
    size: int | None = None
    last_modified: datetime | None = None
    etag: str | None = None
    scan: Verdict | None = None  # set by a scan, for slots with upload.scan
    quarantined_to: str | None = None  # the key it was moved to, when infected


@dataclass(frozen=True, slots=True)
class InboxSlot:
    """One recipient's slot and what is in it; ``error`` when it could not be listed."""

    job: str
    recipient: str
    bucket: str
    slot: UploadSlot
    entries: tuple[InboxEntry, ...] = ()
    error: str | None = None
    scan: ScanSetting | None = None

    @property
    def received(self) -> int:
        return sum(e.status != "missing" for e in self.entries)

    @property
    def returned(self) -> int:
        """Fixed keys uploaded (whatever their size)."""
        return sum(
            e.status in ("received", "too_large") for e in self.entries[: len(self.slot.keys)]
        )

    @property
    def missing(self) -> int:
        return sum(e.status == "missing" for e in self.entries)


@dataclass(frozen=True)
class Inbox:
    """Every slot of a manifest for one run date, in manifest order."""

    manifest: str
    as_of: date
    slots: tuple[InboxSlot, ...]
    scanned: bool = False

    def verdicts(self) -> list[Verdict]:
        """The verdict of every uploaded file of every slot that is scanned."""
        return [e.scan for s in self.slots for e in s.entries if e.scan is not None]

    @property
    def exit_code(self) -> int:
        """0 when every slot was listed (and, scanned, every upload is clean); 1 otherwise."""
        if any(s.error for s in self.slots):
            return 1
        return 1 if any(v.status != "clean" for v in self.verdicts()) else 0

    def rows(self) -> list[dict[str, Any]]:
        """One row per entry (``COLUMNS``); a slot that failed gives one row with its error."""
        rows: list[dict[str, Any]] = []
        columns = COLUMNS + SCAN_COLUMNS if self.scanned else COLUMNS
        for found in self.slots:
            base = {"job": found.job, "recipient": found.recipient, "bucket": found.bucket}
            if found.error is not None:
                rows.append(base | {"key": found.slot.prefix, "name": "", "status": "error"})
            for entry in found.entries:
                rows.append(
                    base
                    | {
                        "key": entry.key,
                        "name": entry.name,
                        "status": entry.status,
                        "size": entry.size,
                        "last_modified": iso(entry.last_modified) if entry.last_modified else None,
                    }
                    | _scan_fields(entry)
                )
        return [{name: row.get(name) for name in columns} for row in rows]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "manifest": self.manifest,
            "as_of": self.as_of.isoformat(),
            "slots": [
                {
                    "job": s.job,
                    "recipient": s.recipient,
                    "bucket": s.bucket,
                    "prefix": s.slot.prefix,
                    "max_size": s.slot.max_size,
                    "keys": list(s.slot.keys),
                    "received": s.received,
                    "returned": s.returned,
                    "missing": s.missing,
                    "error": s.error,
                    "files": [
                        {
                            "key": e.key,
                            "name": e.name,
                            "status": e.status,
                            "size": e.size,
                            "last_modified": iso(e.last_modified) if e.last_modified else None,
                        }
                        | (_scan_fields(e) if self.scanned else {})
                        for e in s.entries
                    ],
                }
                for s in self.slots
            ],
        }


def _scan_fields(entry: InboxEntry) -> dict[str, Any]:
    if entry.scan is None:
        return {}
    return {
        "etag": entry.etag,
        "scan": entry.scan.status,
        "signature": entry.scan.signature,
        "quarantined_to": entry.quarantined_to,
        "scan_detail": entry.scan.detail,
    }


def entries(slot: UploadSlot, objects: list[ObjectRef]) -> tuple[InboxEntry, ...]:
    """A slot's entries: fixed keys in manifest order, then anything else in key order."""

    def entry(obj: ObjectRef, status: Status) -> InboxEntry:
        if obj.size > slot.max_size:
            status = "too_large"
        name = obj.key[len(slot.prefix) :]
        return InboxEntry(obj.key, name, status, obj.size, obj.last_modified, obj.etag)

    by_key = {obj.key: obj for obj in objects}
    found = []
    for name in slot.keys:
        obj = by_key.pop(slot.prefix + name, None)
        found.append(
            entry(obj, "received") if obj else InboxEntry(slot.prefix + name, name, "missing")
        )
    other: Status = "unexpected" if slot.keys else "received"
    found += [entry(obj, other) for obj in by_key.values()]
    return tuple(found)


async def read_inbox_async(
    manifest_path: str | Path,
    *,
    as_of: date | None = None,
    connection: Connection = Connection(),
    concurrency: int = 16,
    scan: bool = False,
    scan_concurrency: int = 4,
    scan_timeout: float = DEFAULT_TIMEOUT,
) -> Inbox:
    """List every upload slot of the manifest for ``as_of`` (default today in UTC); with
    ``scan``, judge each upload of the slots that have ``upload.scan``, at most
    ``scan_concurrency`` at once, each step with clamd bounded by ``scan_timeout`` seconds."""
    manifest = load_manifest(manifest_path, as_of=as_of)
    grants = [g for job in manifest.jobs for g in job.grants if g.upload is not None]
    if not grants:
        raise UsageError(
            f"{manifest.path}: no recipient has an upload slot (upload: in the manifest)"
        )
    if scan and not any(g.scan for g in grants):
        raise UsageError(
            f"{manifest.path}: --scan, but no upload slot says how to scan (upload.scan:"
            " {engine: clamd} or {engine: guardduty} in the manifest)"
        )
    limit = asyncio.Semaphore(concurrency)
    # Each scan holds a connection while its object streams; a pool smaller than the scans
    # would leave them waiting on each other for connections (and clamd's step timeout).
    pool = max(concurrency, scan_concurrency + SCAN_POOL_HEADROOM) if scan else concurrency
    async with S3Gateway(connection, max_connections=pool) as gateway:
        await gateway.credentials()  # no credentials: exit 3 before any listing

        async def one(grant: Grant, slot: UploadSlot) -> InboxSlot:
            target = gateway.effective(
                BucketTarget(grant.bucket, grant.region, grant.endpoint_url, grant.addressing_style)
            )
            found = InboxSlot(grant.job, grant.recipient.id, grant.bucket, slot, scan=grant.scan)
            try:
                async with limit:
                    objects = [
                        o
                        async for page in gateway.listing.list_pages(target, slot.prefix)
                        for o in page
                    ]
            except S3ListingError as exc:
                log.error(
                    "inbox_failed", job=grant.job, recipient=grant.recipient.id, error=exc.code
                )
                return replace(found, error=str(exc))
            result = replace(found, entries=entries(slot, objects))
            log.info(
                "inbox_listed",
                job=grant.job,
                recipient=grant.recipient.id,
                prefix=slot.prefix,
                received=result.received,
                missing=result.missing,
            )
            return result

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(g, g.upload)) for g in grants if g.upload]
        except BaseExceptionGroup as failed:
            # Credentials refused: every slot would fail alike; report it once (exit 3).
            ours, others = failed.split(SharebatchError)
            if ours is None or others is not None:
                raise
            raise ours.exceptions[0] from None
        slots = tuple(t.result() for t in tasks)
        if scan:
            slots = await _scan_slots(gateway, slots, grants, scan_concurrency, scan_timeout)
    return Inbox(manifest.path, manifest.as_of, slots, scanned=scan)


async def _scan_slots(
    gateway: S3Gateway,
    slots: tuple[InboxSlot, ...],
    grants: list[Grant],
    concurrency: int,
    step_timeout: float,
) -> tuple[InboxSlot, ...]:
    """Every uploaded file of the scanned slots judged; the entries given their verdicts.

    A folder two jobs share (one recipient's) is listed twice but scanned once per object.
    """
    uploads: dict[tuple[BucketTarget, str], Upload] = {}
    targets: list[BucketTarget] = []
    for found, grant in zip(slots, grants, strict=True):
        target = gateway.effective(
            BucketTarget(grant.bucket, grant.region, grant.endpoint_url, grant.addressing_style)
        )
        targets.append(target)
        if found.scan is None or found.error is not None:
            continue
        for e in found.entries:
            if e.size is not None:
                upload = Upload(
                    found.job, found.recipient, target, e.key, e.etag or "", e.size, found.scan
                )
                uploads.setdefault((target, e.key), upload)
    done = await scan_objects(
        gateway, list(uploads.values()), concurrency=concurrency, step_timeout=step_timeout
    )
    judged: dict[tuple[BucketTarget, str], Judged] = {
        (j.upload.target, j.upload.key): j for j in done
    }

    def with_verdict(target: BucketTarget, entry: InboxEntry) -> InboxEntry:
        found = judged.get((target, entry.key))
        if found is None:
            return entry
        return replace(entry, scan=found.verdict, quarantined_to=found.quarantined_to)

    return tuple(
        replace(found, entries=tuple(with_verdict(target, e) for e in found.entries))
        if found.scan is not None
        else found
        for found, target in zip(slots, targets, strict=True)
    )


read_inbox = blocking(read_inbox_async)


def write_inbox_csv(inbox: Inbox, dest: str | Path) -> str:
    """Write ``inbox.rows()`` to ``dest`` (atomically, 0600); return the file's sha256."""
    try:
        columns = COLUMNS + SCAN_COLUMNS if inbox.scanned else COLUMNS
        return write_csv(Path(dest), columns, inbox.rows())
    except OSError as exc:
        raise UsageError(f"cannot write {dest}: {exc.strerror or exc}") from None


def inbox_gauges(inbox: Inbox, finished_at: datetime) -> list[Gauge]:
    """Prometheus gauges of an inbox (``run/metrics`` format): files per status, and, when it
    was scanned, files per scan verdict (every verdict, zeros too, so alerts see 0 -> 1)."""
    own = {"manifest": inbox.manifest}
    files = [e for s in inbox.slots for e in s.entries]
    gauges: list[Gauge] = [
        (
            "inbox_files",
            "Files in the manifest's upload slots, by status.",
            {
                labels(**own, status=status): sum(e.status == status for e in files)
                for status in STATUS_NAMES
            },
        ),
        (
            "inbox_slot_errors",
            "Upload slots that could not be listed.",
            {labels(**own): sum(s.error is not None for s in inbox.slots)},
        ),
        ("inbox_exit_code", "The inbox command's exit code.", {labels(**own): inbox.exit_code}),
        (
            "inbox_finished_timestamp_seconds",
            "When the inbox was read (Unix time).",
            {labels(**own): finished_at.timestamp()},
        ),
    ]
    if inbox.scanned:
        verdicts = inbox.verdicts()
        gauges += [
            (
                "inbox_scan_files",
                "Uploads of scanned slots, by verdict.",
                {
                    labels(**own, verdict=status): sum(v.status == status for v in verdicts)
                    for status in STATUSES
                },
            ),
            (
                "inbox_scan_seconds",
                "Seconds spent in the scans this call made.",
                {labels(**own): sum(v.seconds or 0.0 for v in verdicts)},
            ),
            (
                "inbox_quarantined_files",
                "Uploads moved to the quarantine by this call.",
                {
                    labels(**own): sum(
                        e.quarantined_to is not None for s in inbox.slots for e in s.entries
                    )
                },
            ),
        ]
    return gauges
