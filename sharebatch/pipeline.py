"""The asyncio pipeline: list every prefix concurrently, select, sign, stage the links.

One task per list task, at most ``concurrency`` listing at once. Each page of objects is
filtered for every route it feeds, signed, and appended to that route's part file before the
next page is fetched, so memory holds one page per running task, never a whole listing.

A prefix that fails to list is recorded and its parts dropped; the other prefixes go on.
Credential errors abort everything: no other prefix would fare better. A route that matches
more objects than its ``max_links`` stops being signed at once and fails its job.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from .audit import get_logger, url_digest
from .bundles import PartFile, RunFolder, iso
from .errors import SharebatchError
from .models import BucketTarget, Credentials, ObjectRef, PrefixFailure, Presigner
from .plan import ListTask, Plan, Route
from .s3 import S3Gateway, S3ListingError
from .select import Selector
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
class RouteTally:
    """What one route matched; ``parts`` are empty in a dry run."""

    selector: Selector
    signer: Signer | None
    parts: list[PartFile] = field(default_factory=list)
    links: int = 0
    bytes: int = 0

    @property
    def over_limit(self) -> bool:
        limit = self.selector.max_links
        return limit is not None and self.links > limit


@dataclass
class Staged:
    """What the listing stage produced: per-task and per-route tallies."""

    prefixes: list[PrefixTally]
    routes: list[RouteTally]
    signer_key_id: str | None = None

    def failed_routes(self, plan: Plan) -> set[int]:
        """Routes fed by a failed prefix: their bundles would be incomplete."""
        return {
            slot.route
            for tally, task in zip(self.prefixes, plan.tasks, strict=True)
            if tally.failure is not None
            for slot in task.slots
        }

    def over_limit_jobs(self, plan: Plan) -> dict[str, list[Route]]:
        """Jobs with a route past its max_links, and those routes."""
        found: dict[str, list[Route]] = {}
        for route, tally in zip(plan.routes, self.routes, strict=True):
            if tally.over_limit:
                found.setdefault(route.job, []).append(route)
        return found


async def _route_tallies(
    plan: Plan,
    gateway: S3Gateway,
    credentials: Credentials,
    folder: RunFolder | None,
) -> list[RouteTally]:
    presigners: dict[BucketTarget, Presigner] = {}
    tallies = []
    for route in plan.routes:
        signer = None
        if folder is not None:
            target = gateway.effective(route.target)
            if target not in presigners:
                presigners[target] = await gateway.presigner(target, credentials)
            grant = route.grant
            signer = Signer(
                presigners[target],
                job=grant.job,
                expiry=grant.expiry,
                download_name=grant.download_name,
                content_type=grant.content_type,
            )
        parts = (
            [folder.part(route.index, pos) for pos in range(len(route.prefixes))] if folder else []
        )
        tallies.append(RouteTally(Selector(route.grant.filters), signer, parts))
    return tallies


async def stage(
    plan: Plan,
    *,
    gateway: S3Gateway,
    credentials: Credentials,
    folder: RunFolder | None,
    concurrency: int,
) -> Staged:
    """List every task; when ``folder`` is given, sign and stage links (else only count)."""
    staged = Staged(
        prefixes=[PrefixTally(t.target.bucket, t.prefix) for t in plan.tasks],
        routes=await _route_tallies(plan, gateway, credentials, folder),
        signer_key_id=credentials.access_key_id,
    )
    limit = asyncio.Semaphore(concurrency)

    async def run(index: int, task: ListTask) -> None:
        async with limit:
            await _list_task(plan, task, staged, staged.prefixes[index], gateway)

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
    plan: Plan, task: ListTask, staged: Staged, tally: PrefixTally, gateway: S3Gateway
) -> None:
    started = time.monotonic()
    feeds = [(plan.routes[s.route], staged.routes[s.route], s.position) for s in task.slots]
    try:
        async for page in gateway.list_pages(gateway.effective(task.target), task.prefix):
            tally.objects += len(page)
            tally.bytes += sum(o.size for o in page)
            for route, route_tally, position in feeds:
                await _deliver(route, route_tally, position, route_tally.selector.select(page))
    except S3ListingError as exc:
        tally.failure = PrefixFailure(task.target.bucket, task.prefix, exc.code, str(exc))
        log.error("prefix_failed", bucket=task.target.bucket, prefix=task.prefix, error=exc.code)
    finally:
        for _, route_tally, position in feeds:
            if route_tally.parts:
                route_tally.parts[position].close()
        tally.seconds = round(time.monotonic() - started, 3)
    if tally.failure is None:
        log.info(
            "prefix_listed",
            bucket=task.target.bucket,
            prefix=task.prefix,
            count=tally.objects,
            seconds=tally.seconds,
        )


async def _deliver(
    route: Route, tally: RouteTally, position: int, objects: list[ObjectRef]
) -> None:
    was_over = tally.over_limit
    tally.links += len(objects)
    tally.bytes += sum(o.size for o in objects)
    if tally.signer is None or was_over:
        return
    if tally.over_limit:
        # Past the guard the job fails anyway: stop issuing links for this route now.
        log.error(
            "max_links_exceeded",
            job=route.job,
            recipient=route.recipient,
            max_links=tally.selector.max_links,
        )
        return
    part = tally.parts[position]
    for start in range(0, len(objects), _SIGN_CHUNK):
        links = tally.signer.sign_get(route.recipient, objects[start : start + _SIGN_CHUNK])
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
