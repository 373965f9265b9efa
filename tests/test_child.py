"""A child process of ours (``child``) under a parent that is process 1."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.paths import ROOT

_AS_PID_1 = ["unshare", "--pid", "--fork", "--mount-proc"]


def _pid_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    tried = subprocess.run([*_AS_PID_1, "true"], capture_output=True, check=False)
    return tried.returncode == 0


@pytest.mark.skipif(not _pid_namespaces(), reason="needs a PID namespace (unshare --pid, as root)")
def test_a_child_of_a_parent_that_is_process_1_does_its_work(tmp_path: Path) -> None:
    """In a container the command often is process 1: a child it starts (here the merge's
    audit child) must not take "my parent is 1" for orphaned and quit; it merges the log
    and exits 0. (It did quit, exit 1, before the parent's pid was handed down.)"""
    log = tmp_path / "shard.jsonl"
    log.write_bytes(b'{"event": "x", "timestamp": "2026-12-03T10:00:00Z"}\n')
    merged = tmp_path / "merged.jsonl"
    parent = textwrap.dedent(
        """
        import asyncio, os, sys
        sys.path.insert(0, sys.argv[1])
        from sharebatch import child

        async def run():
            process = await child.start(
                "sharebatch.shards.events", "serve", sys.argv[2], sys.argv[3], "0-of-1"
            )
            return await process.wait()

        print(os.getpid(), asyncio.run(run()))
        """
    )
    done = subprocess.run(
        [*_AS_PID_1, sys.executable, "-c", parent, str(ROOT), str(merged), str(log)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0"]
    assert merged.read_bytes() == (
        b'{"shard": "0-of-1", "event": "x", "timestamp": "2026-12-03T10:00:00Z"}\n'
    )
