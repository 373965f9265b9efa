"""A split prefix's sub-folders spread across the shards, and the merge's check of them.

With splitting on, every shard probes every listed task (the one delimiter request a split
makes anyway) and so sees the same top level: its own objects and its sub-folders, in key
order, the *segments* of the task. Each sub-folder goes to the shard ``sha256(bucket NUL
sub-prefix) mod N`` (``assign.owner_of``); the task's own objects stay with the task's owner,
as does a task listed whole (too many sub-folders, more than one page, or a failed probe).

Each shard records per task what it saw (``split``: the sub-folders' sha256 and count, the
number of segments and those it listed) or that its probe failed (``unprobed``). The merge
(``check``) holds the shards to one view: a task split by one shard must be split the same way
by every shard, and its segments listed once each, else ``ShardMismatch`` (the bucket changed
between the probes, or the shards ran with different ``--concurrency`` or ``--no-split``: run
them again). A shard whose probe failed where another split the task owes its segments: the
task fails (exit 1), naming that shard to run again.
"""

from __future__ import annotations

import hashlib
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
    """The sub-folders a probe showed, as one digest (NUL cannot occur in a key)."""
    return hashlib.sha256("\0".join(folders).encode()).hexdigest()


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
    """The shards held to one view of every split task (``ShardMismatch`` otherwise); the
    tasks that failed because a shard could not probe them, by index."""
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
        for shard in shards:
            k = shard.spec.index
            entry = by_shard.get(k)
            if entry is not None and entry.get("unprobed"):
                found = PrefixFailure(**entry["unprobed"])
                failed.setdefault(
                    index,
                    PrefixFailure(
                        found.bucket,
                        found.prefix,
                        found.error,
                        f"shard {shard.spec.name} could not probe it ({found.message});"
                        " run that shard again, then merge again",
                    ),
                )
                continue
            if k not in split or _view(split[k]) != seen:
                raise ShardMismatch(
                    f"shard {shard.spec.name} saw other sub-folders of {where} than shard"
                    f" {shards[first].spec.name} (the bucket changed between their listings,"
                    " or they ran with different --concurrency or --no-split); run the"
                    " shards again"
                )
        if index in failed:
            continue
        listed = [i for entry in split.values() for i in entry["listed"]]
        if sorted(listed) != list(range(seen[2])):
            raise ShardMismatch(
                f"the shards did not list each segment of {where} once; run the shards again"
            )
    return failed


def _view(split: dict[str, Any]) -> tuple[int, str, int]:
    return (split["folders"], split["folders_sha256"], split["segments"])
