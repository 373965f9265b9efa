"""Shards published to S3 (``run --shard K/N --out s3://...``) and merged there
(``merge s3://.../<run-id>/``): the same run one machine writes locally."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sharebatch.models import Connection
from sharebatch.remote.folders import fetch_folder
from tests.support.s3 import S3
from tests.support.shards import bundles, csv_rows, merge, one_machine, seed, start_shard

RUNS = "runs-bucket"


def _shards(manifest: Path, s3: S3, run_id: str, count: int, only: tuple[int, ...]) -> None:
    started = {
        k: start_shard(manifest, f"s3://{RUNS}/team/", s3.endpoint, run_id, f"{k}/{count}")
        for k in only
    }
    for k, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, (k, stderr)
        assert stdout.strip() == f"s3://{RUNS}/team/{run_id}/shards/{k}-of-{count}/"


def _keys(s3: S3, prefix: str) -> dict[str, str]:
    """Every object under ``prefix``: its key and ETag."""
    found = s3.client.list_objects_v2(Bucket=RUNS, Prefix=prefix).get("Contents", [])
    return {o["Key"]: o["ETag"] for o in found}


def _fetched(s3: S3, uri: str, into: Path) -> Path:
    """The merged run folder downloaded, its shards left out (they are no bundle)."""
    fetch_folder(uri, into, connection=Connection(endpoint_url=s3.endpoint))
    shutil.rmtree(into / "shards")
    return into


def test_shards_on_s3_merge_into_one_machines_run(s3: S3, tmp_path: Path) -> None:
    """A merge with a shard missing, and one half-published (no summary.json), names both and
    publishes nothing; with all three it
    publishes the run beside the shards, summary last, whose bundles are one machine's (URLs
    aside); the merge's claim is gone after; a second merge finds it done and rewrites no
    object."""
    manifest = seed(s3, tmp_path)
    s3.bucket(RUNS, {})
    solo = one_machine(manifest, tmp_path / "solo", s3.endpoint, "solo")
    uri = f"s3://{RUNS}/team/job-3/"
    _shards(manifest, s3, "job-3", 3, (0, 1))

    # Shard 1 as a publish broken off leaves it: every file but its summary.json.
    s3.client.delete_object(Bucket=RUNS, Key="team/job-3/shards/1-of-3/summary.json")
    missing = merge(uri, "--endpoint-url", s3.endpoint)
    assert missing.returncode == 1
    assert "1-of-3, 2-of-3" in missing.stderr
    assert not [k for k in _keys(s3, "team/job-3/") if "/shards/" not in k]

    _shards(manifest, s3, "job-3", 3, (1, 2))
    merged = merge(uri, "--endpoint-url", s3.endpoint)
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.strip() == uri
    objects = _keys(s3, "team/job-3/")
    assert "team/job-3/summary.json" in objects
    assert "team/job-3/.merging" not in objects
    run_dir = _fetched(s3, uri, tmp_path / "fetched")
    assert bundles(run_dir) == bundles(solo)
    assert csv_rows(run_dir) == csv_rows(solo)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert (
        summary["totals"]["links"]
        == json.loads((solo / "summary.json").read_text())["totals"]["links"]
    )

    again = merge(uri, "--endpoint-url", s3.endpoint)
    assert again.returncode == 0, again.stderr
    assert _keys(s3, "team/job-3/") == objects


def test_a_merge_under_way_on_s3_makes_a_second_exit_75(s3: S3, tmp_path: Path) -> None:
    """The claim ``<run-id>/.merging`` is a conditional write: while it exists another merge
    exits 75, publishes nothing and leaves the claim alone."""
    manifest = seed(s3, tmp_path)
    s3.bucket(RUNS, {})
    _shards(manifest, s3, "job-1", 1, (0,))
    s3.client.put_object(Bucket=RUNS, Key="team/job-1/.merging", Body=b"{}\n")
    held = merge(f"s3://{RUNS}/team/job-1/", "--endpoint-url", s3.endpoint)
    assert held.returncode == 75
    assert ".merging" in held.stderr
    assert set(_keys(s3, "team/job-1/")) == {
        "team/job-1/.merging",
        *(k for k in _keys(s3, "team/job-1/shards/")),
    }
