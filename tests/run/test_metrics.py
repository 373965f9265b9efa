"""`run --metrics-file`: Prometheus text format for node_exporter's textfile collector."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch import files
from sharebatch.cli import app
from sharebatch.cli.app import LogFormat
from sharebatch.cli.view import RunView
from sharebatch.errors import Interrupted, RunLocked, SharebatchError
from sharebatch.files import HashingWriter
from sharebatch.run import metrics
from sharebatch.run.folder import RunLock
from tests.support.prometheus import gauge, parse_exposition
from tests.support.s3 import S3, write_manifest

MANIFEST = """\
version: 1
defaults:
  region: eu-west-1
  expires_in: 2h
jobs:
  - name: reports
    bucket: acme-reports
    prefixes: [q3/]
    recipients:
      - id: alice
      - id: bob
  - name: other
    bucket: missing-bucket
    prefixes: [q3/]
    recipients:
      - id: carol
"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_metrics_record_the_run(s3: S3, tmp_path: Path) -> None:
    """The file holds time, status, exit code, duration, links, bytes, failures, expiry."""
    s3.bucket("acme-reports", {"q3/a.pdf": b"a" * 10, "q3/b.pdf": b"b" * 32})
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    textfiles = tmp_path / "textfile_collector"
    textfiles.mkdir()
    prom = textfiles / "sharebatch.prom"
    before = datetime.now(UTC)
    result = invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint,
        "--metrics-file", str(prom),
    )  # fmt: skip
    after = datetime.now(UTC)
    assert result.exit_code == 1  # the missing bucket
    summary = json.loads((Path(result.stdout.strip()) / "summary.json").read_text())
    totals = summary["totals"]
    samples = parse_exposition(prom.read_text())
    label = {"manifest": str(manifest)}
    finished = gauge(samples, "sharebatch_last_run_timestamp_seconds", **label)
    assert before.timestamp() <= finished <= after.timestamp()
    for status in metrics.STATUSES:
        expected = 1.0 if status == summary["status"] == "partial" else 0.0
        assert gauge(samples, "sharebatch_last_run_status", status=status, **label) == expected
    assert gauge(samples, "sharebatch_last_run_exit_code", **label) == 1
    assert gauge(samples, "sharebatch_last_run_links_issued", **label) == totals["links"] == 4
    assert gauge(samples, "sharebatch_last_run_bytes_shared", **label) == totals["bytes"] == 84
    assert gauge(samples, "sharebatch_last_run_failures", **label) == totals["failures"] == 1
    duration = gauge(samples, "sharebatch_last_run_duration_seconds", **label)
    assert 0 < duration <= (after - before).total_seconds()
    expiry = datetime.strptime(totals["earliest_expiry"], "%Y-%m-%dT%H:%M:%SZ")
    assert (
        gauge(samples, "sharebatch_last_run_earliest_expiry_timestamp_seconds", **label)
        == expiry.replace(tzinfo=UTC).timestamp()
    )
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644  # node_exporter runs as another user
    assert [p.name for p in textfiles.iterdir()] == ["sharebatch.prom"]  # no temporary left
    assert "X-Amz" not in prom.read_text()


def test_metrics_count_the_keys_left_without_a_link(s3: S3, tmp_path: Path) -> None:
    """A key with a '..' segment is skipped for both recipients: the gauge says so, as the
    summary does, so monitoring sees keys no partner received."""
    s3.bucket("acme-reports", {"q3/a.pdf": b"a", "q3/x/../b.pdf": b"b"})
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    prom = tmp_path / "sharebatch.prom"
    result = invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint,
        "--metrics-file", str(prom),
    )  # fmt: skip
    totals = json.loads((Path(result.stdout.strip()) / "summary.json").read_text())["totals"]
    samples = parse_exposition(prom.read_text())
    found = gauge(samples, "sharebatch_last_run_unlinkable_keys", manifest=str(manifest))
    assert found == totals["unlinkable"] == 2


def test_metrics_replace_the_old_file_in_one_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader sees the old file or the new one: the new is complete before one rename."""
    prom = tmp_path / "sharebatch.prom"
    prom.write_text("old\n")
    run = metrics.RunMetrics("m.yml", "ok", 0, datetime.now(UTC), 1.5, links=3)
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        assert Path(dst).read_text() == "old\n"  # untouched until the rename
        assert Path(src).read_text() == metrics.render_metrics(run)  # complete before it
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    metrics.write_metrics(prom, run)
    [(src, dst)] = renames
    assert dst == prom and src.parent == prom.parent and src.name.endswith(".tmp")
    assert prom.read_text() == metrics.render_metrics(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sharebatch.prom"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If writing fails (disk full), the previous metrics stay and no temporary file is left."""
    prom = tmp_path / "sharebatch.prom"
    prom.write_text("old\n")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(SharebatchError, match=f"metrics file {prom}: No space left on device"):
        metrics.write_metrics(prom, metrics.RunMetrics("m", "ok", 0, datetime.now(UTC), 1.0))
    assert prom.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sharebatch.prom"]


def test_metrics_on_a_full_disk_fail_the_command_in_one_line(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run went well but its metrics cannot be written: exit 1 and one line naming the
    file, since monitoring will not see this run; the bundles stay."""
    s3.bucket("acme-reports", {"q3/a.pdf": b"a"})
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST.split("  - name: other")[0])
    prom = tmp_path / "sharebatch.prom"

    real = metrics.atomic_writer

    @contextmanager
    def metrics_disk_full(dest: Path, **options: Any) -> Iterator[HashingWriter]:
        """The metrics file's disk alone is full (the run's own is fine): its write fails."""
        with real(dest, **options) as out:
            yield out
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics, "atomic_writer", metrics_disk_full)
    result = invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint,
        "--metrics-file", str(prom),
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"sharebatch: error: cannot write the metrics file {prom}: No space left on device"
    )
    assert "Traceback" not in result.stderr
    assert len(list((tmp_path / "out").glob("*/reports/*/links.json"))) == 2


def test_a_run_without_credentials_is_recorded(moto_endpoint: str, tmp_path: Path) -> None:
    """A run that stops early (exit 3) still tells monitoring: status error, exit code 3."""
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    prom = tmp_path / "sharebatch.prom"
    result = invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", moto_endpoint,
        "--metrics-file", str(prom),
    )  # fmt: skip
    assert result.exit_code == 3
    samples = parse_exposition(prom.read_text())
    assert gauge(samples, "sharebatch_last_run_status", status="error") == 1
    assert gauge(samples, "sharebatch_last_run_status", status="ok") == 0
    assert gauge(samples, "sharebatch_last_run_exit_code") == 3
    assert gauge(samples, "sharebatch_last_run_links_issued") == 0
    assert not [n for n, _ in samples if "expiry" in n]  # no link, no expiry series


def test_an_interrupted_run_is_recorded(tmp_path: Path) -> None:
    """SIGTERM (cron's timeout) is recorded as interrupted with exit code 143."""
    prom = tmp_path / "sharebatch.prom"
    view = RunView(
        manifest=tmp_path / "m.yml",
        metrics_file=prom,
        dry_run=False,
        verbose=False,
        quiet=True,
        log_format=LogFormat.json,
    )
    with pytest.raises(Interrupted), view:
        raise Interrupted("SIGTERM")
    samples = parse_exposition(prom.read_text())
    assert gauge(samples, "sharebatch_last_run_status", status="interrupted") == 1
    assert gauge(samples, "sharebatch_last_run_exit_code") == 143


@pytest.mark.usefixtures("credentials")
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dry-run"], "--metrics-file records real runs; leave it out with --dry-run"),
        (["--metrics-file", "/nonexistent/folder/x.prom"], "folder /nonexistent/folder does"),
    ],
)
def test_bad_metrics_options_exit_2_and_write_nothing(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    """A metrics file that cannot be honoured is refused before anything runs: exit 2."""
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    prom = tmp_path / "sharebatch.prom"
    result = invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--metrics-file", str(prom), *extra
    )
    assert result.exit_code == 2
    assert message in result.stderr
    assert not prom.exists() and not (tmp_path / "out").exists()


@pytest.mark.usefixtures("credentials")
def test_invalid_manifest_writes_no_metrics(tmp_path: Path) -> None:
    """Bad input is not a run: exit 2 and no metrics file (a staleness alert catches it)."""
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST.replace("2h", "9d"))
    prom = tmp_path / "sharebatch.prom"
    result = invoke("run", str(manifest), "--metrics-file", str(prom))
    assert result.exit_code == 2
    assert not prom.exists()


def test_label_values_are_escaped() -> None:
    """A manifest path with quotes, backslashes or newlines stays one valid label value."""
    path = 'odd "dir"\\q3\nx.yml'
    text = metrics.render_metrics(metrics.RunMetrics(path, "ok", 0, datetime.now(UTC), 0.25))
    samples = parse_exposition(text)
    assert gauge(samples, "sharebatch_last_run_duration_seconds", manifest=path) == 0.25


def test_a_run_refused_by_the_lock_writes_no_metrics(s3: S3, tmp_path: Path) -> None:
    """A run refused because another holds OUT's lock leaves the metrics to the one running."""
    s3.bucket("acme-reports", {"q3/a.pdf": b"a"})
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    out = tmp_path / "out"
    out.mkdir()
    prom = tmp_path / "sharebatch.prom"
    held = RunLock.acquire(out, "the-running-one")
    try:
        result = invoke(
            "run", str(manifest), "--out", str(out), "--endpoint-url", s3.endpoint,
            "--metrics-file", str(prom),
        )  # fmt: skip
    finally:
        held.release()
    assert result.exit_code == RunLocked.exit_code
    assert not prom.exists()
