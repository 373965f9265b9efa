"""Expanding a manifest into list tasks and per-recipient routes.

A *route* is one (job, recipient) pair: what it is entitled to and where its bundle goes.
A *list task* is one (bucket target, prefix) to list, with the route slots its objects feed.
Each distinct (target, prefix) is listed once, however many recipients share it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .manifest import Job, Manifest, Recipient
from .models import BucketTarget


@dataclass(frozen=True, slots=True)
class Route:
    """One recipient of one job; ``prefixes`` are in bundle order, overlaps removed."""

    index: int
    job: Job
    recipient: Recipient
    target: BucketTarget
    prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Slot:
    """Objects of a list task go to ``route`` at position ``position`` of its prefixes."""

    route: int
    position: int


@dataclass(frozen=True, slots=True)
class ListTask:
    target: BucketTarget
    prefix: str
    slots: tuple[Slot, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    manifest: Manifest
    routes: tuple[Route, ...]
    tasks: tuple[ListTask, ...]

    def tasks_of(self, route: Route) -> list[ListTask]:
        """The list tasks that feed ``route``."""
        return [t for t in self.tasks if any(s.route == route.index for s in t.slots)]


def _without_covered(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    # "a/" already yields everything under "a/b/": listing both would give a recipient the
    # same object twice, so the narrower prefix is dropped for that recipient.
    return tuple(
        p
        for i, p in enumerate(prefixes)
        if not any(q != p and p.startswith(q) for j, q in enumerate(prefixes) if j != i)
    )


def build_plan(manifest: Manifest) -> Plan:
    """Routes in manifest order, and one list task per distinct (target, prefix)."""
    routes: list[Route] = []
    slots: dict[tuple[BucketTarget, str], list[Slot]] = {}
    for job in manifest.jobs:
        target = BucketTarget(
            bucket=job.bucket,
            region=job.region,
            endpoint_url=job.endpoint_url,
            addressing_style=job.addressing_style,
        )
        for recipient in job.recipients:
            prefixes = _without_covered(job.recipient_prefixes(recipient))
            route = Route(len(routes), job, recipient, target, prefixes)
            routes.append(route)
            for position, prefix in enumerate(prefixes):
                slots.setdefault((target, prefix), []).append(Slot(route.index, position))
    tasks = tuple(
        ListTask(target=target, prefix=prefix, slots=tuple(found))
        for (target, prefix), found in slots.items()
    )
    return Plan(manifest=manifest, routes=tuple(routes), tasks=tasks)
