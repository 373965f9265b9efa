"""sharebatch renew and inspect against hostile files: forged renewals, odd JSON, FIFOs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sharebatch.times import iso
from tests.support.linkkit import invoke
from tests.support.renewal import BUCKET, FILES, INITECH_ONLY, digests, json_bundle, run_two
from tests.support.s3 import S3


def _forge_renewal(source: Path, data: dict[str, Any], folder: Path) -> Path:
    """``data`` written into ``folder`` as the newest renewal of the recorded ``source``."""
    data["header"]["renewed_from"] = {
        "path": str(source),
        "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "run_id": data["header"]["run_id"],
        "generated_at": data["header"]["generated_at"],
    }
    forged = folder / "links.renewed-99991231T235959999Z-ffff.json"
    forged.write_text(json.dumps(data), encoding="utf-8")
    return forged


def test_a_forged_renewal_of_another_recipients_bundle_is_refused(s3: S3, tmp_path: Path) -> None:
    """initech's rows dressed as a renewal of initech's recorded bundle, dropped into globex's
    folder: the renewal chain vouches for the rows, but the folder is globex's, so the newest
    renewal there would hand initech's links to globex: exit 2, nothing written."""
    s3.bucket(BUCKET, {**FILES, **INITECH_ONLY})
    run_dir = run_two(s3.endpoint, tmp_path)
    globex, initech = run_dir / "q3" / "globex", run_dir / "q3" / "initech" / "links.json"
    forged = _forge_renewal(initech, json_bundle(initech), globex)
    before = digests(globex)
    result = invoke("renew", str(globex), "--within", "2h")
    assert result.exit_code == 2, result.stdout
    assert f"{forged}: a bundle of job q3, recipient initech" in result.stderr
    assert digests(globex) == before


def test_a_bundle_with_an_endless_number_or_nesting_is_bad_input(tmp_path: Path) -> None:
    """JSON that Python refuses with ValueError (an integer of 5,000 digits) or RecursionError
    (nesting 100,000 deep) rather than JSONDecodeError: exit 2 naming the file, no traceback."""
    for name, text in (
        ("digits.json", '{"links": [{"size": ' + "1" * 5000 + "}]}"),
        ("deep.json", '{"links": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ):
        bundle = tmp_path / name
        bundle.write_text(text, encoding="utf-8")
        for command in ("inspect", "renew"):
            result = invoke(command, str(bundle))
            assert result.exit_code == 2, (command, name, result.exception)
            assert f"{bundle}:" in result.stderr


def test_an_audit_log_with_an_endless_number_is_read_past(tmp_path: Path) -> None:
    """An audit.jsonl line that Python's json refuses with ValueError, not JSONDecodeError,
    is skipped as a cut line is: --audit-log without run_started is exit 2, no traceback."""
    log = tmp_path / "audit.jsonl"
    log.write_text('{"event": "bundle_written", "n": ' + "1" * 5000 + "}\n", encoding="utf-8")
    result = invoke("renew", str(tmp_path / "links.json"), "--audit-log", str(log))
    assert result.exit_code == 2, result.exception
    assert "not a run's audit log" in result.stderr


def test_an_audit_log_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """--audit-log naming a FIFO nobody writes to: exit 2 at once, not a wait for a writer
    (the subprocess's timeout only bounds the failure before the fix)."""
    fifo = tmp_path / "audit.jsonl"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "sharebatch", "renew", "x.json", "--audit-log", str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "not a regular file" in done.stderr


def test_a_copied_in_bundle_is_refused_when_named_relative_to_its_folder(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """initech's recorded bundle copied into globex's folder, renewed from inside that folder
    as ``renew links.copy.json --audit-log ...``: a relative path has no run folder above it
    to compare with, and must not skip the recipient check; exit 2, nothing written."""
    s3.bucket(BUCKET, {**FILES, **INITECH_ONLY})
    run_dir = run_two(s3.endpoint, tmp_path)
    globex = run_dir / "q3" / "globex"
    shutil.copy(run_dir / "q3" / "initech" / "links.json", globex / "links.copy.json")
    before = digests(globex)
    monkeypatch.chdir(globex)
    log_arg = ("--audit-log", str(run_dir / "audit.jsonl"))
    result = invoke("renew", "links.copy.json", "--within", "2h", *log_arg)
    assert result.exit_code == 2, result.stdout
    assert "a bundle of job q3, recipient initech" in result.stderr
    assert digests(globex) == before


def test_a_renewal_naming_an_empty_source_path_is_bad_input(s3: S3, tmp_path: Path) -> None:
    """A bundle the run did not record whose renewed_from.path is "/" (a path with no file
    name): exit 2 naming the file, not a ValueError traceback; nothing written."""
    s3.bucket(BUCKET, FILES)
    run_dir = run_two(s3.endpoint, tmp_path)
    globex = run_dir / "q3" / "globex"
    data = json_bundle(globex / "links.json")
    header = data["header"]
    header["renewed_from"] = {
        "path": "/",
        "sha256": "0" * 64,
        "run_id": header["run_id"],
        "generated_at": header["generated_at"],
    }
    forged = globex / "links.forged.json"
    forged.write_text(json.dumps(data), encoding="utf-8")
    before = digests(globex)
    result = invoke("renew", str(forged), "--within", "2h")
    assert result.exit_code == 2, result.exception
    assert f"{forged}: sha256 " in result.stderr
    assert digests(globex) == before


def test_a_symlinked_run_audit_log_is_bad_input(s3: S3, tmp_path: Path) -> None:
    """The run's audit.jsonl replaced by a symbolic link to a copy of itself: renew, which
    appends to that log with O_NOFOLLOW, refuses it up front (exit 2, nothing written)
    rather than reading it to vouch and then crashing with ELOOP."""
    s3.bucket(BUCKET, FILES)
    run_dir = run_two(s3.endpoint, tmp_path)
    log = run_dir / "audit.jsonl"
    copy = tmp_path / "elsewhere.jsonl"
    shutil.copy(log, copy)
    log.unlink()
    log.symlink_to(copy)
    globex = run_dir / "q3" / "globex"
    before = digests(globex)
    result = invoke("renew", str(globex), "--within", "2h")
    assert result.exit_code == 2, result.exception
    assert "audit" in result.stderr
    assert digests(globex) == before


# Moments computed from the clock, never one it will overtake; every case here is refused
# before any moment is judged.
_NOW = datetime.now(UTC)
SOON = iso(_NOW + timedelta(days=1))


def _row(url: str, expires_at: str = SOON) -> dict[str, object]:
    return {
        "recipient": "globex",
        "bucket": BUCKET,
        "key": "q3/a.pdf",
        "size": 1,
        "etag": "e",
        "last_modified": "2020-01-01T00:00:00Z",
        "method": "GET",
        "expires_at": expires_at,
        "url": url,
    }


SIGNED = (
    "https://renew-me.s3.amazonaws.com/q3/a.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential=AKIAEXAMPLE/{_NOW:%Y%m%d}/eu-west-1/s3/aws4_request"
    f"&X-Amz-Date={_NOW:%Y%m%dT%H%M%SZ}&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=" + "0" * 64
)


def test_a_url_with_a_broken_ipv6_host_is_bad_input(tmp_path: Path) -> None:
    """'http://[x' makes urlsplit raise ValueError ("Invalid IPv6 URL"): as an argument, a
    stdin line or a bundle row it is exit 2 naming where it came from, not a traceback."""
    bundle = tmp_path / "links.json"
    bundle.write_text(json.dumps({"links": [_row("http://[x/q3/a.pdf")]}), encoding="utf-8")
    for args, stdin, where in (
        (["http://[x"], None, "argument 1: "),
        (["-"], "http://[x\n", "stdin line 1: "),
        ([str(bundle)], None, f"{bundle}: links[0]: url: "),
    ):
        result = invoke("inspect", *args, stdin=stdin)
        assert result.exit_code == 2, (args, result.exception)
        assert where in result.stderr


def test_a_moment_past_year_9999_in_utc_is_bad_input(tmp_path: Path) -> None:
    """9999-12-31T23:59:59-14:00 is a valid ISO moment that overflows when turned to UTC
    (OverflowError, not ValueError): a row's expires_at or an upload slot's is exit 2
    naming the field, not a traceback."""
    late = "9999-12-31T23:59:59-14:00"
    upload = {
        "recipient": "globex",
        "bucket": BUCKET,
        "key": "inbox/x",
        "url": "https://example.com/",
        "method": "PUT",
        "max_size": 1,
        "content_type": "a/b",
        "expires_at": late,
    }
    for name, data, field in (
        ("row.json", {"links": [_row(SIGNED, late)]}, "links[0]: expires_at"),
        ("slot.json", {"links": [_row(SIGNED)], "uploads": [upload]}, "uploads[0]: expires_at"),
    ):
        bundle = tmp_path / name
        bundle.write_text(json.dumps(data), encoding="utf-8")
        for command in ("inspect", "renew"):
            result = invoke(command, str(bundle))
            assert result.exit_code == 2, (command, name, result.exception)
            assert f"{bundle}: {field}" in result.stderr


def test_a_url_in_a_time_column_is_not_echoed_in_the_error(tmp_path: Path) -> None:
    """A CSV row whose expires_at cell holds the link (a cell dropped by hand-editing shifts
    the URL left into it): exit 2 naming the row and column, without printing the URL, a
    bearer secret, on stderr."""
    header = "recipient,bucket,key,size,etag,last_modified,method,expires_at,url"
    row = f"globex,{BUCKET},q3/a.pdf,1,e,2020-01-01T00:00:00Z,GET,{SIGNED}"
    bundle = tmp_path / "links.csv"
    bundle.write_text(f"{header}\n{row}\n", encoding="utf-8")
    result = invoke("inspect", str(bundle))
    assert result.exit_code == 2
    assert f"{bundle}:2: expires_at: " in result.stderr
    assert "X-Amz-Signature" not in result.stderr
    assert "amazonaws.com" not in result.stderr


def test_a_csv_cell_over_the_csv_modules_limit_is_bad_input(tmp_path: Path) -> None:
    """A CSV bundle cell of 200,000 characters (no S3 key or link is that long) makes the csv
    module raise csv.Error (in a row or in the header line): exit 2 naming the file, not a
    traceback."""
    header = "recipient,bucket,key,size,etag,last_modified,method,expires_at,url"
    row = f"globex,{BUCKET},{'k' * 200_000},1,e,2020-01-01T00:00:00Z,GET,{SOON},x"
    bundle, first = tmp_path / "links.csv", tmp_path / "header.csv"
    bundle.write_text(f"{header}\n{row}\n", encoding="utf-8")
    first.write_text(f"{'h' * 200_000},{header}\n", encoding="utf-8")
    for path in (bundle, first):
        result = invoke("inspect", str(path))
        assert result.exit_code == 2, result.exception
        assert f"{path}:" in result.stderr


def test_a_lone_surrogate_in_a_bundle_row_is_bad_input(tmp_path: Path) -> None:
    """JSON may spell a lone surrogate ("\\ud800"), which no S3 key (UTF-8) can hold and no
    UTF-8 output can print: inspect --json of such a row is exit 2 naming the row and field,
    not a UnicodeEncodeError traceback."""
    bundle = tmp_path / "links.json"
    row = json.dumps(_row(SIGNED)).replace('"q3/a.pdf"', '"q3/\\ud800.pdf"')
    bundle.write_text(f'{{"links": [{row}]}}', encoding="utf-8")
    result = invoke("inspect", str(bundle), "--json")
    assert result.exit_code == 2, result.exception
    assert f"{bundle}: links[0]: key: " in result.stderr


def test_a_forged_renewal_cannot_carry_another_keys_link_on_a_kept_row(
    s3: S3, tmp_path: Path
) -> None:
    """A forged renewal of globex's recorded bundle, its rows the source's, but one row's URL
    swapped for initech's link to initech's own file (same file name, so the same download
    parameters): the chain vouches for the rows, yet that URL leads elsewhere. Renewing it
    would record initech's link in globex's bundle: exit 2, nothing written."""
    s3.bucket(BUCKET, {**FILES, "initech/a.pdf": b"initech's a"})
    run_dir = run_two(s3.endpoint, tmp_path)
    globex = run_dir / "q3" / "globex"
    source = globex / "links.json"
    data = json_bundle(source)
    theirs = json_bundle(run_dir / "q3" / "initech" / "links.json")
    [stolen] = [row["url"] for row in theirs["links"] if row["key"] == "initech/a.pdf"]
    [row] = [row for row in data["links"] if row["key"] == "q3/a.pdf"]
    row["url"] = stolen
    forged = _forge_renewal(source, data, globex)
    before = digests(globex)
    result = invoke("renew", str(globex), "--within", "2h")
    assert result.exit_code == 2, result.stdout
    assert f"{forged}: links[" in result.stderr
    assert "its URL is not that key's link" in result.stderr
    assert digests(globex) == before


def test_a_forged_renewal_cannot_point_its_target_at_another_endpoint(
    s3: S3, tmp_path: Path
) -> None:
    """A forged renewal of globex's recorded bundle, rows unchanged, whose header sends
    signing to another endpoint (``target.endpoint_url``, the header field renew signs for):
    a renewal keeps its source's target, so renew refuses it (exit 2, the field named) before
    any request or file is made."""
    s3.bucket(BUCKET, FILES)
    run_dir = run_two(s3.endpoint, tmp_path)
    globex = run_dir / "q3" / "globex"
    source = globex / "links.json"
    data = json_bundle(source)
    assert data["header"]["target"]["endpoint_url"] == s3.endpoint
    data["header"]["target"]["endpoint_url"] = "http://127.0.0.9:9"
    forged = _forge_renewal(source, data, globex)
    before = digests(globex)
    result = invoke("renew", str(globex), "--within", "2h")
    assert result.exit_code == 2, result.stdout
    assert f"{forged}: header: target differs from its source {source}" in result.stderr
    assert digests(globex) == before
