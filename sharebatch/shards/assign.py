"""Which shard lists which list task: a stable hash of (bucket, prefix), modulo N; which
sub-folders of a split task: the same hash of (bucket, sub-prefix) (``segments``); and which
data files of an S3 Inventory report it reads: their index, modulo N.

sha256, never Python's ``hash()``: that is salted per process, and every shard (and the
merge) must compute the same owner on its own machine. A prefix shared by many recipients is
still listed once: by its owner when listed whole, else each of its sub-folders by theirs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

from sharebatch.run.plan import ListTask, Plan
from sharebatch.shards.spec import ShardSpec


def owner(task: ListTask, count: int) -> int:
    """The shard (from 0) that lists ``task`` in a run of ``count`` shards."""
    return owner_of(task.target.bucket, task.prefix, count)


def owner_of(bucket: str, prefix: str, count: int) -> int:
    """The shard (from 0) that lists ``prefix`` of ``bucket``: a task's, or a sub-folder's."""
    key = bucket.encode() + b"\0" + prefix.encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % count


def owned(plan: Plan, shard: ShardSpec, *, split: bool = False) -> list[int]:
    """The indexes (in ``plan.tasks``) of the tasks ``shard`` lists or reads: a listed
    task by its owner, or with ``split`` every listed task (each shard probes it and lists its
    share: ``segments``), every S3 Inventory task (each shard reads its share of the data
    files: ``reads_data_file``)."""
    return [
        i
        for i, task in enumerate(plan.tasks)
        if split or task.source is not None or owner(task, shard.count) == shard.index
    ]


def reads_data_file(shard: ShardSpec) -> Callable[[int], bool]:
    """Which data files of a report ``shard`` reads: by their index in ``manifest.json``'s
    ``files`` list, modulo N (the list is the report's own, the same for every shard)."""
    return lambda index: index % shard.count == shard.index


def shard_plan(plan: Plan, shard: ShardSpec, *, split: bool = False) -> Plan:
    """The plan with only ``shard``'s tasks; its routes whole, so route indexes and each
    route's prefix positions stay those of a one-machine run."""
    return replace(plan, tasks=tuple(plan.tasks[i] for i in owned(plan, shard, split=split)))
