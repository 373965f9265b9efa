"""One run at a time per output folder: a second run is refused (exit 75), a dead one's lock
does not linger.

The first run's listing is held by the fault proxy, so the second run always starts while the
first holds the lock; the test waits on processes and events, never on time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.errors import EXIT_LOCKED
from sharebatch.run.folder import LOCK_NAME
from tests.support.faultproxy import FaultProxy
from tests.support.held_run import MANIFEST, held_s3, start_run
from tests.support.s3 import S3, fetch, write_manifest


@pytest.fixture
def held(s3: S3) -> Iterator[FaultProxy]:
    """moto behind the proxy; every listing of b/ waits until the test releases it."""
    with held_s3(s3) as proxy:
        yield proxy


def test_two_concurrent_runs_on_one_out_one_proceeds_one_refuses(
    held: FaultProxy, tmp_path: Path
) -> None:
    """Two runs started together on one OUT: one is refused at once with exit 75, writing no
    run folder; the other completes with every bundle."""
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    out = tmp_path / "out"
    procs = {rid: start_run(manifest, out, held.url, rid) for rid in ("run-a", "run-b")}
    try:
        with ThreadPoolExecutor(2) as pool:
            done: dict[Future[tuple[str, str]], str] = {
                pool.submit(proc.communicate, timeout=60): rid for rid, proc in procs.items()
            }
            first, _ = wait(done, timeout=60, return_when=FIRST_COMPLETED)
            # Nothing was released yet: whichever ended first cannot be the one holding S3.
            [refused_future] = first
            refused = done[refused_future]
            winner = "run-b" if refused == "run-a" else "run-a"
            assert procs[refused].returncode == EXIT_LOCKED
            _, stderr = refused_future.result()
            assert "another sharebatch run is writing to" in stderr
            # The holder's details may not be written yet when both start at once; the test
            # below shows them where the holder is known to be running.
            assert not (out / refused).exists()
            held.release.set()
            _, stderr = next(f for f in done if f is not refused_future).result()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert procs[winner].returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, winner]
    summary = json.loads((out / winner / "summary.json").read_text())
    assert summary["status"] == "ok"
    bob = json.loads((out / winner / "share" / "bob" / "links.json").read_text())
    assert [fetch(link["url"]) for link in bob["links"]] == [b"one", b"two", b"three"]


def test_lock_of_a_killed_run_does_not_block_the_next(
    s3: S3, held: FaultProxy, tmp_path: Path
) -> None:
    """A run killed with SIGKILL (nothing of it could clean up) leaves its lock file, but not
    its lock: the next run on the same OUT completes."""
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    out = tmp_path / "out"
    with start_run(manifest, out, held.url, "killed") as proc:
        try:
            assert held.held.wait(timeout=60), "the run never reached S3"
            proc.kill()
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -9
    holder = json.loads((out / LOCK_NAME).read_text())
    assert (holder["pid"], holder["run_id"]) == (proc.pid, "killed")

    held.release.set()
    result = CliRunner().invoke(
        app, ["run", str(manifest), "--out", str(out), "--endpoint-url", s3.endpoint]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads((Path(result.stdout.strip()) / "summary.json").read_text())["status"] == "ok"


def test_refusal_names_the_running_holder(held: FaultProxy, tmp_path: Path) -> None:
    """A run started while another is listing is refused with exit 75 naming that run."""
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    out = tmp_path / "out"
    first = start_run(manifest, out, held.url, "first-run")
    procs = [first]
    try:
        assert held.held.wait(timeout=60), "the first run never reached S3"
        second = start_run(manifest, out, held.url, "second-run")
        procs.append(second)
        _, stderr = second.communicate(timeout=60)
        assert second.returncode == EXIT_LOCKED
        assert "run_id first-run" in stderr
        assert f"pid {first.pid}" in stderr
        held.release.set()
        first.communicate(timeout=60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert first.returncode == 0
    assert not (out / "second-run").exists()
