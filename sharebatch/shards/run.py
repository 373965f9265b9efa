"""``sharebatch run MANIFEST --shard K/N --run-id ID``: one shard of a run, up to its parts.

The whole plan is built (route and task indexes stay those of a one-machine run), then only
the list tasks this shard owns (``assign``), or with splitting on its share of every listed
task (``segments``), are listed, signed and staged, exactly as a one-machine run stages
them. The shard stops before the write stage: its part files and its record (``record``) are
what ``merge`` joins into bundles once every shard has finished.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharebatch.audit import audit_file, get_logger
from sharebatch.audit import flush as audit_flush
from sharebatch.blocking import blocking
from sharebatch.errors import Interrupted, RunCrashed, SharebatchError, UsageError
from sharebatch.files import private_dir
from sharebatch.manifest.load import load_manifest
from sharebatch.models import BucketTarget, Connection, Credentials
from sharebatch.run import signals
from sharebatch.run.bundles import Part, PartFile
from sharebatch.run.cfsign import CloudFrontKeys
from sharebatch.run.folder import RunFolder, RunLock
from sharebatch.run.pages import page_lifetimes
from sharebatch.run.pipeline import Staged, first_error, stage
from sharebatch.run.plan import Plan, build_plan
from sharebatch.run.runner import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, MAX_WORKERS, RUN_ID
from sharebatch.run.sign import check_lifetimes, credential_kind
from sharebatch.run.slots import slot_lifetimes
from sharebatch.shards import record as layout
from sharebatch.shards.assign import owned, reads_data_file
from sharebatch.shards.segments import SegmentShare
from sharebatch.shards.spec import ShardSpec
from sharebatch.times import iso
from sharebatch.version import __version__

if TYPE_CHECKING:
    from sharebatch.s3.gateway import S3Gateway

log = get_logger()


@dataclass(frozen=True)
class ShardSummary:
    """A finished shard: its folder and status (``failed``: a prefix it could not list)."""

    run_id: str
    shard: ShardSpec
    path: Path
    status: str
    failures: list[dict[str, Any]]

    @property
    def exit_code(self) -> int:
        # Non-zero makes the scheduler retry this index (the record stays for the merge).
        return 0 if self.status == "ok" else 1


async def run_shard_async(
    manifest_path: str | Path,
    *,
    shard: ShardSpec,
    run_id: str,
    out: str | Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    connection: Connection = Connection(),
    as_of: date | None = None,
    split_folders: bool = True,
    workers: int | None = None,
) -> ShardSummary:
    """Stage shard ``shard`` of the run ``run_id`` into ``OUT/<run-id>/shards/<K>-of-<N>/``."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {MAX_WORKERS}")
    if not RUN_ID.fullmatch(run_id):
        raise UsageError(f"--run-id {run_id!r} cannot name a run folder")
    started_at = datetime.now(UTC)
    manifest = load_manifest(manifest_path, as_of=as_of, now=started_at)
    plan = build_plan(manifest)
    mine = owned(plan, shard, split=split_folders)
    cloudfront = CloudFrontKeys.load(route.grant for route in plan.routes)
    out_dir = Path(out if out is not None else manifest.output_folder() or "bundles")
    # Imported here: ``cli/shards`` imports this module for ``merge`` too, which need not pay
    # the AWS SDK's import (~0.6 s of CPU).
    from sharebatch.s3.gateway import S3Gateway

    async with S3Gateway(connection, max_connections=concurrency) as gateway:
        credentials = await gateway.credentials()
        now = datetime.now(UTC)
        check_lifetimes(
            credentials,
            [
                (r.job, r.recipient, r.grant.expiry, r.grant.on_short_credentials)
                for r in plan.routes
                if r.grant.link == "s3"
            ],
            now,
            slots=slot_lifetimes(plan),
            pages=page_lifetimes(plan, now),
        )
        try:
            shards = private_dir(out_dir / run_id / layout.SHARDS)
        except OSError as exc:
            raise UsageError(f"cannot create {out_dir / run_id}: {exc.strerror}") from None
        # Two copies of one shard (a retry while the first still runs) take turns; other
        # shards of the run do not wait.
        lock = RunLock.acquire(shards, run_id, name=f".{shard.name}.lock")
        try:
            layout.discard_temps(shards, shard)
            folder = RunFolder.create(shards, layout.temp_name(shard))
            try:
                return await _staged(
                    plan,
                    mine,
                    shard,
                    run_id,
                    folder,
                    gateway,
                    credentials,
                    cloudfront,
                    manifest_bytes=await asyncio.to_thread(Path(manifest_path).read_bytes),
                    started_at=started_at,
                    concurrency=concurrency,
                    split_folders=split_folders,
                    workers=workers,
                )
            finally:
                # Renamed into place when it finished; anything left here is not a shard.
                shutil.rmtree(folder.path, ignore_errors=True)
        finally:
            lock.release()


run_shard = blocking(run_shard_async, run=signals.run_interruptible)


async def _staged(
    plan: Plan,
    mine: list[int],
    shard: ShardSpec,
    run_id: str,
    folder: RunFolder,
    gateway: S3Gateway,
    credentials: Credentials,
    cloudfront: CloudFrontKeys,
    *,
    manifest_bytes: bytes,
    started_at: datetime,
    concurrency: int,
    split_folders: bool,
    workers: int | None,
) -> ShardSummary:
    (folder.path / layout.MANIFEST_COPY).write_bytes(manifest_bytes)
    ours = Plan(plan.manifest, plan.routes, tuple(plan.tasks[i] for i in mine))
    share = SegmentShare(plan, shard) if split_folders else None
    try:
        with audit_file(folder.audit_path):
            log.info("run_started", run_id=run_id, version=__version__, shard=shard.name)
            log.info(
                "manifest_loaded",
                path=plan.manifest.path,
                sha256=plan.manifest.sha256,
                as_of=plan.manifest.as_of.isoformat(),
            )
            clock = time.monotonic()
            staged = await stage(
                ours,
                gateway=gateway,
                credentials=credentials,
                folder=folder,
                concurrency=concurrency,
                split_folders=split_folders,
                cloudfront=cloudfront.route_signer,
                workers=workers,
                data_files=reads_data_file(shard),
                share=share,
            )
            signals.commit()
            targets = [gateway.effective(route.target) for route in plan.routes]
            record = _record(plan, mine, staged, shard, run_id, credentials, started_at, share)
            record["targets"] = [asdict(target) for target in targets]
            record["inventories"] = _inventories(plan, staged, targets)
            record["duration_seconds"] = round(time.monotonic() - clock, 3)
            failures = [t["failure"] for t in record["tasks"] if t["failure"] is not None]
            status = "failed" if failures else "ok"
            log.info(
                "shard_finished",
                run_id=run_id,
                shard=shard.name,
                status=status,
                prefixes=len(mine),
                links=sum(r["links"] for r in record["routes"]),
            )
            audit_flush()
        (folder.staging).rename(folder.path / layout.PARTS)
        layout.write_finished(folder.path, record, status)
        final = layout.put_in_place(folder.path, shard)
    except SharebatchError:
        raise
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise Interrupted(signals.received() or "SIGINT") from None
    except Exception as exc:  # noqa: BLE001 - re-raised as RunCrashed
        cause = first_error(exc)
        raise RunCrashed(f"shard {shard.name} of run {run_id} failed: {cause!r}") from cause
    return ShardSummary(run_id, shard, final, status, failures)


def _record(
    plan: Plan,
    mine: list[int],
    staged: Staged,
    shard: ShardSpec,
    run_id: str,
    credentials: Credentials,
    started_at: datetime,
    share: SegmentShare | None,
) -> dict[str, Any]:
    """What the merge needs of this shard, as plain JSON (see ``record``)."""
    tasks = []
    for index, tally in zip(mine, staged.prefixes, strict=True):
        failure = tally.failure
        seen = share.of(index) if share is not None else {"split": None, "unprobed": None}
        tasks.append(
            {
                "index": index,
                "bucket": tally.bucket,
                "prefix": tally.prefix,
                "objects": tally.objects,
                "bytes": tally.bytes,
                "seconds": tally.seconds,
                "failure": asdict(failure) if failure is not None else None,
                **seen,
            }
        )
    routes = []
    for route in staged.routes:
        clamped = route.signer.clamped_to if route.signer is not None else None
        routes.append(
            {
                "index": route.index,
                "links": route.links,
                "bytes": route.bytes,
                "unlinkable": route.unlinkable,
                "unlinkable_count": route.unlinkable_count,
                "clamped_to": iso(clamped) if clamped else None,
                "segments": [
                    [_part(part) for part in position if part.rows] for position in route.segments
                ],
            }
        )
    manifest = plan.manifest
    return {
        "format": layout.FORMAT,
        "run_id": run_id,
        "shard": shard.name,
        "started_at": iso(started_at),
        "finished_at": iso(datetime.now(UTC)),
        "manifest": {
            "path": manifest.path,
            "sha256": manifest.sha256,
            "as_of": manifest.as_of.isoformat(),
        },
        "plan": {"tasks": len(plan.tasks), "routes": len(plan.routes)},
        # Every shard probes every listed task and lists its share of it (``segments``).
        "split": share is not None,
        "credentials": {
            "access_key_id": credentials.access_key_id,
            "method": credentials.method,
            "kind": credential_kind(credentials),
            "expires_at": iso(credentials.expiry) if credentials.expiry else None,
        },
        "tasks": tasks,
        "routes": routes,
    }


def _part(part: Part) -> dict[str, Any]:
    """A staged part as the merge finds it again: name, rows, earliest end, sizes."""
    # A shard joins nothing: each of its parts is a file it staged.
    assert isinstance(part, PartFile)
    return {
        "name": part.path.name,
        "rows": part.rows,
        "earliest_expiry": iso(part.earliest_expiry) if part.earliest_expiry else None,
        "bytes": part.path.stat().st_size,
        "csv_bytes": part.csv_path.stat().st_size if part.csv_path is not None else None,
    }


def _inventories(plan: Plan, staged: Staged, targets: list[BucketTarget]) -> dict[str, Any]:
    """The S3 Inventory reports this shard read: the summary's entries, and by route the
    report its header names (the merge holds every shard to the same report)."""
    found = staged.inventories
    if found is None:
        return {"reports": [], "headers": {}}
    headers = {}
    for route in plan.routes:
        source = route.grant.source
        header = found.header(source, targets[route.index]) if source is not None else None
        if header is not None:
            headers[str(route.index)] = header
    return {"reports": found.reports(), "headers": headers}
