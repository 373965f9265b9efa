"""Exit codes and what each failure leaves behind (nothing, or exactly what the summary says)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from tests.support.bad_manifests import BAD, BAD_CASES, NOW, corpus_keys
from tests.support.s3 import S3, fetch, write_manifest

GOOD = """\
version: 1
defaults:
  region: eu-west-1
  expires_in: 1h
jobs:
  - name: reports
    bucket: present-bucket
    prefixes: [q3/]
    recipients:
      - id: alice
      - id: bob
        prefixes: [bob/]
  - name: other
    bucket: missing-bucket
    prefixes: [q3/]
    recipients:
      - id: carol
"""


_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _shift(text: str, by: timedelta) -> str:
    """Every instant in ``text`` moved by ``by``; whole seconds keep each instant's width."""

    def moved(match: re.Match[str]) -> str:
        moment = datetime.fromisoformat(match.group().replace("Z", "+00:00"))
        return (moment + by).strftime("%Y-%m-%dT%H:%M:%SZ")

    return _INSTANT.sub(moved, text)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_failed_prefix_is_isolated_and_reported(s3: S3, tmp_path: Path) -> None:
    """A prefix that fails to list fails only the bundles needing it: exit 1, summary says why."""
    s3.bucket("present-bucket", {"q3/a.txt": b"a", "bob/b.txt": b"b"})
    manifest = write_manifest(tmp_path / "m.yml", GOOD)
    result = invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint
    )
    assert result.exit_code == 1
    run_dir = Path(result.stdout.strip())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "partial"
    assert summary["failures"] == [
        {
            "kind": "prefix",
            "bucket": "missing-bucket",
            "prefix": "q3/",
            "error": "NoSuchBucket",
            "message": summary["failures"][0]["message"],
        }
    ]
    assert "NoSuchBucket" in summary["failures"][0]["message"]
    assert not (run_dir / "other").exists()
    bob = json.loads((run_dir / "reports" / "bob" / "links.json").read_text())
    assert [fetch(row["url"]) for row in bob["links"]] == [b"a", b"b"]
    assert "prefix_failed" in result.stderr


def test_invalid_manifest_exits_2_and_writes_nothing(s3: S3, tmp_path: Path) -> None:
    """A manifest error names file, line and field; exit 2; no output folder is created."""
    manifest = write_manifest(
        tmp_path / "bad.yml", GOOD.replace("expires_in: 1h", "expires_in: 9d")
    )
    out = tmp_path / "out"
    result = invoke("run", str(manifest), "--out", str(out), "--endpoint-url", s3.endpoint)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{manifest}:4:15: defaults.expires_in: "
        "9d is longer than the 7-day limit for presigned URLs (link: s3); only link: cloudfront"
        " links may live longer",
        "sharebatch: 1 problem in the manifest; nothing was listed or written",
    ]
    assert result.stdout == ""
    assert not out.exists()


def test_bad_option_exits_2(tmp_path: Path) -> None:
    """An invalid command line is exit 2 before anything runs."""
    result = invoke("run", str(tmp_path / "m.yml"), "--concurrency", "0")
    assert result.exit_code == 2
    assert "concurrency" in result.stderr


def test_no_credentials_exits_3_and_writes_nothing(tmp_path: Path, moto_endpoint: str) -> None:
    """Without credentials in the chain the run stops before listing: exit 3, nothing written."""
    manifest = write_manifest(tmp_path / "m.yml", GOOD)
    out = tmp_path / "out"
    result = invoke("run", str(manifest), "--out", str(out), "--endpoint-url", moto_endpoint)
    assert result.exit_code == 3
    assert "no AWS credentials found" in result.stderr
    assert not out.exists()


class _Refuse(BaseHTTPRequestHandler):
    """An S3 stand-in that rejects every request's credentials, as AWS does for a bad key."""

    code = "InvalidAccessKeyId"

    def do_GET(self) -> None:
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{self.code}</Code>"
            "<Message>The AWS Access Key Id you provided does not exist.</Message></Error>"
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


class _Deny(_Refuse):
    code = "AccessDenied"


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def refusing_s3() -> Iterator[str]:
    yield from _serve(_Refuse)


@pytest.fixture
def denying_s3() -> Iterator[str]:
    yield from _serve(_Deny)


@pytest.mark.usefixtures("credentials")
def test_rejected_credentials_exit_3(tmp_path: Path, refusing_s3: str) -> None:
    """Credentials S3 rejects stop the whole run with exit 3 and no bundle."""
    manifest = write_manifest(tmp_path / "m.yml", GOOD)
    result = invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", refusing_s3
    )
    assert result.exit_code == 3
    assert "S3 rejected the credentials: InvalidAccessKeyId" in result.stderr
    assert not list((tmp_path / "out").rglob("links.*"))


@pytest.mark.usefixtures("credentials")
def test_access_denied_everywhere_exits_3(tmp_path: Path, denying_s3: str) -> None:
    """When S3 denies every prefix, nothing could be done: exit 3, and the summary says so."""
    manifest = write_manifest(tmp_path / "m.yml", GOOD)
    result = invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", denying_s3
    )
    assert result.exit_code == 3
    summary = json.loads((Path(result.stdout.strip()) / "summary.json").read_text())
    assert summary["status"] == "denied"
    assert {f["error"] for f in summary["failures"]} == {"AccessDenied"}


def test_dry_run_prints_the_summary_and_writes_nothing(s3: S3, tmp_path: Path) -> None:
    """--dry-run lists and counts, prints the summary JSON on stdout, writes no file."""
    s3.bucket("present-bucket", {"q3/a.txt": b"a", "q3/b.txt": b"bb", "bob/b.txt": b"b"})
    manifest = write_manifest(tmp_path / "m.yml", GOOD.split("  - name: other")[0])
    out = tmp_path / "out"
    result = invoke(
        "run", str(manifest), "--dry-run", "--out", str(out), "--endpoint-url", s3.endpoint
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dry_run"] is True
    counts = {r["id"]: r["links"] for r in summary["jobs"][0]["recipients"]}
    assert counts == {"alice": 2, "bob": 3}
    assert not out.exists()
    assert "X-Amz-Signature" not in result.stdout + result.stderr


def test_existing_run_id_is_refused(s3: S3, tmp_path: Path) -> None:
    """A run never overwrites an existing run folder: --run-id that exists is exit 2."""
    s3.bucket("present-bucket", {"q3/a.txt": b"a"})
    manifest = write_manifest(tmp_path / "m.yml", GOOD.split("  - name: other")[0])
    (tmp_path / "out" / "fixed").mkdir(parents=True)
    result = invoke(
        "run",
        str(manifest),
        "--out",
        str(tmp_path / "out"),
        "--run-id",
        "fixed",
        "--endpoint-url",
        s3.endpoint,
    )
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert list((tmp_path / "out" / "fixed").iterdir()) == []


@pytest.mark.parametrize("run_id", ["../escape", "a/b", ".hidden", "-x", "", "a" * 129])
def test_unsafe_run_id_is_refused(s3: S3, tmp_path: Path, run_id: str) -> None:
    """--run-id names a folder under OUT and can never point outside it; the message states
    the whole rule."""
    manifest = write_manifest(tmp_path / "m.yml", GOOD)
    out = tmp_path / "out"
    result = invoke("run", str(manifest), "--out", str(out), "--run-id", run_id)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"sharebatch: error: --run-id {run_id!r} must start with a letter or digit, followed by"
        " letters, digits, '.', '_' or '-', at most 128 characters in all (it names a folder)"
    ]
    assert not out.exists()


@pytest.mark.parametrize(("name", "line", "column", "field", "text"), BAD_CASES)
def test_every_bad_manifest_fails_the_run_with_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    line: int | None,
    column: int | None,
    field: str,
    text: str,
) -> None:
    """Through the CLI, each bad manifest: exit 2, its located message, no output folder.

    The CLI runs on the real clock, so the fixture's instants are moved by as much as the real
    clock is past the fixed one test_manifest loads them with: each keeps its place relative to
    the run (a moment two days ahead stays two days ahead) on whatever day the suite runs.
    """
    corpus_keys(monkeypatch)
    # Only expires_at is judged against the clock; filter dates are the period's, not the run's.
    # One shift for the fixture and the expected text: a second ticking between them is no flake.
    clocked = field.endswith("expires_at")
    shift = datetime.now(UTC).replace(microsecond=0) - NOW if clocked else timedelta(0)
    path = BAD / name
    if clocked:
        path = tmp_path / name
        path.write_text(_shift((BAD / name).read_text(encoding="utf-8"), shift), encoding="utf-8")
    out = tmp_path / "out"
    result = invoke("run", str(path), "--out", str(out), "--as-of", "2026-11-28")
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    where = f"{path}:{line}:{column}:" if column is not None else f"{path}:{line}:"
    assert first.startswith(where if line is not None else f"{path}: "), first
    assert (f" {field}: " in first) if field else True
    # The message may quote the run's own time, which here is the real clock.
    expected = _shift(text, shift)
    assert expected.split(" (the run is at ")[0].split(" after the run (")[0] in first
    assert not out.exists()
    assert result.stdout == ""


@pytest.mark.parametrize("where", ["{long}/sharebatch.prom", "{long}"])
def test_a_metrics_file_name_too_long_is_exit_2_without_traceback(
    tmp_path: Path, where: str
) -> None:
    """--metrics-file whose name the filesystem refuses (a component over 255 bytes) is bad
    input: exit 2 with one error line, not an OSError traceback; nothing is written."""
    manifest = write_manifest(tmp_path / "m.yml", GOOD)
    metrics = tmp_path / where.format(long="m" * 300)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", str(manifest), "--out", str(out), "--metrics-file", str(metrics)]
    )
    assert result.exit_code == 2, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("sharebatch: error: --metrics-file ")
    assert not out.exists()


def test_an_out_folder_that_cannot_be_made_leaves_no_parent_behind(s3: S3, tmp_path: Path) -> None:
    """--out new/<a name too long>: exit 2, and the missing parent 'new' made on the way is
    not left behind (bad input writes nothing)."""
    manifest = write_manifest(tmp_path / "m.yml", GOOD)
    out = tmp_path / "new" / ("o" * 300)
    result = CliRunner().invoke(
        app, ["run", str(manifest), "--out", str(out), "--endpoint-url", s3.endpoint]
    )
    assert result.exit_code == 2, result.stderr
    assert "cannot create the output folder" in result.stderr
    assert not (tmp_path / "new").exists()
