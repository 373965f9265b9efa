"""A split prefix's sub-folders spread across the shards, and the merge's check of them.

With splitting on, every shard probes every listed task (the one delimiter request a split
makes anyway) and so sees the same top level: its own objects and its sub-folders, in key
order, the *segments* of the task. Each sub-folder goes to the shard ``sha256(bucket NUL
sub-prefix) mod N`` (``assign.owner_of``); the task's own objects stay with the task's owner,
as does a task listed whole (too many sub-folders, more than one page, or a failed probe).

Each shard records per task what it saw (``split``: the sub-folders' sha256 and count, the
number of segments and those it listed) or that its probe failed (``unprobed``). The merge
(``check``) holds the shards to one view: a task split by one shard must be split the same way
by every shard that probed it, its owner among them, and its segments listed once each, else
``ShardMismatch`` (the bucket changed between the probes, or the shards ran with different
``--concurrency`` or ``--no-split``: run them again). A shard whose probe failed owes its
sub-folders when others split the task: if any are missing the task fails (exit 1), naming
that shard to run again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from sharebatch.errors import S3ListingError, ShardMismatch
from sharebatch.models import PrefixFailure
from sharebatch.run.pipeline import Segment
from sharebatch.run.plan import ListTask, Plan
from sharebatch.shards.assign import owner, owner_of
from sharebatch.shards.record import ShardRecord
from sharebatch.shards.spec import ShardSpec
from sharebatch.visible import visible


def folders_sha256(folders: list[str]) -> str:
    """The sub-folders a probe showed, as one digest (of their JSON list: unambiguous
    whatever characters the names hold)."""
    return hashlib.sha256(json.dumps(folders).encode()).hexdigest()


class SegmentShare:
    """One shard's part of each listed task (``pipeline.Share``), and what it saw."""

    def __init__(self, plan: Plan, shard: ShardSpec) -> None:
        self._shard = shard
        self._index = {task: i for i, task in enumerate(plan.tasks)}
        self.seen: dict[int, dict[str, Any]] = {}

    def owns(self, task: ListTask) -> bool:
        return owner(task, self._shard.count) == self._shard.index

    def split(self, task: ListTask, segments: list[Segment]) -> list[bool]:
        bucket = task.target.bucket
        mine = self.owns(task)
        ours = [
            owner_of(bucket, s, self._shard.count) == self._shard.index
            if isinstance(s, str)
            else mine
            for s in segments
        ]
        folders = [s for s in segments if isinstance(s, str)]
        self.seen[self._index[task]] = {
            "split": {
                "folders": len(folders),
                "folders_sha256": folders_sha256(folders),
                "segments": len(segments),
                "listed": [i for i, listed in enumerate(ours) if listed],
            }
        }
        return ours

    def unprobed(self, task: ListTask, error: S3ListingError) -> None:
        failure = PrefixFailure(task.target.bucket, task.prefix, error.code, str(error))
        self.seen[self._index[task]] = {"unprobed": asdict(failure)}

    def of(self, index: int) -> dict[str, Any]:
        """What the record keeps of task ``index``: ``split`` and ``unprobed`` (or None)."""
        found = self.seen.get(index, {})
        return {"split": found.get("split"), "unprobed": found.get("unprobed")}


def check(plan: Plan, shards: list[ShardRecord]) -> dict[int, PrefixFailure]:
    """The shards held to one view of every split task, each segment listed once
    (``ShardMismatch`` otherwise); the tasks that failed because a shard that could not probe
    them owed segments, by index."""
    entries: dict[int, dict[int, dict[str, Any]]] = {}
    for shard in shards:
        for task in shard.record["tasks"]:
            entries.setdefault(task["index"], {})[shard.spec.index] = task
    failed: dict[int, PrefixFailure] = {}
    for index, by_shard in sorted(entries.items()):
        split = {k: e["split"] for k, e in by_shard.items() if e.get("split")}
        if not split or any(e["failure"] is not None for e in by_shard.values()):
            continue  # listed whole by its owner, or failed anyway
        task = plan.tasks[index]
        where = f"{visible(task.target.bucket)}/{visible(task.prefix)}"
        first = min(split)
        seen = _view(split[first])
        named = {shard.spec.index: shard.spec.name for shard in shards}
        differs = [k for k, found in split.items() if _view(found) != seen]
        if differs or owner(task, len(shards)) not in split:
            # The owner listed the prefix whole while others split it: the bucket changed.
            other = differs[0] if differs else owner(task, len(shards))
            raise ShardMismatch(
                f"shard {named[other]} saw other sub-folders of {where} than shard"
                f" {named[first]} (the bucket changed between their listings, or they ran"
                " with different --concurrency or --no-split); run the shards again"
            )
        listed = sorted(i for found in split.values() for i in found["listed"])
        if listed == list(range(seen[2])):
            continue  # a shard whose probe failed owed none of it
        unprobed = sorted(k for k, e in by_shard.items() if e.get("unprobed"))
        if len(set(listed)) != len(listed) or not unprobed:
            raise ShardMismatch(
                f"the shards did not list each segment of {where} once (shards that saw it"
                " whole, or ran with different --concurrency or --no-split); run the shards"
                " again"
            )
        found = PrefixFailure(**by_shard[unprobed[0]]["unprobed"])
        names = ", ".join(named[k] for k in unprobed)
        failed[index] = PrefixFailure(
            found.bucket,
            found.prefix,
            found.error,
            f"shard {names} could not probe it ({found.message}); run"
            f" {'them' if len(unprobed) > 1 else 'it'} again, then merge again",
        )
    return failed


def _view(split: dict[str, Any]) -> tuple[int, str, int]:
    return (split["folders"], split["folders_sha256"], split["segments"])
