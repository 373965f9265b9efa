"""End to end: `sharebatch run` against moto's HTTP S3, then every link fetched and compared."""

from __future__ import annotations

import csv
import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch import audit
from sharebatch.cli import app
from tests.support.s3 import (
    ACCESS_KEY,
    SECRET_KEY,
    fetch,
    fresh_s3,
    seal_aws_env,
    use_test_credentials,
    write_manifest,
)

BUCKET = "acme-reports"


def _files() -> dict[str, bytes]:
    """1,203 objects under one prefix (two listing pages), plus smaller prefixes."""
    files = {f"big/part-{i:05d}.bin": f"object {i}\n".encode() * (i % 7 + 1) for i in range(1203)}
    files.update(
        {
            "reports/q3/summary.pdf": b"%PDF summary",
            "reports/q3/notes with space+plus.txt": "notes \u00e9\n".encode(),
            "reports/q3/": b"",  # folder marker: never shared
            "reports/q3/sub/": b"",
            "reports/q3/sub/detail.csv": b"a,b\n1,2\n",
            "partners/globex/statement.csv": b"globex,1\n",
            "partners/initech/statement.csv": b"initech,2\n",
            "unrelated/secret.txt": b"not for anyone",
        }
    )
    return files


MANIFEST = f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  expires_in: 72h
jobs:
  - name: q3
    prefixes: [reports/q3/]
    recipients:
      - id: globex
        prefixes: [partners/globex/]
      - id: initech
        prefixes: [partners/initech/, big/]
  - name: bulk
    expires_in: 30m
    prefixes: [big/]
    recipients:
      - id: archive
"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def bundle_rows(bundle: Path) -> list[dict[str, str]]:
    with (bundle / "links.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def finished_run(
    moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, Path, dict[str, bytes]]]:
    """One full run of MANIFEST (1,200 objects, straight into moto), for the tests below."""
    tmp_path = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp, fresh_s3(moto_endpoint) as s3:
        seal_aws_env(mp, tmp_path_factory.mktemp("aws"))
        use_test_credentials(mp)
        files = _files()
        s3.bucket(BUCKET, files, over_http=False)
        manifest = write_manifest(tmp_path / "q3.yml", MANIFEST)
        result = invoke(
            "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint
        )
        audit.reset()
        assert result.exit_code == 0, result.stderr
        yield result, Path(result.stdout.strip()), files


def test_every_link_downloads_the_uploaded_bytes(
    finished_run: tuple[Any, Path, dict[str, bytes]],
) -> None:
    """Each recipient's bundle holds exactly its entitled objects, and each link returns them."""
    _, run_dir, files = finished_run
    entitled = {
        ("q3", "globex"): ["reports/q3/", "partners/globex/"],
        ("q3", "initech"): ["reports/q3/", "partners/initech/", "big/"],
        ("bulk", "archive"): ["big/"],
    }
    for (job, recipient), prefixes in entitled.items():
        rows = bundle_rows(run_dir / job / recipient)
        expected = [k for p in prefixes for k in sorted(files) if k.startswith(p) and files[k]]
        assert [r["key"] for r in rows] == expected
        for row in rows:
            assert fetch(row["url"]) == files[row["key"]]
            assert int(row["size"]) == len(files[row["key"]])
            assert row["recipient"] == recipient and row["method"] == "GET"


def test_links_are_sigv4_with_the_job_expiry(
    finished_run: tuple[Any, Path, dict[str, bytes]],
) -> None:
    """Links are SigV4 (never SigV2) and carry the job's X-Amz-Expires."""
    _, run_dir, _ = finished_run
    for job, recipient, seconds in (("q3", "globex", 259200), ("bulk", "archive", 1800)):
        for row in bundle_rows(run_dir / job / recipient):
            assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in row["url"]
            assert f"X-Amz-Expires={seconds}&" in row["url"]
            assert f"X-Amz-Credential={ACCESS_KEY}%2F" in row["url"]


def test_json_bundle_matches_csv_and_has_a_header(
    finished_run: tuple[Any, Path, dict[str, bytes]],
) -> None:
    """links.json holds the same rows as links.csv, under a header naming run, job and signer."""
    _, run_dir, _ = finished_run
    bundle = run_dir / "q3" / "initech"
    data = json.loads((bundle / "links.json").read_text(encoding="utf-8"))
    rows = bundle_rows(bundle)
    assert [{k: str(v) for k, v in row.items()} for row in data["links"]] == rows
    header = data["header"]
    assert header["run_id"] == run_dir.name
    assert (header["job"], header["recipient"]) == ("q3", "initech")
    assert header["signer_access_key_id"] == ACCESS_KEY
    assert header["links"] == len(rows)
    assert header["expires_at"] == min(r["expires_at"] for r in rows)


def test_bundles_are_private(finished_run: tuple[Any, Path, dict[str, bytes]]) -> None:
    """Every file the run writes is 0600 and every folder 0700: links are bearer secrets."""
    _, run_dir, _ = finished_run
    paths = [run_dir, *run_dir.rglob("*")]
    assert {p.name for p in paths} >= {"links.csv", "links.json", "summary.json", "audit.jsonl"}
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    assert not [p for p in paths if p.name.endswith(".tmp") or p.name == ".staging"]


def test_summary_counts_each_prefix_once(finished_run: tuple[Any, Path, dict[str, bytes]]) -> None:
    """summary.json counts per job, recipient and prefix; a shared prefix is listed only once."""
    _, run_dir, _ = finished_run
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "ok" and summary["failures"] == []
    listed = {(p["bucket"], p["prefix"]): p["objects"] for p in summary["prefixes"]}
    assert sorted(listed) == sorted(
        (BUCKET, p) for p in ["reports/q3/", "partners/globex/", "partners/initech/", "big/"]
    )
    assert listed[(BUCKET, "big/")] == 1203
    assert listed[(BUCKET, "reports/q3/")] == 3
    recipients = {
        (j["name"], r["id"]): r["links"] for j in summary["jobs"] for r in j["recipients"]
    }
    assert recipients == {("q3", "globex"): 4, ("q3", "initech"): 1207, ("bulk", "archive"): 1203}
    assert summary["totals"]["links"] == 4 + 1207 + 1203
    assert summary["totals"]["bundles"] == 3


def test_audit_log_records_every_stage(finished_run: tuple[Any, Path, dict[str, bytes]]) -> None:
    """audit.jsonl has run_started .. run_finished, one link_issued per link, with URL hashes."""
    _, run_dir, _ = finished_run
    events = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names[:2] == ["run_started", "manifest_loaded"]
    assert names[-1] == "run_finished" and events[-1]["status"] == "ok"
    assert names.count("prefix_listed") == 4
    assert names.count("bundle_written") == 6
    issued = [e for e in events if e["event"] == "link_issued"]
    assert len(issued) == 4 + 1207 + 1203
    rows = bundle_rows(run_dir / "q3" / "globex")
    digests = {e["url_sha256"] for e in issued if e["recipient"] == "globex"}
    assert digests == {hashlib.sha256(r["url"].encode()).hexdigest() for r in rows}
    loaded = next(e for e in events if e["event"] == "manifest_loaded")
    assert len(loaded["sha256"]) == 64


def test_no_secret_in_any_log_line(finished_run: tuple[Any, Path, dict[str, bytes]]) -> None:
    """Neither stderr nor the audit log holds a signature, a URL or the secret key."""
    result, run_dir, _ = finished_run
    signatures = {
        r["url"].rsplit("X-Amz-Signature=", 1)[1] for r in bundle_rows(run_dir / "q3" / "globex")
    }
    for text in (
        result.stderr,
        (run_dir / "audit.jsonl").read_text(),
        (run_dir / "summary.json").read_text(),
    ):
        assert "X-Amz-Signature" not in text
        assert SECRET_KEY not in text
        assert not any(sig in text for sig in signatures)
    assert "run_finished" in result.stderr


def test_stdout_is_the_run_folder(finished_run: tuple[Any, Path, dict[str, bytes]]) -> None:
    """stdout carries only data (the run folder); the run id looks like 20261128T201500Z-3f9a."""
    result, run_dir, _ = finished_run
    assert result.stdout == f"{run_dir}\n"
    assert run_dir.parent.name == "out"
    assert len(run_dir.name) == 21 and run_dir.name[8] == "T" and run_dir.name[15:17] == "Z-"
