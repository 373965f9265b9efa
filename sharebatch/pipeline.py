"""The asyncio pipeline: list every prefix concurrently, sign each page, stage the links.

One task per list task, at most ``concurrency`` listing at once. Each page of objects is
signed for every route it feeds and appended to that route's part file before the next page
is fetched, so memory holds one page per running task, never a whole listing.

A prefix that fails to list is recorded and its parts dropped; the other prefixes go on.
Credential errors abort everything: no other prefix would fare better.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

from .audit import get_logger, url_digest
from .bundles import PartFile, RunFolder, iso
from .errors import SharebatchError
from .models import BucketTarget, Credentials, PrefixFailure
from .plan import ListTask, Plan
from .s3 import S3Gateway, S3ListingError
from .signing import Signer

log = get_logger()

# Signing is CPU work between awaits; yielding every so many links keeps the loop responsive.
_SIGN_CHUNK = 250


@dataclass
class PrefixTally:
    bucket: str
    prefix: str
    objects: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failure: PrefixFailure | None = None


@dataclass
class Staged:
    """What the listing stage produced: per-task tallies and per-route part files."""

    prefixes: list[PrefixTally]
    parts: dict[int, list[PartFile]] = field(default_factory=dict)
    signer_key_id: str | None = None

    def failed_routes(self, plan: Plan) -> set[int]:
        """Routes fed by at least one failed prefix: their bundles would be incomplete."""
        return {
            slot.route
            for tally, task in zip(self.prefixes, plan.tasks, strict=True)
            if tally.failure is not None
            for slot in task.slots
        }


async def _signers(
    plan: Plan, gateway: S3Gateway, credentials: Credentials
) -> dict[tuple[BucketTarget, str], Signer]:
    presigners = {}
    signers = {}
    for route in plan.routes:
        target = gateway.effective(route.target)
        if target not in presigners:
            presigners[target] = await gateway.presigner(target, credentials)
        key = (route.target, route.job.name)
        signers[key] = Signer(
            presigners[target], job=route.job.name, expires_in=route.job.expires_in
        )
    return signers


async def stage(
    plan: Plan,
    *,
    gateway: S3Gateway,
    credentials: Credentials,
    folder: RunFolder | None,
    concurrency: int,
) -> Staged:
    """List every task; when ``folder`` is given, sign and stage links (else only count)."""
    signers = await _signers(plan, gateway, credentials) if folder else {}
    staged = Staged(
        prefixes=[PrefixTally(t.target.bucket, t.prefix) for t in plan.tasks],
        signer_key_id=credentials.access_key_id,
    )
    if folder is not None:
        staged.parts = {
            r.index: [folder.part(r.index, pos) for pos in range(len(r.prefixes))]
            for r in plan.routes
        }
    limit = asyncio.Semaphore(concurrency)

    async def run(index: int, task: ListTask) -> None:
        async with limit:
            await _list_task(plan, task, staged, index, gateway, signers)

    try:
        async with asyncio.TaskGroup() as group:
            for index, task in enumerate(plan.tasks):
                group.create_task(run(index, task))
    except BaseExceptionGroup as failed:
        # A run-wide failure (credentials) ends every task; report it once, not per prefix.
        ours, others = failed.split(lambda e: isinstance(e, SharebatchError))
        if ours is None or others is not None:
            raise
        raise _first(ours) from None
    return staged


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


async def _list_task(
    plan: Plan,
    task: ListTask,
    staged: Staged,
    index: int,
    gateway: S3Gateway,
    signers: dict[tuple[BucketTarget, str], Signer],
) -> None:
    tally = staged.prefixes[index]
    started = time.monotonic()
    parts = [staged.parts[s.route][s.position] for s in task.slots] if staged.parts else []
    try:
        async for page in gateway.list_pages(gateway.effective(task.target), task.prefix):
            tally.objects += len(page)
            tally.bytes += sum(o.size for o in page)
            # A dry run has no parts: it only counts.
            for slot, part in zip(task.slots, parts, strict=False):
                route = plan.routes[slot.route]
                signer = signers[(route.target, route.job.name)]
                for start in range(0, len(page), _SIGN_CHUNK):
                    links = signer.sign_get(route.recipient.id, page[start : start + _SIGN_CHUNK])
                    part.write(links)
                    for link in links:
                        log.debug(
                            "link_issued",
                            job=link.job,
                            recipient=link.recipient,
                            bucket=link.obj.bucket,
                            key=link.obj.key,
                            method=link.method,
                            expires_at=iso(link.expires_at),
                            url_sha256=url_digest(link.url),
                        )
                    await asyncio.sleep(0)
    except S3ListingError as exc:
        tally.failure = PrefixFailure(task.target.bucket, task.prefix, exc.code, str(exc))
        log.error("prefix_failed", bucket=task.target.bucket, prefix=task.prefix, error=exc.code)
    finally:
        for part in parts:
            part.close()
        tally.seconds = round(time.monotonic() - started, 3)
    if tally.failure is None:
        log.info(
            "prefix_listed",
            bucket=task.target.bucket,
            prefix=task.prefix,
            count=tally.objects,
            seconds=tally.seconds,
        )


def earliest(parts: list[PartFile]) -> datetime | None:
    found = [p.earliest_expiry for p in parts if p.earliest_expiry is not None]
    return min(found) if found else None
