"""``Inventories``: each S3 Inventory report read once, for every prefix that needs it.

A run registers each (source, bucket target, prefix) it will ask for, then asks for pages.
The first ask reads the report: found and checked (``locate``), refused when older than
``max_age`` or made for another bucket, its data files read at most ``FILES_AT_ONCE`` at a
time, each streamed and checked against its manifest MD5 and size, every row under one of
the registered prefixes kept (``sort``). Every later ask, for any prefix, waits for that one
read. A report that cannot be used raises ``InventoryError`` for each of its prefixes, so
each job reading it fails and the others go on.

With ``verify_sample: N``, N rows of the report (under the prefixes, picked at random with
the manifest's MD5 as the seed, so the same report gives the same sample) are HEADed in the
source bucket; what is gone or changed since the report was made is its drift.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharebatch.audit import get_logger
from sharebatch.child import cores
from sharebatch.errors import InventoryError, RunCrashed, S3ReadError
from sharebatch.files import private_dir
from sharebatch.inventory.locate import DataFile, Report, locate
from sharebatch.inventory.parsing import Parsers
from sharebatch.inventory.rows import Columns, CsvGzRows, Row, parquet_rows
from sharebatch.inventory.sample import Sample
from sharebatch.inventory.sort import DEFAULT_BOUND, KeySorter
from sharebatch.manifest.inventory import InventorySource
from sharebatch.models import BucketTarget, ObjectRef
from sharebatch.times import iso

if TYPE_CHECKING:  # the AWS SDK is imported when a gateway opens, not with this module
    from sharebatch.s3.gateway import S3Gateway

log = get_logger()

FILES_AT_ONCE = 4
PARSE_APART = 4 << 20
"""From this many bytes of CSV.gz data files on (some 150,000 rows), a report is parsed by
child processes, one per core (``parsing``): below it, starting them costs more than the
second core wins back."""
HEADS_AT_ONCE = 8
DRIFT_LISTED = 100  # drifted objects named in the summary (all are counted and logged)

Key = tuple[InventorySource, BucketTarget]


@dataclass
class Drift:
    key: str
    problem: str  # missing, size, etag, error
    detail: str


@dataclass
class _Read:
    source: InventorySource
    target: BucketTarget  # the source bucket's (effective) target
    prefixes: set[str] = field(default_factory=set)
    task: asyncio.Task[KeySorter] | None = None
    report: Report | None = None
    rows: int = 0
    kept: int = 0
    sampled: int = 0
    drift: list[Drift] = field(default_factory=list)
    drift_count: int = 0
    sorter: KeySorter | None = None
    sample: list[ObjectRef] = field(default_factory=list)
    error: str | None = None


class Inventories:
    """The reports a run reads. ``folder``: a private folder for spilled runs (None: a
    temporary one); ``clock`` judges ``max_age``; ``bound``: rows held in memory per report;
    ``data_files``: which data files (by index) to read, for a shard (None: all)."""

    def __init__(
        self,
        gateway: S3Gateway,
        folder: Path | None,
        *,
        clock: Callable[[], datetime],
        bound: int | None = None,
        data_files: Callable[[int], bool] | None = None,
    ) -> None:
        self._gateway = gateway
        # A shard's share of every report: the data files (by their index in manifest.json's
        # list) it reads; None reads them all.
        self._data_files = data_files
        self._own = folder is None
        self._folder = (
            Path(tempfile.mkdtemp(prefix="sharebatch-inventory-")) if folder is None else folder
        )
        self._clock = clock
        # Read when made, not when defined: a test bounds memory to a few rows.
        self._bound = DEFAULT_BOUND if bound is None else bound
        self._reads: dict[Key, _Read] = {}

    def add(self, source: InventorySource, target: BucketTarget, prefix: str) -> None:
        """A prefix that will be asked for: before the first ``pages``."""
        read = self._reads.setdefault((source, target), _Read(source, target))
        if read.task is not None:
            raise RuntimeError("prefixes are registered before the report is read")
        read.prefixes.add(prefix)

    async def pages(
        self, source: InventorySource, target: BucketTarget, prefix: str
    ) -> AsyncIterator[list[ObjectRef]]:
        """The prefix's objects in key order, a page of at most 1,000 at a time."""
        read = self._reads[(source, target)]
        if read.task is None:
            read.task = asyncio.ensure_future(self._read(read))
        # Shielded: one prefix's listing cancelled (its job failing) leaves the others' read.
        sorter = await asyncio.shield(read.task)
        for page in sorter.pages(prefix):
            yield page
            await asyncio.sleep(0)

    def reports(self) -> list[dict[str, Any]]:
        """What ``summary.json`` records of each report read (or tried)."""
        found = []
        for read in self._reads.values():
            report = read.report
            entry: dict[str, Any] = {
                "source": read.source.inventory,
                "bucket": read.target.bucket,
                "manifest": report.uri if report else None,
                "created_at": iso(report.created_at) if report else None,
                "format": report.file_format if report else None,
                "data_files": len(report.files) if report else 0,
                "rows": read.rows,
                "kept": read.kept,
                "status": "failed" if read.error else "read",
            }
            if read.error:
                entry["error"] = read.error
            if read.source.verify_sample:
                entry["verify"] = {
                    "sampled": read.sampled,
                    "drifted": read.drift_count,
                    "drift": [vars(d) for d in read.drift[:DRIFT_LISTED]],
                }
            found.append(entry)
        return found

    def header(self, source: InventorySource, target: BucketTarget) -> dict[str, str] | None:
        """What a bundle's header records of the report its links were made from."""
        read = self._reads.get((source, target))
        if read is None or read.report is None:
            return None
        return {
            "source": source.inventory,
            "manifest": read.report.uri,
            "created_at": iso(read.report.created_at),
        }

    def close(self) -> None:
        """Cancel reads still under way and remove every spilled run."""
        for read in self._reads.values():
            if read.task is not None and not read.task.done():
                read.task.cancel()
            if read.sorter is not None:
                read.sorter.remove()
        if self._own:
            shutil.rmtree(self._folder, ignore_errors=True)

    async def _read(self, read: _Read) -> KeySorter:
        source = read.source
        try:
            sorter = await self._read_report(read)
        except InventoryError as exc:
            read.error = str(exc)
            log.error("inventory_failed", source=source.inventory, error=str(exc))
            if read.sorter is not None:
                read.sorter.remove()
            raise
        if source.verify_sample:
            await self._verify(read)
        return sorter

    async def _read_report(self, read: _Read) -> KeySorter:
        source, target = read.source, read.target
        place = BucketTarget(
            bucket=source.bucket,
            region=target.region,
            endpoint_url=target.endpoint_url,
            addressing_style=target.addressing_style,
        )
        report = await locate(self._gateway, place, source.key)
        read.report = report
        age = self._clock() - report.created_at
        if source.max_age is not None and age.total_seconds() > source.max_age:
            raise InventoryError(
                "StaleInventory",
                f"{report.uri} was made at {iso(report.created_at)}, {_days(age.total_seconds())}"
                f" ago: older than max_age {_days(source.max_age)}",
            )
        if report.source_bucket != target.bucket:
            raise InventoryError(
                "WrongBucket",
                f"{report.uri} lists bucket {report.source_bucket!r}, not {target.bucket!r}",
            )
        kind = report.file_format.upper()
        if kind == "ORC":
            raise InventoryError(
                "UnsupportedFormat",
                f"{report.uri} is ORC, which sharebatch does not read: configure the inventory"
                " with CSV or Parquet",
            )
        if kind not in ("CSV", "PARQUET"):
            raise InventoryError(
                "UnknownFormat", f"{report.uri}: fileFormat {report.file_format!r} is unknown"
            )
        columns = Columns.of(report.columns, report.uri) if kind == "CSV" else None
        folder = self._folder / hashlib.sha256(report.uri.encode()).hexdigest()[:16]
        private_dir(folder)
        sorter = KeySorter(folder, target.bucket, sorted(read.prefixes), self._bound)
        read.sorter = sorter
        sample = Sample(source.verify_sample, report.md5)

        def accept(rows: list[Row]) -> None:
            read.rows += len(rows)
            kept = sorter.keep(rows)
            read.kept += len(kept)
            if source.verify_sample:
                for row in kept:
                    sample.offer(row)

        files = asyncio.Semaphore(FILES_AT_ONCE)
        wanted = [
            data
            for index, data in enumerate(report.files)
            if self._data_files is None or self._data_files(index)
        ]
        count = min(cores(), len(wanted))
        parsers = None
        if columns is not None and count > 1 and sum(d.size for d in wanted) >= PARSE_APART:
            parsers = await Parsers.start(
                count,
                folder,
                sorted(read.prefixes),
                self._bound,
                columns,
                (source.verify_sample, report.md5),
            )

        async def one(data: DataFile) -> None:
            async with files:
                await self._read_file(place, data, columns, accept, folder, parsers)

        try:
            async with asyncio.TaskGroup() as group:
                for data in wanted:
                    group.create_task(one(data))
            if parsers is not None:
                parsed = await parsers.finish()
                sorter.adopt(parsed.runs)
                read.rows += parsed.rows
                read.kept += parsed.kept
                for row in parsed.sample:
                    sample.offer(row)
        except BaseExceptionGroup as failed:
            # The first bad file names the problem; the group's other reads were cancelled. A
            # parser process that died fails the run as it is (no report's fault).
            ours, others = failed.split((InventoryError, RunCrashed))
            if ours is None or others is not None:
                raise
            first: BaseException = ours
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        finally:
            if parsers is not None:
                await parsers.close()
        read.sample = sample.chosen(target.bucket)
        log.info(
            "inventory_read",
            source=source.inventory,
            manifest=report.uri,
            created_at=iso(report.created_at),
            data_files=len(report.files),
            rows=read.rows,
            kept=read.kept,
            spilled_runs=sorter.spilled,
            parsers=count if parsers is not None else 0,
        )
        return sorter

    async def _read_file(
        self,
        place: BucketTarget,
        data: DataFile,
        columns: Columns | None,
        accept: Callable[[list[Row]], None],
        folder: Path,
        parsers: Parsers | None,
    ) -> None:
        where = f"s3://{place.bucket}/{data.key}"
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        csv_rows = None
        if columns is not None and parsers is None:
            csv_rows = CsvGzRows(columns, accept, where)
        copy: Path | None = None
        fd: int | None = None
        try:
            if csv_rows is None:
                copy = folder / f"data-{hashlib.sha256(data.key.encode()).hexdigest()[:16]}"
                fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            # 256 KiB read at a time: its rows are one batch held beside the sorter's bound.
            async for chunk in self._gateway.read_object(place, data.key, chunk_size=1 << 18):
                digest.update(chunk)
                size += len(chunk)
                if csv_rows is not None:
                    csv_rows.feed(chunk)
                elif fd is not None:
                    _write_all(fd, chunk)
            if fd is not None:
                os.close(fd)
                fd = None
            if size != data.size or digest.hexdigest() != data.md5:
                raise InventoryError(
                    "BadDataFile",
                    f"{where}: {size} bytes of MD5 {digest.hexdigest()}, the manifest says"
                    f" {data.size} bytes of MD5 {data.md5}",
                )
            if csv_rows is not None:
                csv_rows.finish()
            elif parsers is not None and copy is not None:
                # Checked whole, then parsed by a child, which removes the copy.
                await parsers.parse(copy, where)
                copy = None
            elif copy is not None:
                # Parquet's index is at its end: the file is read from a private copy on disk,
                # in the loop (rows go to the one sorter, which is not shared across threads).
                parquet_rows(copy, accept, where)
        except S3ReadError as exc:
            raise InventoryError(exc.code, f"{where}: {exc}") from None
        finally:
            if fd is not None:
                os.close(fd)
            if copy is not None:
                copy.unlink(missing_ok=True)

    async def _verify(self, read: _Read) -> None:
        chosen = read.sample
        heads = asyncio.Semaphore(HEADS_AT_ONCE)
        report = read.report

        async def one(obj: ObjectRef) -> None:
            async with heads:
                found = await self._gateway.head_object(read.target, obj.key)
            drift = _drift(obj, found.status, found.size, found.etag, found.error)
            if drift is None:
                return
            read.drift_count += 1
            read.drift.append(drift)
            log.warning(
                "inventory_drift",
                source=read.source.inventory,
                bucket=read.target.bucket,
                key=obj.key,
                problem=drift.problem,
                detail=drift.detail,
            )

        async with asyncio.TaskGroup() as group:
            for obj in chosen:
                group.create_task(one(obj))
        read.sampled = len(chosen)
        read.drift.sort(key=lambda d: d.key.encode())
        log.info(
            "inventory_verified",
            source=read.source.inventory,
            manifest=report.uri if report else None,
            sampled=read.sampled,
            drifted=read.drift_count,
        )


def _drift(
    obj: ObjectRef, status: int | None, size: int | None, etag: str | None, error: str | None
) -> Drift | None:
    if status == 404:
        return Drift(obj.key, "missing", "gone since the report was made")
    if status != 200:
        return Drift(obj.key, "error", f"HEAD answered {status or error}")
    if size != obj.size:
        return Drift(obj.key, "size", f"{obj.size} bytes in the report, {size} now")
    if etag != obj.etag:
        return Drift(obj.key, "etag", f"ETag {obj.etag} in the report, {etag} now")
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _days(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    return f"{seconds / 3600:.1f} hours"
