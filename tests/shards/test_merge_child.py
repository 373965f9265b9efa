"""The merge's audit log is merged by a child process: its failure, its death, a signal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sharebatch import child
from sharebatch.shards import events
from tests.support.procs import gone
from tests.support.s3 import S3
from tests.support.shards import merge, run_shards, seed

ROOT = Path(__file__).resolve().parents[2]


def _nothing_complete(run_dir: Path) -> None:
    assert not (run_dir / "summary.json").exists()
    assert not list(run_dir.glob("*/*/links.*"))
    assert not (run_dir / "index.html").exists()


def _events(run_dir: Path) -> list[str]:
    lines = (run_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["event"] for line in lines]


@pytest.fixture
def shards(s3: S3, tmp_path: Path) -> Path:
    """Two shards of the sharing manifest, finished: the run folder to merge."""
    manifest = seed(s3, tmp_path)
    run_shards(manifest, tmp_path / "out", s3.endpoint, "job", 2)
    return tmp_path / "out" / "job"


def test_the_audit_merge_failing_fails_the_merge(
    shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child cannot write the log (its folder is gone): the merge exits 1 naming the
    child's error, writes no summary, and leaves no bundle or review page; merged again, it
    writes the run."""
    real = child.start

    async def elsewhere(
        module: str, function: str, *args: str, stderr: int | None = None
    ) -> asyncio.subprocess.Process:
        gone = str(shards / "gone" / "audit.jsonl")
        return await real(module, function, gone, *args[1:], stderr=stderr)

    with monkeypatch.context() as patched:
        patched.setattr(child, "start", elsewhere)
        broken = merge(shards)
    assert broken.returncode == 1
    assert "the audit log's merge" in broken.stderr
    assert "exit status 1: FileNotFoundError" in broken.stderr
    _nothing_complete(shards)
    # The merge's own lines are there, whole; the child wrote none.
    assert _events(shards)[0] == "run_started"
    again = merge(shards)
    assert again.returncode == 0, again.stderr
    assert (shards / "summary.json").is_file()


def test_the_audit_merge_killed_fails_the_merge(
    shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child killed (SIGKILL) while the merge writes the bundles: exit 1 naming the
    signal, no summary, no bundle, and the log holds whole lines only."""
    real = child.start

    async def killed(
        module: str, function: str, *args: str, stderr: int | None = None
    ) -> asyncio.subprocess.Process:
        process = await real(module, function, *args, stderr=stderr)
        process.kill()
        return process

    with monkeypatch.context() as patched:
        patched.setattr(child, "start", killed)
        broken = merge(shards)
    assert broken.returncode == 1
    assert "ended with signal SIGKILL" in broken.stderr
    _nothing_complete(shards)
    assert "run_started" in _events(shards)


_HELD = textwrap.dedent(
    """
    import asyncio, sys
    from sharebatch import child

    async def held(module, function, *args, **streams):
        # The audit log's merge, held: it tells the test its pid, then waits to be stopped.
        program = "import os, sys, time; print('held', os.getpid(), flush=True); time.sleep(600)"
        return await asyncio.create_subprocess_exec(sys.executable, "-c", program, **streams)

    child.start = held
    from sharebatch.cli import main
    sys.argv = ["sharebatch", *sys.argv[1:]]
    main()
    """
)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_merge_and_its_child(
    shards: Path, signum: signal.Signals, code: int
) -> None:
    """SIGTERM or SIGINT while the audit log is being merged: exit 143/130, the child
    ended with the merge, no summary and no bundle."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HELD, "merge", str(shards), "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    word, pid = process.stdout.readline().split()
    assert word == "held"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert gone(int(pid))
    _nothing_complete(shards)


def test_the_child_merges_a_log_without_the_library_and_ends_when_orphaned(
    tmp_path: Path,
) -> None:
    """``child.start`` runs the audit log's merge in a process of its own, with the
    arguments given, importing neither the package's public face nor the AWS SDK, pydantic,
    structlog or typer; a child told of a parent that is not its own (its parent died
    before it started) ends at once and writes nothing."""
    log = tmp_path / "shard.jsonl"
    log.write_bytes(b'{"event": "x", "timestamp": "2026-12-03T10:00:00Z"}\n')
    merged = tmp_path / "merged.jsonl"

    async def run() -> int | None:
        process = await child.start(
            "sharebatch.shards.events", "serve", str(merged), str(log), "0-of-1"
        )
        return await process.wait()

    assert asyncio.run(run()) == 0
    assert merged.read_bytes() == (
        b'{"shard": "0-of-1", "event": "x", "timestamp": "2026-12-03T10:00:00Z"}\n'
    )
    program = child.boot("sharebatch.shards.events", "serve")
    listed = program.replace("serve()\n", "print(' '.join(sorted(sys.modules)))\n")
    done = subprocess.run(
        [sys.executable, "-c", listed, child.PACKAGE], capture_output=True, text=True, check=True
    )
    loaded = set(done.stdout.split())
    heavy = {"boto3", "botocore", "aioboto3", "pydantic", "structlog", "typer"}
    assert not {name.partition(".")[0] for name in loaded} & heavy
    assert "sharebatch.delivery" not in loaded
    orphan = tmp_path / "orphan.jsonl"
    ended = subprocess.run(
        [sys.executable, "-c", program, child.PACKAGE, str(orphan), str(log), "0-of-1"],
        env={**os.environ, "SHAREBATCH_PARENT_PID": "999999999"},
        check=False,
    )
    assert ended.returncode == 1
    assert not orphan.exists()


def test_whole_lines_cuts_a_line_cut_short(tmp_path: Path) -> None:
    """A log a killed child was writing keeps its whole lines only; one without any line
    break is emptied; a missing one stays missing."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b'{"a": 1}\n' * 10_000 + b'{"cut": ')
    events._whole_lines(log)
    assert log.read_bytes() == b'{"a": 1}\n' * 10_000
    log.write_bytes(b"x" * 100_000)
    events._whole_lines(log)
    assert log.read_bytes() == b""
    events._whole_lines(tmp_path / "none.jsonl")
    assert not (tmp_path / "none.jsonl").exists()
