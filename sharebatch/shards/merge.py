"""``sharebatch merge OUT/<run-id>``: every shard's parts joined into the run's bundles.

It waits for nothing: every shard ``0..N-1`` must have finished (``record``), else
``ShardsIncomplete`` (exit 1) names the missing ones and nothing is written. The shards must
share the run id, the shard count and the manifest's sha256 (else ``ShardMismatch``, exit 2,
naming the shard). Then the write stage of a one-machine run, over the shards' parts: headers,
upload slots, recipient pages and bundles, each route's parts joined by prefix position and
segment (the order of one machine), ``max_links`` judged on the totals; the review page,
``delivery.json``, the audit log (the shards' events merged in time order, each with its
``shard``, then the merge's own) and ``summary.json``, written last.

Under OUT's run lock: a second merge at the same time exits 75; one after it finds
``summary.json`` and returns it (the work is done). A merge that breaks off removes what it
wrote and writes no summary, so nothing of it looks complete and the next merge starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sharebatch.audit import audit_file, get_logger
from sharebatch.audit import flush as audit_flush
from sharebatch.audit import release as audit_release
from sharebatch.blocking import blocking
from sharebatch.errors import (
    Interrupted,
    RunCrashed,
    ShardMismatch,
    ShardsIncomplete,
    SharebatchError,
    SigningError,
    UsageError,
)
from sharebatch.files import write_json
from sharebatch.inventory.reader import DRIFT_LISTED, Inventories
from sharebatch.manifest.inventory import InventorySource
from sharebatch.manifest.load import Manifest, load_manifest
from sharebatch.models import (
    BucketTarget,
    Connection,
    Credentials,
    Link,
    LinkKind,
    ObjectRef,
    PrefixFailure,
    RunSummary,
)
from sharebatch.run import signals
from sharebatch.run.bundles import PartFile
from sharebatch.run.folder import RunFolder, RunLock
from sharebatch.run.pipeline import PrefixTally, RouteTally, Staged, first_error
from sharebatch.run.plan import Plan, build_plan
from sharebatch.run.runner import needs_s3, read_templates, write_outputs
from sharebatch.run.select import Selector
from sharebatch.shards import record as layout
from sharebatch.shards.assign import owned
from sharebatch.shards.events import Merging, merge_logs
from sharebatch.shards.join import ROWS, JoinedPart
from sharebatch.shards.record import ShardRecord
from sharebatch.shards.segments import check as check_segments
from sharebatch.shards.spec import ShardSpec
from sharebatch.times import parse_iso
from sharebatch.version import __version__
from sharebatch.visible import visible

log = get_logger()

UNLINKABLE_LISTED = 1000


async def merge_run_async(
    out: Path,
    run_id: str,
    *,
    manifest: Path | None = None,
    connection: Connection = Connection(),
) -> RunSummary:
    """Merge the shards of ``OUT/<run-id>`` into the run; see the module's docstring.

    ``manifest``: the manifest file (default: the copy each shard keeps; give the original
    when it names templates or keys by relative paths). Credentials are read only when a
    route needs an upload slot or a recipient page signed.
    """
    run_dir = out / run_id
    if not (run_dir / layout.SHARDS).is_dir():
        raise UsageError(
            f"{visible(str(run_dir))} holds no shards (run --shard K/N --run-id"
            f" {visible(run_id)} writes them there)"
        )
    lock = RunLock.acquire(out, run_id)
    try:
        shards = _complete_shards(run_dir)
        done = run_dir / layout.SUMMARY
        if done.is_file():
            found = _done(run_dir, done, shards)
            if found is not None:
                return found
            # A shard was run again since (a retry of a failed one): merged again, and
            # until then the run has no summary.
            done.unlink()
        try:
            return await _merge(out, run_id, shards, manifest, connection)
        finally:
            # The inventory prefixes' joined parts, read by the write stage and the review.
            RunFolder(out, run_id).discard_staging()
    finally:
        lock.release()


merge_run = blocking(merge_run_async, run=signals.run_interruptible)


def _done(run_dir: Path, path: Path, shards: list[ShardRecord]) -> RunSummary | None:
    """The merged run's summary when it merged these very shards, else None."""
    report = json.loads(path.read_text(encoding="utf-8"))
    if report.get("shards") != _fingerprint(shards):
        return None
    log.info("merge_already_done", run_id=report.get("run_id"), status=report.get("status"))
    return RunSummary(
        run_id=str(report.get("run_id")),
        status=report.get("status", "failed"),
        run_dir=str(run_dir),
        report=report,
    )


def _unchanged(run_dir: Path, shards: list[ShardRecord]) -> None:
    """Each shard still the one merged: a shard run again meanwhile (shards do not take
    OUT's lock) would have swapped its folder under the merge, which then writes no summary."""
    for shard in shards:
        path = run_dir / layout.SHARDS / shard.spec.name / layout.SUMMARY
        try:
            digest = json.loads(path.read_text(encoding="utf-8")).get("record_sha256")
        except (OSError, ValueError):
            digest = None
        if digest != shard.record_sha256:
            raise ShardsIncomplete(
                f"shard {shard.spec.name} was run again during the merge; merge again"
            )


def _fingerprint(shards: list[ShardRecord]) -> dict[str, str]:
    """Each shard's record sha256 by name: which shards a merged run was made of."""
    return {s.spec.name: s.record_sha256 for s in shards}


def _complete_shards(run_dir: Path) -> list[ShardRecord]:
    """Every shard, finished and of one run, in order; else the error naming which."""
    finished, counts, _ = layout.found_shards(run_dir / layout.SHARDS)
    if not counts:
        raise ShardsIncomplete(f"{visible(str(run_dir))}: no shard has started yet")
    if len(counts) > 1:
        raise ShardMismatch(
            f"{visible(str(run_dir))}: shards of different counts"
            f" ({', '.join(map(str, sorted(counts)))})"
        )
    count = counts.pop()
    missing = [ShardSpec(i, count).name for i in range(count) if i not in finished]
    if missing:
        raise ShardsIncomplete(
            f"{visible(str(run_dir))}: shard{'s' if len(missing) > 1 else ''}"
            f" {', '.join(missing)} of {count} not finished; re-run"
            f" {'them' if len(missing) > 1 else 'it'} (same --run-id), then merge again"
        )
    records = [finished[i] for i in range(count)]
    first = records[0].record
    for shard in records:
        # Not the manifest's path: each machine may keep it elsewhere.
        for what, of in (
            ("run id", lambda r: r["run_id"]),
            ("manifest", lambda r: (r["manifest"]["sha256"], r["manifest"]["as_of"])),
            ("S3 endpoint or region", lambda r: r["targets"]),
        ):
            if of(shard.record) != of(first):
                raise ShardMismatch(
                    f"shard {shard.spec.name}: its {what} differs from shard"
                    f" {records[0].spec.name}'s (a shard of another run or manifest)"
                )
    if first["run_id"] != run_dir.name:
        raise ShardMismatch(
            f"shard {records[0].spec.name}: run id {first['run_id']!r}, not {run_dir.name!r}"
        )
    return records


def _load(shards: list[ShardRecord], manifest: Path | None) -> Manifest:
    recorded = shards[0].record["manifest"]
    path = manifest or shards[0].path / layout.MANIFEST_COPY
    # The shards signed every link: the merge reads no CloudFront private key.
    loaded = load_manifest(
        path,
        as_of=datetime.fromisoformat(recorded["as_of"]).date(),
        now=datetime.now(UTC),
        load_keys=False,
    )
    if loaded.sha256 != recorded["sha256"]:
        raise ShardMismatch(
            f"{visible(str(path))} has sha256 {loaded.sha256}; the shards ran {recorded['sha256']}"
        )
    return loaded


class _Recorded:
    """The signer a route's links had, as far as the bundle header needs it (whether any
    link was shortened to end with the credentials); it signs nothing."""

    kind: ClassVar[LinkKind] = "s3"
    chunk: ClassVar[int] = 1

    def __init__(self, clamped_to: datetime | None) -> None:
        self._clamped_to = clamped_to

    @property
    def clamped_to(self) -> datetime | None:
        return self._clamped_to

    def sign_get(self, recipient: str, objects: Iterable[ObjectRef]) -> list[Link]:
        raise SigningError("a merge joins links the shards signed; it signs none")


class _RecordedCloudFront(_Recorded):
    kind: ClassVar[LinkKind] = "cloudfront"


def _staged(plan: Plan, shards: list[ShardRecord], folder: RunFolder) -> Staged:
    """What one machine's staging would have produced, from the shards' records."""
    prefixes: list[PrefixTally | None] = [None] * len(plan.tasks)
    tallies = []
    # By route, by prefix position: the shards' parts.
    staged_parts: list[list[list[PartFile]]] = []
    for route in plan.routes:
        tally = RouteTally(Selector(route.grant.filters), None, folder, route.index)
        tally.csv = "csv" in route.grant.formats
        tallies.append(tally)
        staged_parts.append([[] for _ in route.prefixes])
    clamps: dict[int, list[datetime]] = {}
    for shard in shards:
        record = shard.record
        if record["plan"] != {"tasks": len(plan.tasks), "routes": len(plan.routes)}:
            raise ShardMismatch(f"shard {shard.spec.name}: its plan is not this manifest's")
        mine = owned(plan, shard.spec, split=record.get("split", False))
        if [t["index"] for t in record["tasks"]] != mine:
            raise ShardMismatch(f"shard {shard.spec.name}: it listed other prefixes than its own")
        for task in record["tasks"]:
            failure = task["failure"]
            found = prefixes[task["index"]]
            if found is None:
                found = prefixes[task["index"]] = PrefixTally(task["bucket"], task["prefix"])
            # An S3 Inventory task is every shard's (each read its share of the data files).
            found.objects += task["objects"]
            found.bytes += task["bytes"]
            found.seconds = max(found.seconds, task["seconds"])
            if found.failure is None and failure is not None:
                found.failure = PrefixFailure(**failure)
        for entry in record["routes"]:
            tally = tallies[entry["index"]]
            tally.links += entry["links"]
            tally.bytes += entry["bytes"]
            tally.unlinkable_count += entry["unlinkable_count"]
            tally.unlinkable += entry["unlinkable"]
            if entry["clamped_to"]:
                clamps.setdefault(tally.index, []).append(parse_iso(entry["clamped_to"]))
            for position, parts in enumerate(entry["segments"]):
                for part in parts:
                    staged = PartFile(shard.parts / part["name"], csv=tally.csv)
                    staged.rows = part["rows"]
                    if part["earliest_expiry"]:
                        staged.earliest_expiry = parse_iso(part["earliest_expiry"])
                    staged_parts[tally.index][position].append(staged)
    for index, failure in check_segments(plan, shards).items():
        owed = prefixes[index]
        if owed is not None and owed.failure is None:
            owed.failure = failure  # a shard that could not probe it owes its sub-folders
    for route, tally in zip(plan.routes, tallies, strict=True):
        tally.segments = []
        for segments in staged_parts[route.index]:
            if route.grant.source is not None and len(segments) > 1:
                # Each shard's rows of an inventory prefix are in key order: merged by key
                # as the bundle is written.
                tally.segments.append([JoinedPart(segments)])
            else:
                # A listed (route, position) is one task's: its segments, from one shard or
                # (a split task) several, numbered alike by each, in one machine's order.
                segments.sort(key=lambda part: part.path.name)
                tally.segments.append(list(segments))
        tally.unlinkable = sorted(tally.unlinkable, key=str.encode)[:UNLINKABLE_LISTED]
        found = clamps.get(route.index)
        kind = _RecordedCloudFront if route.grant.link == "cloudfront" else _Recorded
        tally.signer = kind(min(found) if found else None)
    assert all(p is not None for p in prefixes)
    return Staged(
        prefixes=[p for p in prefixes if p is not None],
        routes=tallies,
        signer_key_id=shards[0].record["credentials"]["access_key_id"],
        inventories=_RecordedInventories.of(plan, shards),
    )


class _RecordedInventories(Inventories):
    """The S3 Inventory reports the shards read, as the write stage and the summary ask of
    them: each route's report (one for all shards, or ``ShardMismatch``), and the summary's
    entries with the rows each shard kept added up. It reads nothing."""

    def __init__(
        self,
        headers: dict[tuple[InventorySource, BucketTarget], dict[str, str]],
        reports: list[dict[str, Any]],
    ) -> None:
        self._headers = headers
        self._reports = reports

    @classmethod
    def of(cls, plan: Plan, shards: list[ShardRecord]) -> _RecordedInventories | None:
        if not any(task.source is not None for task in plan.tasks):
            return None
        targets = [BucketTarget(**t) for t in shards[0].record["targets"]]
        headers: dict[tuple[InventorySource, BucketTarget], dict[str, str]] = {}
        seen: dict[tuple[InventorySource, BucketTarget], str] = {}
        for shard in shards:
            for index, header in shard.record["inventories"]["headers"].items():
                route = plan.routes[int(index)]
                assert route.grant.source is not None
                key = (route.grant.source, targets[route.index])
                if headers.setdefault(key, header) != header:
                    raise ShardMismatch(
                        f"shard {shard.spec.name} read another S3 Inventory report"
                        f" ({header.get('manifest')}) than shard {seen[key]}"
                        f" ({headers[key].get('manifest')}); run the shards again"
                    )
                seen.setdefault(key, shard.spec.name)
        order = list(
            dict.fromkeys(
                (t.source.inventory, t.target.bucket) for t in plan.tasks if t.source is not None
            )
        )
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for shard in shards:
            for entry in shard.record["inventories"]["reports"]:
                named = (entry["source"], entry["bucket"])
                if named not in merged:
                    merged[named] = dict(entry)
                    continue
                _add(merged[named], entry)
        reports = [merged[k] for k in order if k in merged]
        return cls(headers, reports)

    def header(self, source: InventorySource, target: BucketTarget) -> dict[str, str] | None:
        return self._headers.get((source, target))

    def reports(self) -> list[dict[str, Any]]:
        return self._reports

    def close(self) -> None:
        pass


def _add(into: dict[str, Any], entry: dict[str, Any]) -> None:
    """One shard's entry of a report added to another's: each read its share of the data
    files."""
    into["rows"] += entry["rows"]
    into["kept"] += entry["kept"]
    if entry["status"] == "failed":
        into["status"] = "failed"
        into.setdefault("error", entry.get("error"))
    if "verify" in entry and "verify" in into:
        verify, more = into["verify"], entry["verify"]
        verify["sampled"] += more["sampled"]
        verify["drifted"] += more["drifted"]
        verify["drift"] = (verify["drift"] + more["drift"])[:DRIFT_LISTED]


def _signed_by(shards: list[ShardRecord]) -> Credentials:
    """The credentials the headers name: those of the shard whose end first (they bound
    every link), never their secrets (the merge has none of them)."""
    found = [s.record["credentials"] for s in shards]
    found.sort(key=lambda c: c["expires_at"] or "9999")
    chosen = found[0]
    return Credentials(
        access_key_id=chosen["access_key_id"],
        secret_access_key="",
        session_token="recorded" if chosen["kind"] == "session" else None,
        expiry=parse_iso(chosen["expires_at"]) if chosen["expires_at"] else None,
        method=chosen["method"],
    )


def _clear(run_dir: Path, plan: Plan) -> None:
    """What an earlier merge wrote (none of it complete, or made of other shards); what
    others added (approvals, the mail ledger) stays."""
    ours = {route.job for route in plan.routes} | {"index.html", "delivery.json", "audit.jsonl"}
    for name in sorted(ours):
        child = run_dir / name
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        elif child.exists() or child.is_symlink():
            child.unlink()


def _logs(shards: list[ShardRecord]) -> list[tuple[Path, str]]:
    """Each shard's audit log and name, in shard order (rows of one time come in it)."""
    return [(shard.path / "audit.jsonl", shard.spec.name) for shard in shards]


def _merge_audit(path: Path, shards: list[ShardRecord]) -> None:
    """The shards' events, merged by time (``events``), in this process, ``ROWS`` lines of
    a log at a time."""
    merge_logs(path, _logs(shards), ROWS)


async def _merge(
    out: Path,
    run_id: str,
    shards: list[ShardRecord],
    manifest_path: Path | None,
    connection: Connection,
) -> RunSummary:
    manifest = _load(shards, manifest_path)
    plan = build_plan(manifest)
    templates = read_templates(plan)
    folder = RunFolder(out, run_id)
    staged = _staged(plan, shards, folder)
    started_at = min(parse_iso(s.record["started_at"]) for s in shards)
    targets = {
        route.index: BucketTarget(**shards[0].record["targets"][route.index])
        for route in plan.routes
    }
    signed_by = _signed_by(shards)
    _clear(folder.path, plan)
    clock = time.monotonic()
    try:
        # The shards' events are merged into the audit log by a child process while this one
        # writes the bundles (two cores at work); the merge's own events follow them.
        merging = await Merging.start(folder.audit_path, _logs(shards))
        with audit_file(folder.audit_path, held=True):
            try:
                log.info("run_started", run_id=run_id, version=__version__, merge=len(shards))
                async with contextlib.AsyncExitStack() as stack:
                    gateway, credentials = None, signed_by
                    if needs_s3(plan):
                        # The merge signs only upload slots and page links: S3, its credentials
                        # and the AWS SDK (~0.6 s of CPU to import) only then.
                        from sharebatch.s3.gateway import S3Gateway

                        gateway = await stack.enter_async_context(S3Gateway(connection))
                        credentials = await gateway.credentials()
                    for job, routes in staged.over_limit_jobs(plan).items():
                        for route in routes:
                            log.error(
                                "max_links_exceeded",
                                job=job,
                                recipient=route.recipient,
                                max_links=staged.routes[route.index].selector.max_links,
                            )
                    report = await write_outputs(
                        plan,
                        staged,
                        folder,
                        gateway,
                        run_id=run_id,
                        started_at=started_at,
                        clock=clock,
                        credentials=credentials,
                        targets=targets,
                        templates=templates,
                        signed_by=signed_by,
                        # The shards' events are in the audit log before the merge's outcome.
                        before_commit=merging.finished,
                    )
            finally:
                # However the merge ended, the child is over (killed, if it still ran) before
                # the merge's own lines follow what it wrote.
                await merging.stop()
                audit_release()
            # The manifest the shards ran, as they named it (not the copy the merge read).
            report["manifest"]["path"] = shards[0].record["manifest"]["path"]
            _unchanged(folder.path, shards)
            audit_flush()
            write_json(folder.summary_path, {**report, "shards": _fingerprint(shards)})
            log.info("run_finished", run_id=run_id, status=report["status"], **report["totals"])
    except BaseException as exc:
        _clear_outputs(folder.path, plan)
        if isinstance(exc, SharebatchError):
            raise
        if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
            raise Interrupted(signals.received() or "SIGINT") from None
        if not isinstance(exc, Exception):
            raise
        cause = first_error(exc)
        raise RunCrashed(f"merge of run {run_id} failed: {cause!r}; no bundle kept") from cause
    return RunSummary(
        run_id=run_id, status=report["status"], run_dir=str(folder.path), report=report
    )


def _clear_outputs(run_dir: Path, plan: Plan) -> None:
    """After a merge broke off: its bundles and pages go, its summary was never written;
    the audit log stays, to say what happened."""
    for name in sorted({route.job for route in plan.routes} | {"index.html", "delivery.json"}):
        child = run_dir / name
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
