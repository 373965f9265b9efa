"""Expanding a manifest into list tasks and per-recipient routes.

A *route* is one grant (a recipient of a job, with every setting resolved by the manifest)
placed on a bucket target, with its prefixes in bundle order.
A *list task* is one (bucket target, prefix) to list, with the route slots its objects feed.
Each distinct (target, prefix, source) is listed once, however many recipients share it
(a prefix read from an inventory report is another task than the same prefix listed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sharebatch.manifest.inventory import InventorySource
from sharebatch.manifest.load import Grant, Manifest
from sharebatch.models import BucketTarget
from sharebatch.times import iso


@dataclass(frozen=True, slots=True)
class Route:
    """One grant; ``prefixes`` are in bundle order, overlaps removed.

    ``merged`` names each (prefix, wider prefix it was merged into) that was removed.
    """

    index: int
    grant: Grant
    target: BucketTarget
    prefixes: tuple[str, ...]
    merged: tuple[tuple[str, str], ...] = ()

    @property
    def job(self) -> str:
        return self.grant.job

    @property
    def recipient(self) -> str:
        return self.grant.recipient.id


@dataclass(frozen=True, slots=True)
class Slot:
    """Objects of a list task go to ``route`` at position ``position`` of its prefixes."""

    route: int
    position: int


@dataclass(frozen=True, slots=True)
class ListTask:
    """``source``: the S3 Inventory report its objects come from (None: a listing)."""

    target: BucketTarget
    prefix: str
    slots: tuple[Slot, ...]
    source: InventorySource | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    manifest: Manifest
    routes: tuple[Route, ...]
    tasks: tuple[ListTask, ...]


def _without_covered(
    prefixes: tuple[str, ...],
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The prefixes inside no other, and (prefix, the kept one holding it) for the rest.

    "a/" already yields everything under "a/b/": listing both would give a recipient the same
    object twice, so the narrower prefix is merged into the wider one. Its objects then come
    at the wider prefix's place, in key order (one listing is read once, whoever shares it).
    """
    kept = tuple(p for p in prefixes if not any(q != p and p.startswith(q) for q in prefixes))
    merged = tuple((p, next(q for q in kept if p.startswith(q))) for p in prefixes if p not in kept)
    return kept, merged


def build_plan(manifest: Manifest) -> Plan:
    """Routes in manifest order, and one list task per distinct (target, prefix)."""
    routes: list[Route] = []
    slots: dict[tuple[BucketTarget, str, InventorySource | None], list[Slot]] = {}
    for job in manifest.jobs:
        for grant in job.grants:
            target = BucketTarget(
                bucket=grant.bucket,
                region=grant.region,
                endpoint_url=grant.endpoint_url,
                addressing_style=grant.addressing_style,
            )
            prefixes, merged = _without_covered(grant.prefixes)
            route = Route(len(routes), grant, target, prefixes, merged)
            routes.append(route)
            for position, prefix in enumerate(prefixes):
                key = (target, prefix, grant.source)
                slots.setdefault(key, []).append(Slot(route.index, position))
    tasks = tuple(
        ListTask(target=target, prefix=prefix, slots=tuple(found), source=source)
        for (target, prefix, source), found in slots.items()
    )
    return Plan(manifest=manifest, routes=tuple(routes), tasks=tasks)


def merged_prefixes(route: Route) -> list[dict[str, str]]:
    """The route's merged prefixes as plain data, for the plan and the summary."""
    return [{"prefix": prefix, "into": into} for prefix, into in route.merged]


def describe(plan: Plan) -> dict[str, Any]:
    """The resolved plan as plain data: what ``sharebatch validate`` shows."""
    manifest = plan.manifest
    jobs: dict[str, list[dict[str, Any]]] = {}
    for route in plan.routes:
        grant = route.grant
        expiry = grant.expiry
        filters = {
            name: iso(value) if isinstance(value, datetime) else value
            for name, value in asdict(grant.filters).items()
            if value not in (None, ())
        }
        jobs.setdefault(route.job, []).append(
            {
                "recipient": grant.recipient.id,
                "name": grant.recipient.name,
                "email": grant.recipient.email,
                "bucket": grant.bucket,
                "region": grant.region,
                "endpoint_url": grant.endpoint_url,
                "prefixes": list(route.prefixes),
                "merged_prefixes": merged_prefixes(route),
                "expires_in": expiry.seconds,
                "expires_at": iso(expiry.at) if expiry.at else None,
                "filters": filters,
                "download_name": grant.download_name,
                "content_type": grant.content_type,
                "formats": list(grant.formats),
                "on_short_credentials": grant.on_short_credentials,
                "upload": asdict(grant.upload) if grant.upload else None,
            }
            | ({"scan": asdict(grant.scan)} if grant.scan else {})
            | ({"source": grant.source.model_dump()} if grant.source else {})
        )
    return {
        "manifest": manifest.path,
        "sha256": manifest.sha256,
        "as_of": manifest.as_of.isoformat(),
        "output_dir": manifest.output_dir,
        # Where the run will write without --out: output.dir resolved beside the manifest.
        "output_folder": str(manifest.output_folder() or "bundles"),
        "list_tasks": len(plan.tasks),
        "jobs": [{"name": name, "recipients": recipients} for name, recipients in jobs.items()],
    }
