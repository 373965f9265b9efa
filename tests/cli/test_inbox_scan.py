"""``sharebatch inbox --scan`` through the CLI: exit codes, the text, JSON, CSV and metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.support.clamd import SIGNATURE, ClamdServer, eicar
from tests.support.linkkit import invoke
from tests.support.prometheus import parse_exposition
from tests.support.s3 import S3
from tests.support.scan_inbox import AS_OF, BUCKET, manifest


def run(path: Path, s3: S3, *extra: str) -> object:
    return invoke(
        "inbox", str(path), "--as-of", AS_OF.isoformat(), "--endpoint-url", s3.endpoint, *extra
    )


def test_exit_0_when_every_scanned_upload_is_clean(
    s3: S3, tmp_path: Path, clamd: ClamdServer
) -> None:
    """All clean: exit 0, and the text shows each file's verdict beside its status."""
    s3.bucket(BUCKET, {"inbox/globex/a.txt": b"a"})
    result = run(manifest(tmp_path, clamd.unix_url), s3, "--scan", "-q")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    line = next(x for x in result.stdout.splitlines() if x.endswith("a.txt"))  # type: ignore[attr-defined]
    assert line.split()[:2] == ["received", "clean"]


def test_exit_1_when_something_is_infected_and_the_signature_is_shown_visibly(
    s3: S3, tmp_path: Path, clamd: ClamdServer
) -> None:
    """EICAR in the slot: exit 1 (cron alerts); the text names the signature and where the
    file went; a key with a bidi override is shown escaped, never raw."""
    key = "inbox/globex/in\u202evoice.com"
    s3.bucket(BUCKET, {key: eicar()})
    result = run(manifest(tmp_path, clamd.unix_url), s3, "--scan", "-q")
    out = result.stdout  # type: ignore[attr-defined]
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "\u202e" not in out and "in\\u202evoice.com" in out
    assert "infected" in out and SIGNATURE in out
    assert "moved to quarantine/inbox/globex/in\\u202evoice.com@" in out


def test_without_scan_nothing_is_scanned_or_tagged(s3: S3, tmp_path: Path) -> None:
    """Plain inbox on a manifest with upload.scan: no verdict column, no tag written, exit 0
    even with EICAR in the slot (nothing was asked of a scanner)."""
    s3.bucket(BUCKET, {"inbox/globex/bad.com": eicar()})
    result = run(manifest(tmp_path, "unix:///nonexistent.ctl"), s3, "--json", "-q")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    files = json.loads(result.stdout)["slots"][0]["files"]  # type: ignore[attr-defined]
    assert "scan" not in files[0]
    tag_set = s3.client.get_object_tagging(Bucket=BUCKET, Key="inbox/globex/bad.com")["TagSet"]
    assert tag_set == []


def test_json_csv_and_metrics_carry_the_verdicts(
    s3: S3, tmp_path: Path, clamd: ClamdServer
) -> None:
    """--json and --csv give each file's scan, signature and quarantine key; --metrics-file
    counts files per verdict (zeros included) for the node_exporter textfile collector."""
    s3.bucket(BUCKET, {"inbox/globex/ok.txt": b"ok", "inbox/globex/bad.com": eicar()})
    out, metrics = tmp_path / "inbox.csv", tmp_path / "inbox.prom"
    result = run(
        manifest(tmp_path, clamd.tcp_url),
        s3,
        "--scan",
        "--json",
        "--csv",
        str(out),
        "--metrics-file",
        str(metrics),
        "-q",
    )
    assert result.exit_code == 1  # type: ignore[attr-defined]
    files = {
        f["key"]: f
        for s in json.loads(result.stdout)["slots"]  # type: ignore[attr-defined]
        for f in s["files"]
    }
    assert files["inbox/globex/ok.txt"]["scan"] == "clean"
    bad = files["inbox/globex/bad.com"]
    assert bad["etag"] and bad["quarantined_to"] == f"quarantine/inbox/globex/bad.com@{bad['etag']}"
    rows = {r["key"]: r for r in csv.DictReader(out.read_text(encoding="utf-8").splitlines())}
    assert rows["inbox/globex/bad.com"]["scan"] == "infected"
    assert rows["inbox/globex/bad.com"]["etag"] == bad["etag"]
    assert rows["inbox/globex/bad.com"]["signature"].startswith(SIGNATURE)
    samples = parse_exposition(metrics.read_text(encoding="utf-8"))
    manifest_label = ("manifest", str(tmp_path / "scan.yml"))

    def sample(name: str, **labels: str) -> float:
        return samples[(name, frozenset({manifest_label, *labels.items()}))]

    assert sample("sharebatch_inbox_scan_files", verdict="clean") == 1
    assert sample("sharebatch_inbox_scan_files", verdict="infected") == 1
    assert sample("sharebatch_inbox_scan_files", verdict="scan_error") == 0
    assert sample("sharebatch_inbox_quarantined_files") == 1
    assert sample("sharebatch_inbox_exit_code") == 1


def test_a_clamd_that_is_down_makes_every_upload_a_scan_error(s3: S3, tmp_path: Path) -> None:
    """clamd not running: each upload is scan_error (never clean), exit 1."""
    s3.bucket(BUCKET, {"inbox/globex/a.txt": b"a"})
    sock = tmp_path / "no-clamd.ctl"
    result = run(manifest(tmp_path, f"unix://{sock}"), s3, "--scan", "--json", "-q")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    (slot,) = [s for s in json.loads(result.stdout)["slots"] if s["recipient"] == "globex"]  # type: ignore[attr-defined]
    assert slot["files"][0]["scan"] == "scan_error"
    assert "cannot reach clamd" in slot["files"][0]["scan_detail"]


def test_scan_on_a_manifest_without_scan_settings_is_exit_2(s3: S3, tmp_path: Path) -> None:
    """--scan with no upload.scan anywhere: exit 2 and a message saying what to add."""
    path = tmp_path / "plain.yml"
    path.write_text(
        manifest(tmp_path, "unix:///x.ctl")
        .read_text(encoding="utf-8")
        .replace(
            'scan: {engine: clamd, clamd: "unix:///x.ctl", quarantine_prefix: "quarantine/"}',
            "max_size: 1MB",
        )
        .replace('scan: {engine: guardduty, quarantine_prefix: "quarantine/"}', "max_size: 1MB"),
        encoding="utf-8",
    )
    result = run(path, s3, "--scan", "-q")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "upload.scan" in result.stderr  # type: ignore[attr-defined]
