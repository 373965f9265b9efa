"""What recipients sent back: the objects in each upload slot of a manifest, for its period.

``read_inbox`` resolves the manifest for a run date (so ``{period.*}`` in slot prefixes names
the period asked about), lists every slot prefix through ``s3`` and returns one ``InboxSlot``
per recipient with a slot: each object with its size and time, each fixed key not yet
uploaded, objects a fixed-key slot did not ask for, and files over ``max_size`` (a PUT URL
cannot limit the size; this is where ops see it). A slot that cannot be listed is reported
with its error and the others go on; credential problems end the whole listing (exit 3).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from sharebatch.audit import get_logger
from sharebatch.blocking import blocking
from sharebatch.errors import S3ListingError, SharebatchError, UsageError
from sharebatch.manifest.load import Grant, load_manifest
from sharebatch.models import BucketTarget, Connection, ObjectRef, UploadSlot
from sharebatch.run.bundles import write_csv
from sharebatch.s3.gateway import S3Gateway
from sharebatch.times import iso

log = get_logger()

Status = Literal["received", "too_large", "missing", "unexpected"]

COLUMNS = ("job", "recipient", "bucket", "key", "name", "status", "size", "last_modified")


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


@dataclass(frozen=True, slots=True)
class InboxSlot:
    """One recipient's slot and what is in it; ``error`` when it could not be listed."""

    job: str
    recipient: str
    bucket: str
    slot: UploadSlot
    entries: tuple[InboxEntry, ...] = ()
    error: str | None = None

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

    @property
    def exit_code(self) -> int:
        """0 when every slot was listed; 1 when some could not be (see each ``error``)."""
        return 1 if any(s.error for s in self.slots) else 0

    def rows(self) -> list[dict[str, Any]]:
        """One row per entry (``COLUMNS``); a slot that failed gives one row with its error."""
        rows: list[dict[str, Any]] = []
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
                )
        return [{name: row.get(name) for name in COLUMNS} for row in rows]

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
                        for e in s.entries
                    ],
                }
                for s in self.slots
            ],
        }


def entries(slot: UploadSlot, objects: list[ObjectRef]) -> tuple[InboxEntry, ...]:
    """A slot's entries: fixed keys in manifest order, then anything else in key order."""

    def entry(obj: ObjectRef, status: Status) -> InboxEntry:
        if obj.size > slot.max_size:
            status = "too_large"
        name = obj.key[len(slot.prefix) :]
        return InboxEntry(obj.key, name, status, obj.size, obj.last_modified)

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
) -> Inbox:
    """List every upload slot of the manifest for ``as_of`` (default today in UTC)."""
    manifest = load_manifest(manifest_path, as_of=as_of)
    grants = [g for job in manifest.jobs for g in job.grants if g.upload is not None]
    if not grants:
        raise UsageError(
            f"{manifest.path}: no recipient has an upload slot (upload: in the manifest)"
        )
    limit = asyncio.Semaphore(concurrency)
    async with S3Gateway(connection, max_connections=concurrency) as gateway:
        await gateway.credentials()  # no credentials: exit 3 before any listing

        async def one(grant: Grant, slot: UploadSlot) -> InboxSlot:
            target = gateway.effective(
                BucketTarget(grant.bucket, grant.region, grant.endpoint_url, grant.addressing_style)
            )
            found = InboxSlot(grant.job, grant.recipient.id, grant.bucket, slot)
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
                return InboxSlot(found.job, found.recipient, found.bucket, slot, error=str(exc))
            result = InboxSlot(
                found.job, found.recipient, found.bucket, slot, entries(slot, objects)
            )
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
    return Inbox(manifest.path, manifest.as_of, tuple(t.result() for t in tasks))


read_inbox = blocking(read_inbox_async)


def write_inbox_csv(inbox: Inbox, dest: str | Path) -> str:
    """Write ``inbox.rows()`` to ``dest`` (atomically, 0600); return the file's sha256."""
    try:
        return write_csv(Path(dest), COLUMNS, inbox.rows())
    except OSError as exc:
        raise UsageError(f"cannot write {dest}: {exc.strerror or exc}") from None
