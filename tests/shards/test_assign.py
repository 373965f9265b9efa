"""Which shard lists which prefix: stable across processes, disjoint, complete."""

from __future__ import annotations

import subprocess
import sys

from sharebatch.models import BucketTarget
from sharebatch.run.plan import ListTask
from sharebatch.shards.assign import owner


def _task(bucket: str, prefix: str) -> ListTask:
    return ListTask(BucketTarget(bucket, None, None), prefix, ())


def test_owner_is_sha256_of_bucket_and_prefix() -> None:
    """The owner is the same in another process (no salted hash()): a fixed value."""
    code = (
        "from sharebatch.shards.assign import owner;"
        "from sharebatch.run.plan import ListTask;"
        "from sharebatch.models import BucketTarget;"
        "print([owner(ListTask(BucketTarget('b', None, None), f'p{i}/', ()), 7)"
        " for i in range(20)])"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    here = str([owner(_task("b", f"p{i}/"), 7) for i in range(20)])
    assert there == here
    assert len(set(eval(here))) > 1  # noqa: S307 - our own list of ints


def test_bucket_and_prefix_cannot_run_together() -> None:
    """bucket "ab" + prefix "c" and bucket "a" + prefix "bc" are different tasks (a NUL
    between them), so they are free to land on different shards."""
    owners = {(b, p): owner(_task(b, p), 1000) for b, p in (("ab", "c"), ("a", "bc"))}
    assert owners[("ab", "c")] != owners[("a", "bc")]


def test_every_task_has_exactly_one_owner() -> None:
    """Over N shards, each task's owner is one index in 0..N-1."""
    for count in (1, 3, 7):
        for i in range(50):
            assert 0 <= owner(_task("bucket", f"x/{i}/"), count) < count
    assert {owner(_task("bucket", f"x/{i}/"), 1) for i in range(50)} == {0}
