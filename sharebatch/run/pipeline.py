"""The asyncio pipeline: list every prefix concurrently, select, sign, stage the links.

One task per list task, at most ``concurrency`` requests to S3 in flight and twice as many
listings under way. Each page of objects is filtered for every route it feeds, signed, and
appended to that route's part file before the next page is fetched, so memory holds one page
per listing under way, never a whole listing.

A prefix that fails to list is recorded and its parts dropped; the other prefixes go on.
Credential errors abort everything: no other prefix would fare better. A route that matches
more objects than its ``max_links`` stops being signed at once and fails its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sharebatch.audit import get_logger, link_issued, write_rendered_bytes
from sharebatch.child import cores
from sharebatch.errors import InventoryError, S3ListingError, SharebatchError, SigningError
from sharebatch.files import read_range
from sharebatch.inventory.reader import Inventories
from sharebatch.manifest.load import Grant
from sharebatch.models import BucketTarget, Credentials, ObjectRef, PrefixFailure, Presigner
from sharebatch.run import link_ids
from sharebatch.run import pool as signing_pool
from sharebatch.run.bundles import Part, PartFile
from sharebatch.run.folder import RunFolder
from sharebatch.run.plan import ListTask, Plan, Route
from sharebatch.run.pool import Answer, Pool, Wanted
from sharebatch.run.progress import Progress
from sharebatch.run.select import Selector, linkable
from sharebatch.run.select import unlinkable as select_unlinkable
from sharebatch.run.sign import RouteSigner, Signer, credential_limit, stage_chunk
from sharebatch.run.worker import RouteSpec

if TYPE_CHECKING:  # the AWS SDK is imported when a gateway opens, not with this module
    from sharebatch.s3.gateway import Level, S3Gateway

log = get_logger()

UNLINKABLE_LISTED = 1000
"""Keys without a link named per route (all are counted and logged): memory stays bounded."""


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
    """What one route matched. ``segments[position]`` holds, in key order, the part files
    of that prefix (one per listed segment: see ``_list_task``); empty in a dry run."""

    selector: Selector
    signer: RouteSigner | None
    folder: RunFolder | None
    index: int
    segments: list[list[Part]] = field(default_factory=list)
    links: int = 0
    bytes: int = 0
    csv: bool = True  # whether the route's bundles include CSV, so parts stage CSV rows
    unlinkable: list[str] = field(default_factory=list)  # the first UNLINKABLE_LISTED
    unlinkable_count: int = 0

    def skip_unlinkable(self, route: Route, bucket: str, objects: list[ObjectRef]) -> None:
        """Record selected objects that no link can reach (see ``select.linkable``)."""
        for obj in objects:
            self.unlinkable_count += 1
            if len(self.unlinkable) < UNLINKABLE_LISTED:
                self.unlinkable.append(obj.key)
            log.warning(
                "key_unlinkable",
                job=route.job,
                recipient=route.recipient,
                bucket=bucket,
                key=obj.key,
                reason="a '.' or '..' segment: browsers and curl would request another key",
            )

    @property
    def over_limit(self) -> bool:
        limit = self.selector.max_links
        return limit is not None and self.links > limit

    @property
    def parts(self) -> list[Part]:
        """Every part in bundle order: prefixes as in the manifest, then key order."""
        return [part for position in self.segments for part in position]

    def new_part(self, position: int) -> PartFile | None:
        if self.folder is None:
            return None
        found = self.segments[position]
        part = self.folder.part(self.index, position, len(found), csv=self.csv)
        found.append(part)
        return part


@dataclass
class Staged:
    """What the listing stage produced: per-task and per-route tallies."""

    prefixes: list[PrefixTally]
    routes: list[RouteTally]
    signer_key_id: str | None = None
    progress: Progress | None = None
    # The S3 Inventory reports read instead of listing (None: every prefix was listed).
    inventories: Inventories | None = None

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


CloudFrontSigners = Callable[[Grant], RouteSigner]
"""The signer of a ``link: cloudfront`` grant (``cfsign.CloudFrontKeys.route_signer``)."""


async def _route_tallies(
    plan: Plan,
    gateway: S3Gateway,
    credentials: Credentials,
    folder: RunFolder | None,
    cloudfront: CloudFrontSigners | None = None,
) -> list[RouteTally]:
    presigners: dict[BucketTarget, Presigner] = {}
    tallies = []
    for route in plan.routes:
        signer: RouteSigner | None = None
        grant = route.grant
        if folder is not None and grant.link == "cloudfront":
            if cloudfront is None:
                raise SigningError(f"job {grant.job}: no CloudFront key was loaded for it")
            signer = cloudfront(grant)
        elif folder is not None:
            target = gateway.effective(route.target)
            if target not in presigners:
                presigners[target] = await gateway.signers.presigner(target, credentials)
            signer = Signer(
                presigners[target],
                job=grant.job,
                expiry=grant.expiry,
                download_name=grant.download_name,
                content_type=grant.content_type,
                limit=credential_limit(credentials, grant.on_short_credentials),
                link_ids=grant.link_ids,
            )
        tally = RouteTally(Selector(route.grant.filters), signer, folder, route.index)
        tally.csv = "csv" in route.grant.formats
        tally.segments = [[] for _ in route.prefixes]
        tallies.append(tally)
    return tallies


async def stage(
    plan: Plan,
    *,
    gateway: S3Gateway,
    credentials: Credentials,
    folder: RunFolder | None,
    concurrency: int,
    split_folders: bool = True,
    progress: Progress | None = None,
    cloudfront: CloudFrontSigners | None = None,
    workers: int | None = 1,
    data_files: Callable[[int], bool] | None = None,
    share: Share | None = None,
) -> Staged:
    """List every task; when ``folder`` is given, sign and stage links (else only count).

    With ``split_folders``, a prefix with at most 4 x ``concurrency`` sub-folders is listed
    folder by folder in parallel (see ``_Lister``). ``cloudfront`` gives the signer of each
    ``link: cloudfront`` grant; the others get a ``sign.Signer`` over the target's presigner.
    ``workers`` signing processes sign and stage the pages (``run/pool``; 1: this process,
    None: as many as there are cores once ``pool.AUTO_AFTER`` objects were listed).
    ``data_files``: the S3 Inventory data files (by index) to read (a shard's; None: all).
    ``share``: the part of each listed task this process lists (a shard's; None: all of it).
    """
    staged = Staged(
        prefixes=[PrefixTally(t.target.bucket, t.prefix) for t in plan.tasks],
        routes=await _route_tallies(plan, gateway, credentials, folder, cloudfront),
        signer_key_id=credentials.access_key_id,
        progress=progress,
    )
    for route in plan.routes:
        for prefix, into in route.merged:
            log.warning(
                "prefix_merged",
                job=route.job,
                recipient=route.recipient,
                prefix=prefix,
                into=into,
                message=f"prefix {prefix} is inside {into}: its objects come with {into}'s,"
                " in key order",
            )
    max_split = 4 * concurrency if split_folders else 0
    staged.inventories = _inventories(plan, gateway, folder, data_files)
    signing = await _Workers.plan(plan, staged, gateway, credentials, folder, workers)
    lister = _Lister(plan, staged, gateway, concurrency, max_split, signing, share)

    remaining = len(plan.tasks)
    watching: list[asyncio.Task[None]] = []

    async def run(index: int, task: ListTask) -> None:
        nonlocal remaining
        try:
            await lister.list_task(task, staged.prefixes[index])
        finally:
            remaining -= 1
            if not remaining and watching:
                watching[0].cancel()  # every listing is done: no worker is needed any more

    try:
        with _startup_heap_frozen(), _closing(staged.inventories):
            async with asyncio.TaskGroup() as group:
                if signing.size > 1 and plan.tasks:
                    watching.append(group.create_task(signing.watch()))
                for index, task in enumerate(plan.tasks):
                    group.create_task(run(index, task))
    except BaseExceptionGroup as failed:
        await signing.close(kill=True)
        # A run-wide failure (credentials) ends every task; report it once, not per prefix.
        ours, others = failed.split(lambda e: isinstance(e, SharebatchError))
        if ours is None or others is not None:
            raise
        raise first_error(ours) from None
    except BaseException:
        await signing.close(kill=True)  # a signal: the workers stop now, with the run
        raise
    await signing.close()
    return staged


def _inventories(
    plan: Plan,
    gateway: S3Gateway,
    folder: RunFolder | None,
    data_files: Callable[[int], bool] | None = None,
) -> Inventories | None:
    """The reports the plan reads from, each task's prefix registered; None if none."""
    tasks = [(task, task.source) for task in plan.tasks if task.source is not None]
    if not tasks:
        return None
    spill = None if folder is None else folder.staging / "inventory"
    if spill is not None:
        spill.mkdir(mode=0o700)
    found = Inventories(gateway, spill, clock=lambda: datetime.now(UTC), data_files=data_files)
    for task, source in tasks:
        found.add(source, gateway.effective(task.target), task.prefix)
    return found


@contextlib.contextmanager
def _closing(inventories: Inventories | None) -> Iterator[None]:
    try:
        yield
    finally:
        if inventories is not None:
            inventories.close()


class _Workers:
    """Whether pages go to signing workers, and the pool once it runs.

    Workers sign S3 links only: a run with a ``link: cloudfront`` route, or a target only
    botocore's signer serves (``Signers.worker_spec``), signs in this process, whatever
    ``workers`` asked. With ``workers`` None the pool starts once ``pool.AUTO_AFTER`` objects were
    listed (pages before it are signed here, each staged before the next is taken, so the
    order is kept across the switch); on one core it never starts.
    """

    def __init__(
        self, size: int, routes: dict[int, RouteSpec], auto: bool, spool: Path | None = None
    ) -> None:
        self.size = size
        self.routes = routes
        self.auto = auto
        self.spool = spool
        self.pool: Pool | None = None
        self.listed = 0
        self._started = asyncio.Event()

    @classmethod
    async def plan(
        cls,
        plan: Plan,
        staged: Staged,
        gateway: S3Gateway,
        credentials: Credentials,
        folder: RunFolder | None,
        workers: int | None,
    ) -> _Workers:
        size = cores() if workers is None else workers
        if size <= 1 or folder is None:
            return cls(1, {}, auto=False)
        if any(r.grant.link != "s3" for r in plan.routes):
            return cls.unused(workers, "CloudFront links are signed in the run's process")
        routes: dict[int, RouteSpec] = {}
        for route, tally in zip(plan.routes, staged.routes, strict=True):
            spec = await gateway.signers.worker_spec(gateway.effective(route.target), credentials)
            if spec is None:
                return cls.unused(workers, f"bucket {route.target.bucket}: botocore signs it")
            grant = route.grant
            routes[route.index] = RouteSpec(
                job=grant.job,
                recipient=route.recipient,
                spec=spec,
                credentials=credentials,
                expiry=grant.expiry,
                download_name=grant.download_name,
                content_type=grant.content_type,
                on_short_credentials=grant.on_short_credentials,
                link_ids=grant.link_ids,
                csv=tally.csv,
            )
        # The workers' spool files: in the staging folder, gone with it whatever happens.
        found = cls(size, routes, auto=workers is None, spool=folder.staging / "spool")
        if not found.auto:
            await found.start()
        return found

    @classmethod
    def unused(cls, workers: int | None, reason: str) -> _Workers:
        if workers is not None:  # asked for: say why there are none
            log.warning("workers_unused", workers=workers, reason=reason)
        return cls(1, {}, auto=False)

    async def start(self) -> None:
        assert self.spool is not None
        pool = Pool(self.size, self.routes, self.spool)
        try:
            await pool.start()
        except BaseException:
            await pool.close(kill=True)
            raise
        self.pool = pool
        self._started.set()

    async def watch(self) -> None:
        """Raise the run's failure as soon as a worker ends before its time (a listing held
        up by S3 would only find out at its next page)."""
        await self._started.wait()
        assert self.pool is not None
        await self.pool.ended.wait()
        assert self.pool.broken is not None
        raise self.pool.broken

    async def for_page(self, count: int) -> Pool | None:
        """The pool to send a page of ``count`` objects to, or None: sign it here."""
        if self.pool is None and self.auto:
            self.listed += count
            if self.listed > signing_pool.AUTO_AFTER:
                self.auto = False
                await self.start()
        return self.pool

    async def close(self, *, kill: bool = False) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close(kill=kill)


@contextlib.contextmanager
def _startup_heap_frozen() -> Iterator[None]:
    """Keep the heap built before listing out of the garbage collector's full passes.

    botocore's service model and endpoint rules make up most of it and live as long as the
    run. Each full collection would walk them again with the event loop stopped: 30-110 ms
    measured here, during which no answer from S3 is read. They are handed back at the end
    so that a long-lived process calling the library does not keep its garbage forever.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def first_error(error: BaseException) -> BaseException:
    """The first real exception in a (nested) exception group, or ``error`` itself."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


Segment = list[ObjectRef] | str
"""A run of objects known already, or a sub-folder still to list."""


class Share(Protocol):
    """The part of each listed task this process lists when several share a run (a shard:
    ``shards/segments.SegmentShare``). Every process probes every task and so sees the same
    segments; each lists only its own, and no two list the same one."""

    def owns(self, task: ListTask) -> bool:
        """Whether ``task`` is this process's when listed whole (its top-level objects too
        when split, and a failed probe its failure)."""
        ...

    def split(self, task: ListTask, segments: list[Segment]) -> list[bool]:
        """Which of a split task's segments (in key order) this process lists."""
        ...

    def unprobed(self, task: ListTask, error: S3ListingError) -> None:
        """A probe failed for a task this process does not own: noted, not failed here."""
        ...


def _in_key_order(objects: list[ObjectRef], folders: list[str]) -> list[Segment]:
    # S3 lists keys in UTF-8 byte order. Every key under a sub-folder "p/b/" sorts after the
    # folder's own name and before the next object or folder of the level, so placing the
    # folders among the level's objects by name gives the order of one flat listing.
    items = sorted(
        [(o.key.encode(), o) for o in objects] + [(f.encode(), f) for f in folders],
        key=lambda pair: pair[0],
    )
    segments: list[Segment] = []
    for _, item in items:
        if isinstance(item, str):
            segments.append(item)
        elif segments and isinstance(segments[-1], list):
            segments[-1].append(item)
        else:
            segments.append([item])
    return segments


@dataclass
class _Feed:
    route: Route
    tally: RouteTally
    position: int


class _Lister:
    """Lists one task: a probe of its top level, then sub-folders in parallel where it pays.

    A delimiter request shows the prefix's own objects and sub-folders. When that one page
    held the whole level and the sub-folders are few (at most ``max_split``), each sub-folder
    becomes its own listing under the shared semaphore, so a big prefix is listed as fast as
    many small ones; otherwise the prefix is listed as a whole. With ``max_split`` 0 (no
    splitting) there is no probe: it would be one request more for every prefix.
    """

    def __init__(
        self,
        plan: Plan,
        staged: Staged,
        gateway: S3Gateway,
        concurrency: int,
        max_split: int,
        signing: _Workers | None = None,
        share: Share | None = None,
    ) -> None:
        self._plan = plan
        self._staged = staged
        self._gateway = gateway
        self._signing = signing or _Workers(1, {}, auto=False)
        # ``concurrency`` requests in flight, the operator's setting. A slot is given back as
        # soon as an answer has arrived, so the next request goes out while this page is read
        # and signed; twice as many listings may hold a page meanwhile, which bounds memory.
        self._requests = asyncio.Semaphore(concurrency)
        self._limit = asyncio.Semaphore(2 * concurrency)
        self._max_split = max_split
        self._share = share

    async def list_task(self, task: ListTask, tally: PrefixTally) -> None:
        started = time.monotonic()
        feeds = [
            _Feed(self._plan.routes[s.route], self._staged.routes[s.route], s.position)
            for s in task.slots
        ]
        target = self._gateway.effective(task.target)
        listed = True
        try:
            inventories = self._staged.inventories
            if task.source is not None and inventories is not None:
                pages = inventories.pages(task.source, target, task.prefix)
                await self._read_inventory(pages, feeds, tally)
            else:
                listed = await self._list(task, target, feeds, tally)
        except (S3ListingError, InventoryError) as exc:
            tally.failure = PrefixFailure(task.target.bucket, task.prefix, exc.code, str(exc))
        finally:
            tally.seconds = round(time.monotonic() - started, 3)
        if tally.failure is not None:
            failure = tally.failure
            log.error(
                "prefix_failed", bucket=failure.bucket, prefix=failure.prefix, error=failure.error
            )
        elif listed:  # a task another process (a shard) lists is logged there
            log.info(
                "prefix_listed",
                bucket=task.target.bucket,
                prefix=task.prefix,
                count=tally.objects,
                seconds=tally.seconds,
            )
        if self._staged.progress is not None:
            jobs = (feed.route.job for feed in feeds)
            self._staged.progress.prefix_done(jobs, failed=tally.failure is not None)

    async def _read_inventory(
        self, pages: AsyncIterator[list[ObjectRef]], feeds: list[_Feed], tally: PrefixTally
    ) -> None:
        """An inventory's rows, in key order already: no probing, no splitting."""
        parts = [feed.tally.new_part(feed.position) for feed in feeds]
        pending = _Pending(feeds, parts, tally, self._staged.progress)
        try:
            # As many at once as listings: each merge holds its prefix's run files open.
            async with self._limit:
                async for page in pages:
                    await self._page(page, pending)
                await pending.drain()
        except InventoryError:
            # Raised before the first page (every row is read first): nothing was sent.
            await pending.drain()
            raise
        finally:
            pending.abandon()
            _close(parts)

    async def _list(
        self, task: ListTask, target: BucketTarget, feeds: list[_Feed], tally: PrefixTally
    ) -> bool:
        """List ``task`` (this process's share of it); False when none of it was ours."""
        share = self._share
        owner = share is None or share.owns(task)
        async with self._limit:
            level: Level | None = None
            if self._max_split:
                try:
                    level = await self._gateway.listing.probe_level(
                        target, task.prefix, slot=self._requests
                    )
                except S3ListingError as exc:
                    if share is None or owner:
                        raise
                    share.unprobed(task, exc)
                    return False
            if level is None or not level.complete or len(level.folders) > self._max_split:
                if not owner:
                    return False
                await self._list_flat(target, task.prefix, feeds, tally)
                level = None
        if level is None:
            return True
        segments = _in_key_order(level.objects, level.folders)
        ours = share.split(task, segments) if share is not None else [True] * len(segments)
        await self._list_split(target, segments, ours, feeds, tally)
        return owner or any(ours)

    async def _list_split(
        self,
        target: BucketTarget,
        segments: list[Segment],
        ours: list[bool],
        feeds: list[_Feed],
        tally: PrefixTally,
    ) -> None:
        async with asyncio.TaskGroup() as group:
            for segment, mine in zip(segments, ours, strict=True):
                # Part files are created here, in key order, whatever order listings finish in;
                # one per segment even where another process lists it, so that a segment's
                # part has the same name (number) in every process.
                parts = [feed.tally.new_part(feed.position) for feed in feeds]
                if not mine:
                    _close(parts)
                elif isinstance(segment, str):
                    group.create_task(self._list_folder(target, segment, feeds, parts, tally))
                else:
                    pending = _Pending(feeds, parts, tally, self._staged.progress)
                    try:
                        await self._page(segment, pending)
                        await pending.drain()
                    finally:
                        pending.abandon()
                        _close(parts)

    async def _list_folder(
        self,
        target: BucketTarget,
        folder: str,
        feeds: list[_Feed],
        parts: list[PartFile | None],
        tally: PrefixTally,
    ) -> None:
        pending = _Pending(feeds, parts, tally, self._staged.progress)
        try:
            async with self._limit:
                async for page in self._gateway.listing.list_pages(
                    target, folder, slot=self._requests
                ):
                    await self._page(page, pending)
                await pending.drain()
        except S3ListingError as exc:
            await pending.drain()  # see _list_flat
            # One failed sub-folder fails the whole prefix: its bundles would be incomplete.
            if tally.failure is None:
                tally.failure = PrefixFailure(target.bucket, tally.prefix, exc.code, str(exc))
        finally:
            pending.abandon()
            _close(parts)

    async def _list_flat(
        self, target: BucketTarget, prefix: str, feeds: list[_Feed], tally: PrefixTally
    ) -> None:
        parts = [feed.tally.new_part(feed.position) for feed in feeds]
        pending = _Pending(feeds, parts, tally, self._staged.progress)
        try:
            async for page in self._gateway.listing.list_pages(target, prefix, slot=self._requests):
                await self._page(page, pending)
            await pending.drain()
        except S3ListingError:
            # The pages listed before the break were signed, as in one process: logged too.
            await pending.drain()
            raise
        finally:
            pending.abandon()
            _close(parts)

    async def _page(self, page: list[ObjectRef], pending: _Pending) -> None:
        feeds, parts, tally = pending.feeds, pending.parts, pending.tally
        tally.objects += len(page)
        size = sum([o.size for o in page])
        tally.bytes += size
        progress = self._staged.progress
        if progress is not None:
            progress.listed((feed.route.job for feed in feeds), len(page))
        pool = await self._signing.for_page(len(page))
        if pool is not None:
            await pending.send(pool, page, size)
            return
        bad = select_unlinkable(page)
        if bad:
            page = [o for o in page if linkable(o.key)]
            size = -1
            for feed in feeds:
                chosen = feed.tally.selector.select(bad)
                feed.tally.skip_unlinkable(feed.route, tally.bucket, chosen)
        for feed, part in zip(feeds, parts, strict=True):
            signed = part.rows if part is not None else 0
            chosen = feed.tally.selector.select(page)
            chosen_size = size if chosen is page and size >= 0 else sum([o.size for o in chosen])
            await _deliver(feed.route, feed.tally, part, chosen, chosen_size)
            if progress is not None and part is not None:
                progress.signed(feed.route.job, part.rows - signed)


_Unlinkable = list[list[ObjectRef]]
"""Per feed of a page, the selected objects no link can reach."""
_Fates = list[str]
"""Per feed of a page: ``sent`` to a worker, ``limit`` (its route went past ``max_links`` with
this page: nothing signed, the error logged), or ``none`` (nothing to sign)."""


class _Pending:
    """One listing's pages out at signing workers, appended to its parts in listing order.

    What ``_page`` and ``_deliver`` do for a page in this process is split in two: the
    counting, selection, ``max_links`` and link ids when the page is listed (``send``; the
    ids are drawn in the order a one-process run draws them), and every file write and log
    line once the page's answer is in and every earlier page of the listing was appended
    (``_advance``, called as each answer arrives, so a listing waiting on S3 holds no answer
    back). The audit log and the part files are those of a one-process run.
    """

    def __init__(
        self,
        feeds: list[_Feed],
        parts: list[PartFile | None],
        tally: PrefixTally,
        progress: Progress | None,
    ) -> None:
        self.feeds = feeds
        self.parts = parts
        self.tally = tally
        self._progress = progress
        self._out: deque[tuple[asyncio.Future[Answer], _Unlinkable, _Fates]] = deque()
        self._pool: Pool | None = None
        self._error: BaseException | None = None

    async def send(self, pool: Pool, page: list[ObjectRef], size: int) -> None:
        """Send ``page`` (``size`` its objects' bytes) to a worker; its answer is appended
        in turn."""
        self._raise()
        self._pool = pool
        wanted, unlinkable, fates = self.choose(page, size)
        answer = await pool.submit(wanted)
        self._out.append((answer, unlinkable, fates))
        answer.add_done_callback(self._advance)

    def choose(self, page: list[ObjectRef], size: int) -> tuple[Wanted, _Unlinkable, _Fates]:
        """A page's selection per feed, counted, with its link ids: what goes to a worker."""
        unlinkable: _Unlinkable = []
        bad = select_unlinkable(page)
        if bad:
            page = [o for o in page if linkable(o.key)]
            size = -1
            unlinkable = [feed.tally.selector.select(bad) for feed in self.feeds]
        wanted: Wanted = []
        fates: _Fates = []
        for feed, part in zip(self.feeds, self.parts, strict=True):
            tally = feed.tally
            chosen = tally.selector.select(page)
            was_over = tally.over_limit
            tally.links += len(chosen)
            tally.bytes += size if chosen is page and size >= 0 else sum([o.size for o in chosen])
            if tally.signer is None or part is None or was_over:
                fates.append("none")
            elif tally.over_limit:
                fates.append("limit")
            else:
                fates.append("sent")
                ids = link_ids.draw(len(chosen)) if feed.route.grant.link_ids else None
                wanted.append((feed.route.index, chosen, ids))
        return wanted, unlinkable, fates

    async def drain(self) -> None:
        """Wait for every page sent to be appended."""
        while self._out and self._error is None:
            await asyncio.wait([self._out[0][0]])
            self._advance()
        self._raise()

    def abandon(self) -> None:
        """A listing that failed or was stopped: its pages' answers are not wanted."""
        while self._out:
            answer = self._out.popleft()[0]
            if answer.done() and not answer.cancelled():
                answer.exception()  # seen: asyncio would report it as never retrieved
            else:
                answer.cancel()
            if self._pool is not None:
                self._pool.done_with(answer)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _advance(self, _: object = None) -> None:
        # Append the answers that are in, up to the first still out; a failure (the worker's
        # exception, a full disk) stops the appending and is raised in the listing.
        while self._out and self._out[0][0].done() and self._error is None:
            answer, unlinkable, fates = self._out.popleft()
            try:
                self._commit(answer, unlinkable, fates)
            except BaseException as exc:  # noqa: BLE001 - raised again by send or drain
                self._error = exc
            finally:
                if self._pool is not None:
                    self._pool.done_with(answer)

    def _commit(
        self, answer: asyncio.Future[Answer], unlinkable: _Unlinkable, fates: _Fates
    ) -> None:
        staged = answer.result()
        results = iter(staged.results)
        spool, offset = staged.fd, staged.start
        for feed, chosen in zip(self.feeds, unlinkable, strict=False):
            feed.tally.skip_unlinkable(feed.route, self.tally.bucket, chosen)
        for feed, part, fate in zip(self.feeds, self.parts, fates, strict=True):
            tally = feed.tally
            signed = 0
            if fate == "limit":
                log.error(
                    "max_links_exceeded",
                    job=feed.route.job,
                    recipient=feed.route.recipient,
                    max_links=tally.selector.max_links,
                )
            elif fate == "sent" and part is not None:
                lines, rows, events, signed, earliest, clamped_to = next(results)
                if signed:
                    part.copy_in(spool, offset, (lines, rows), signed, earliest)
                offset += lines + rows
                if events:
                    write_rendered_bytes("debug", read_range(spool, offset, events))
                offset += events
                if clamped_to is not None and isinstance(tally.signer, Signer):
                    tally.signer.clamped_to = clamped_to
            if self._progress is not None and part is not None:
                self._progress.signed(feed.route.job, signed)


def _close(parts: list[PartFile | None]) -> None:
    # All of them, even after one fails (a full disk): an open file's space is not freed.
    with contextlib.ExitStack() as stack:
        for part in parts:
            if part is not None:
                stack.callback(part.close)


async def _deliver(
    route: Route, tally: RouteTally, part: PartFile | None, objects: list[ObjectRef], size: int
) -> None:
    was_over = tally.over_limit
    tally.links += len(objects)
    tally.bytes += size
    if tally.signer is None or part is None or was_over:
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
    # Signing is CPU work between awaits; yielding every ``chunk`` links (the signer knows
    # its own cost) keeps the loop responsive.
    signer = tally.signer
    chunk = signer.chunk
    for start in range(0, len(objects), chunk):
        if isinstance(signer, Signer):
            stage_chunk(signer, part, route.recipient, objects[start : start + chunk])
        else:
            links = signer.sign_get(route.recipient, objects[start : start + chunk])
            part.write(links)
            link_issued(links, signer.kind)
        await asyncio.sleep(0)
