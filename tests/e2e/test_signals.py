"""SIGTERM (cron's timeout, systemd's stop) and SIGINT (Ctrl-C) sent to a real run.

The run is a subprocess (``python -m sharebatch run``) whose listing of one prefix is held by
the fault proxy until the signal has been sent: the signal always lands mid-run, with no
sleeping and no guessing.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch import Connection, Interrupted
from sharebatch.cli import app
from sharebatch.run import runner, write
from sharebatch.run.folder import LOCK_NAME
from tests.support.faultproxy import FaultProxy
from tests.support.held_run import BUCKET, FILES, MANIFEST, held_s3, start_run
from tests.support.s3 import S3, fetch, write_manifest


@pytest.fixture
def held(s3: S3) -> Iterator[FaultProxy]:
    """moto behind the proxy; every listing of b/ waits until the test releases it."""
    with held_s3(s3) as proxy:
        yield proxy


def everything_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def lock_is_free(out: Path) -> bool:
    fd = os.open(out / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_run_leaves_no_bundle_records_it_and_frees_the_lock(
    s3: S3, held: FaultProxy, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """A signal while listing: exit 130/143, stdout empty, only audit.jsonl and summary.json
    left (no bundle, staging or temp file), both say 'interrupted' and which signal, and the
    lock is free: the next run on the same OUT completes."""
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    out = tmp_path / "out"
    with start_run(manifest, out, held.url, "stopped") as proc:
        try:
            assert held.held.wait(timeout=60), "the run never reached S3"
            proc.send_signal(sig)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == code, stderr
    assert stdout == ""
    assert f"sharebatch: error: interrupted by {sig.name}" in stderr
    assert everything_under(out) == [
        LOCK_NAME,
        "stopped",
        "stopped/audit.jsonl",
        "stopped/summary.json",
    ]
    summary = json.loads((out / "stopped" / "summary.json").read_text())
    assert (summary["status"], summary["signal"]) == ("interrupted", sig.name)
    last = json.loads((out / "stopped" / "audit.jsonl").read_text().splitlines()[-1])
    assert (last["event"], last["status"], last["signal"]) == (
        "run_finished",
        "interrupted",
        sig.name,
    )
    assert lock_is_free(out)

    held.release.set()
    result = CliRunner().invoke(
        app, ["run", str(manifest), "--out", str(out), "--endpoint-url", held.url]
    )
    assert result.exit_code == 0, result.stderr
    bob = json.loads((Path(result.stdout.strip()) / "share/bob/links.json").read_text())
    assert [fetch(link["url"]) for link in bob["links"]] == [b"one", b"two", b"three"]


def test_signal_while_bundles_are_written_keeps_none_of_them(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM after the first bundle is written: the run stops before the next one, removes
    the one it wrote (an interrupted run has no bundle that looks complete), says so in the
    audit log, and raises Interrupted (exit 143)."""
    s3.bucket(BUCKET, FILES)
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    written: list[Path] = []
    real_write = write.write_bundle

    def write_then_signal(dest: Path, *args: object, **kwargs: object) -> object:
        result = real_write(dest, *args, **kwargs)  # type: ignore[arg-type]
        written.append(dest)
        if len(written) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(write, "write_bundle", write_then_signal)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as caught:
        runner.run_manifest(
            manifest,
            out=tmp_path / "out",
            connection=Connection(endpoint_url=s3.endpoint),
            run_id="mid-write",
        )
    assert caught.value.exit_code == 143
    assert [p.name for p in written] == ["alice"]
    run_dir = tmp_path / "out" / "mid-write"
    assert sorted(p.name for p in run_dir.iterdir()) == ["audit.jsonl", "summary.json"]
    events = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    discarded = [e["path"] for e in events if e["event"] == "bundle_discarded"]
    assert discarded == [str(run_dir / "share")]
    assert (events[-1]["event"], events[-1]["status"]) == ("run_finished", "interrupted")
    # The handlers are put back: this process's own SIGTERM disposition is untouched.
    assert signal.getsignal(signal.SIGTERM) == before
