"""The merge's check of split tasks: one view, each segment once, a failed probe owed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sharebatch.errors import ShardMismatch
from sharebatch.manifest.load import load_manifest
from sharebatch.run.plan import Plan, build_plan
from sharebatch.shards.assign import owner
from sharebatch.shards.record import ShardRecord
from sharebatch.shards.segments import check, folders_sha256
from sharebatch.shards.spec import ShardSpec

MANIFEST = """\
version: 1
jobs:
  - {name: j, bucket: bkt, region: eu-west-1, expires_in: 1h, prefixes: [p/], recipients: [{id: r}]}
"""
DENIED = {"bucket": "bkt", "prefix": "p/", "error": "AccessDenied", "message": "Access Denied"}


def _plan(tmp: Path) -> Plan:
    path = tmp / "m.yml"
    path.write_text(MANIFEST, encoding="utf-8")
    return build_plan(load_manifest(path))


def _split(folders: int, segments: int, listed: list[int]) -> dict[str, Any]:
    names = [f"p/f{i}/" for i in range(folders)]
    return {
        "folders": folders,
        "folders_sha256": folders_sha256(names),
        "segments": segments,
        "listed": listed,
    }


def _shards(entries: list[dict[str, Any]]) -> list[ShardRecord]:
    """Two shards, each with its entry for task 0 (``split``/``unprobed``)."""
    return [
        ShardRecord(
            ShardSpec(k, len(entries)),
            Path("/nowhere"),
            {"tasks": [{"index": 0, "failure": None, "split": None, "unprobed": None} | entry]},
            "ok",
            "0" * 64,
        )
        for k, entry in enumerate(entries)
    ]


def test_an_owner_that_listed_whole_while_another_split_is_refused(tmp_path: Path) -> None:
    """The owner saw the prefix whole (listed it all) and the other shard split it (listed its
    sub-folders): rows twice, so ShardMismatch naming the owner."""
    plan = _plan(tmp_path)
    mine = owner(plan.tasks[0], 2)
    entries: list[dict[str, Any]] = [{}, {}]
    entries[1 - mine] = {"split": _split(2, 3, [1, 2])}
    with pytest.raises(ShardMismatch, match=f"shard {mine}-of-2 saw other sub-folders of bkt/p/"):
        check(plan, _shards(entries))


def test_a_failed_probe_fails_the_task_only_when_it_owed_segments(tmp_path: Path) -> None:
    """The other shard could not probe: with no sub-folders (all the owner's) nothing is owed;
    with segments missing the task fails naming it; a segment listed twice is a mismatch."""
    plan = _plan(tmp_path)
    mine = owner(plan.tasks[0], 2)
    entries: list[dict[str, Any]] = [{}, {}]
    entries[1 - mine] = {"unprobed": DENIED}
    entries[mine] = {"split": _split(0, 1, [0])}
    assert check(plan, _shards(entries)) == {}
    entries[mine] = {"split": _split(2, 3, [0, 1])}
    failed = check(plan, _shards(entries))
    assert failed[0].error == "AccessDenied"
    assert failed[0].message.startswith(f"shard {1 - mine}-of-2 could not probe it")
    entries[mine] = {"split": _split(2, 3, [0, 1, 1])}
    with pytest.raises(ShardMismatch, match="did not list each segment of bkt/p/ once"):
        check(plan, _shards(entries))
