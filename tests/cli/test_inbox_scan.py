"""``sharebatch inbox --scan`` through the CLI: exit codes, the text, JSON, CSV and metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sharebatch.scanning.clamd import DEFAULT_TIMEOUT
from tests.support.clamd import SIGNATURE, ClamdServer, eicar
from tests.support.fake_clamd import fake_clamd_in_thread
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


def _globex_files(result: object) -> list[dict[str, object]]:
    """The files of globex's slot (the one scanned by clamd) in ``--json`` output."""
    slots = json.loads(result.stdout)["slots"]  # type: ignore[attr-defined]
    (slot,) = [s for s in slots if s["recipient"] == "globex"]
    files: list[dict[str, object]] = slot["files"]
    return files


def test_scan_timeout_reaches_the_scanner(s3: S3, tmp_path: Path) -> None:
    """--scan-timeout 0.3 against a clamd that takes each stream and never answers: every
    upload is scan_error naming 0.3s (the default would have named its own), exit 1."""
    assert f"{DEFAULT_TIMEOUT:g}s" != "0.3s"
    s3.bucket(BUCKET, {"inbox/globex/a.txt": b"a", "inbox/globex/b.txt": b"bb"})
    with fake_clamd_in_thread("stall") as fake:
        path = manifest(tmp_path, fake.url)
        result = run(path, s3, "--scan", "--scan-timeout", "0.3", "--json", "-q")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    files = _globex_files(result)
    assert [f["scan"] for f in files] == ["scan_error", "scan_error"]
    assert all(f["scan_detail"] == "clamd did not answer within 0.3s" for f in files), files
    assert sorted(fake.streamed) == [1, 2]  # each stream was sent whole, then waited on


@pytest.mark.parametrize(("concurrency", "gather"), [(1, 0), (3, 3)])
def test_concurrency_bounds_the_connections_open_at_once(
    s3: S3, tmp_path: Path, concurrency: int, gather: int
) -> None:
    """--concurrency 1: never two clamd connections at once. --concurrency 3: exactly three
    (the fake holds each answer until three are open, so the overlap is no accident of
    timing); every one of the six uploads is still scanned clean."""
    keys = {f"inbox/globex/f{n}.txt": b"x" * (n + 1) for n in range(6)}
    s3.bucket(BUCKET, keys)
    with fake_clamd_in_thread("ok", gather=gather) as fake:
        path = manifest(tmp_path, fake.url)
        result = run(path, s3, "--scan", "--concurrency", str(concurrency), "--json", "-q")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert [f["scan"] for f in _globex_files(result)] == ["clean"] * 6
    assert fake.connections == 6
    assert fake.peak == concurrency


@pytest.mark.parametrize(("option", "value"), [("--concurrency", "0"), ("--scan-timeout", "0")])
def test_a_bad_concurrency_or_scan_timeout_is_exit_2_naming_the_option(
    s3: S3, tmp_path: Path, option: str, value: str
) -> None:
    """--concurrency 0 or --scan-timeout 0: exit 2 before anything is read or written, and
    the message names the option."""
    out = tmp_path / "inbox.csv"
    path = manifest(tmp_path, "unix:///nonexistent.ctl")
    result = run(path, s3, "--scan", option, value, "--csv", str(out), "-q")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert option in result.stderr  # type: ignore[attr-defined]
    assert not out.exists()
