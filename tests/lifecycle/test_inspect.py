"""sharebatch inspect: URLs (ours, botocore's, SigV2) and bundles read back, with exit codes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import botocore.auth
import pytest
from botocore.config import Config

from sharebatch.errors import LinkError
from sharebatch.lifecycle.inspect import inspect as inspect_targets
from sharebatch.lifecycle.inspect import read_bundle, read_url
from sharebatch.run.bundles import COLUMNS
from sharebatch.run.slots import read_policy
from sharebatch.times import iso
from tests.support.linkkit import invoke, on_terminal, parse_iso, run_dir_of
from tests.support.s3 import S3, write_manifest
from tests.support.slot_run import POST_KEY, PUT_KEY, bundle_json, rewrite_json, slot_run

BUCKET = "inspect-me"
FILES = {"q3/a.pdf": b"%PDF a", "q3/sub dir/b+c.csv": b"x,y\n"}
PAST = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def shared_run(
    s3: S3, tmp_path: Path, files: dict[str, bytes], prefix: str, recipient: str = "{id: globex}"
) -> Path:
    """A real run of ``files`` under ``prefix`` for one recipient: 1h links, both formats."""
    s3.bucket(BUCKET, files)
    path = write_manifest(
        tmp_path / "m.yml",
        f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: q3
    prefixes: [{prefix}]
    recipients: [{recipient}]
""",
    )
    out = str(tmp_path / "out")
    return run_dir_of(invoke("run", str(path), "--out", out, "--endpoint-url", s3.endpoint))


@pytest.fixture
def run_dir(s3: S3, tmp_path: Path) -> Path:
    """A real run: one recipient, 1h links, both bundle formats."""
    return shared_run(s3, tmp_path, FILES, "q3/")


def botocore_url(
    key: str = "a b/c+d.pdf",
    *,
    signature: str = "s3v4",
    token: str | None = None,
    expires: int = 3600,
    bucket: str = "my.bucket",
) -> str:
    client = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id="AKIAEXAMPLEEXAMPLE00",
        aws_secret_access_key="secret",
        aws_session_token=token,
        config=Config(signature_version=signature),
    )
    try:
        return str(
            client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
            )
        )
    finally:
        client.close()


def sigv2_url(expires_at: datetime) -> str:
    stamp = int(expires_at.timestamp())
    return f"https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIA&Signature=abc%3D&Expires={stamp}"


@pytest.fixture
def signed_in_the_past(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore signs as if at PAST (it reads the time through get_current_datetime)."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: PAST)


def inspect_json(*args: str, stdin: str | None = None) -> tuple[int, dict[str, Any]]:
    result = invoke("inspect", *args, "--json", stdin=stdin)
    assert "X-Amz-Signature" not in result.stdout + result.stderr
    return result.exit_code, json.loads(result.stdout)


def test_a_sharebatch_url_is_read_back(run_dir: Path) -> None:
    """A link from a bundle: GET, bucket, key, SigV4, long-term key, signed 1h before its end."""
    with (run_dir / "q3" / "globex" / "links.csv").open(newline="") as handle:
        row = next(csv.DictReader(handle))
    code, report = inspect_json(row["url"])
    assert code == 0
    [url] = report["urls"]
    assert (url["method"], url["bucket"], url["key"]) == ("GET", BUCKET, row["key"])
    assert (url["signature_version"], url["credential_kind"]) == ("SigV4", "long-term")
    assert url["status"] == "VALID"
    assert url["expires_at"] == row["expires_at"]
    assert parse_iso(url["expires_at"]) - parse_iso(url["signed_at"]) == timedelta(hours=1)
    assert 0 < url["seconds_left"] <= 3600
    assert url["link_id"] == row["link_id"] and len(row["link_id"]) == 16
    shown = invoke("inspect", row["url"]).stdout
    assert f"link id      {row['link_id']}" in shown


def test_a_url_without_an_id_says_so() -> None:
    """A URL signed without x-sharebatch-id (botocore's own, or link_ids: false) has none."""
    code, report = inspect_json(botocore_url("k"))
    assert code == 0
    assert report["urls"][0]["link_id"] is None
    assert (
        "link id      none (issued without x-sharebatch-id)"
        in invoke("inspect", botocore_url("k")).stdout
    )


def test_a_bundle_row_whose_id_is_not_its_urls_is_invalid(run_dir: Path, tmp_path: Path) -> None:
    """The id a row records must be its URL's (the usage report joins S3's logs on the URL's):
    an edited one makes the row INVALID, naming both."""
    data = json.loads((run_dir / "q3" / "globex" / "links.json").read_text(encoding="utf-8"))
    real = data["links"][0]["link_id"]
    data["links"][0]["link_id"] = "0" * 16
    edited = tmp_path / "links.json"
    edited.write_text(json.dumps(data), encoding="utf-8")
    code, report = inspect_json(str(edited))
    assert code == 1
    first, second = report["bundles"][0]["recipients"][0]["links"]
    assert first["status"] == "INVALID"
    assert first["problem"] == f"link_id {'0' * 16} is not its URL's ({real})"
    assert second["status"] == "VALID" and second["problem"] is None


def test_a_botocore_session_url_virtual_hosted() -> None:
    """botocore's URL with a session token: bucket from the host, decoded key, session kind."""
    facts = read_url(botocore_url(token="tok", bucket="plain-bucket"))
    assert (facts.bucket, facts.key, facts.region) == ("plain-bucket", "a b/c+d.pdf", "eu-west-1")
    assert facts.credential_kind == "session"
    assert facts.method is None  # nothing in a bare GET URL names its method
    assert facts.expires_in == 3600


def test_a_path_style_url_with_dots_in_the_bucket() -> None:
    """A dotted bucket goes in the path; bucket and key are still found."""
    facts = read_url(botocore_url(bucket="my.bucket"))
    assert (facts.bucket, facts.key) == ("my.bucket", "a b/c+d.pdf")


def test_sigv2_urls_are_read_with_their_expiry() -> None:
    """A SigV2 URL (botocore, signature_version s3) gives its expiry; no signing time."""
    url = botocore_url(signature="s3", bucket="plain-bucket")
    code, report = inspect_json(url)
    assert code == 0
    [found] = report["urls"]
    assert found["signature_version"] == "SigV2"
    assert found["signed_at"] is None
    assert found["status"] == "VALID"
    assert 0 < found["seconds_left"] <= 3600
    assert found["key"] == "a b/c+d.pdf"


def test_an_expired_sigv2_url_exits_1() -> None:
    """A SigV2 URL whose Expires has passed is EXPIRED; the text says how long ago."""
    url = sigv2_url(PAST)
    result = invoke("inspect", url)
    assert result.exit_code == 1
    assert "EXPIRED (expired" in result.stdout
    assert "SigV2" in result.stdout
    assert "abc%3D" not in result.stdout


@pytest.mark.usefixtures("signed_in_the_past")
def test_an_expired_botocore_url_exits_1() -> None:
    """A SigV4 URL signed long ago is EXPIRED, and --json says so per URL."""
    code, report = inspect_json(botocore_url(token="tok"))
    assert code == 1
    [found] = report["urls"]
    assert found["status"] == "EXPIRED"
    assert found["signed_at"] == "2026-01-15T09:30:00Z"
    assert found["expires_at"] == "2026-01-15T10:30:00Z"
    assert found["seconds_left"] < 0
    assert report["expired"] == 1 and report["ok"] is False


def test_urls_can_come_from_stdin() -> None:
    """'-' reads one URL a line, so links need not appear in the process list."""
    urls = [botocore_url(bucket="plain-bucket"), botocore_url(signature="s3", bucket="b-2")]
    code, report = inspect_json("-", stdin="\n".join(urls) + "\n")
    assert code == 0
    assert [u["signature_version"] for u in report["urls"]] == ["SigV4", "SigV2"]


def test_a_url_over_seven_days_is_invalid() -> None:
    """X-Amz-Expires over 604800 is refused by S3: INVALID, exit 1."""
    url = botocore_url(bucket="plain-bucket").replace("X-Amz-Expires=3600", "X-Amz-Expires=700000")
    result = invoke("inspect", url)
    assert result.exit_code == 1
    assert "INVALID" in result.stdout and "7-day limit" in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_fresh_bundle_is_valid_per_recipient(run_dir: Path, fmt: str) -> None:
    """Both formats: one table for the recipient, every link VALID, exit 0; no URL printed."""
    bundle = run_dir / "q3" / "globex" / f"links.{fmt}"
    result = invoke("inspect", str(bundle))
    assert result.exit_code == 0, result.stdout
    assert "recipient globex: 2 links, 2 valid, 0 expiring, 0 expired" in result.stdout
    assert "X-Amz-" not in result.stdout
    for key in FILES:
        assert key in result.stdout
    _, report = inspect_json(str(bundle))
    [found] = report["bundles"]
    assert found["format"] == fmt
    [group] = found["recipients"]
    assert [link["key"] for link in group["links"]] == sorted(FILES)
    assert {link["status"] for link in group["links"]} == {"VALID"}
    ids = [link["link_id"] for link in group["links"]]
    assert len(set(ids)) == len(FILES) and all(len(i) == 16 for i in ids)
    for link_id in ids:
        assert f"link id: {link_id}" in result.stdout


def test_within_flags_links_that_expire_soon(run_dir: Path) -> None:
    """1h links checked --within 2h are EXPIRING: exit 1, for cron and monitoring."""
    bundle = run_dir / "q3" / "globex"
    result = invoke("inspect", str(bundle), "--within", "2h")
    assert result.exit_code == 1
    assert "2 expiring within 2h" in result.stdout
    assert invoke("inspect", str(bundle), "--within", "30m").exit_code == 0


@pytest.mark.usefixtures("signed_in_the_past")
def test_a_csv_bundle_of_expired_links_exits_1(tmp_path: Path) -> None:
    """A CSV bundle whose links botocore signed long ago: each row EXPIRED."""
    path = tmp_path / "links.csv"
    with path.open("w", newline="") as handle:
        table = csv.DictWriter(handle, fieldnames=COLUMNS)
        table.writeheader()
        for key in ("a.pdf", "b.pdf"):
            table.writerow(
                {
                    "recipient": "acme",
                    "bucket": "plain-bucket",
                    "key": key,
                    "size": 1,
                    "etag": "e",
                    "last_modified": "2026-01-01T00:00:00Z",
                    "method": "GET",
                    "expires_at": "2026-01-15T10:30:00Z",
                    "url": botocore_url(key, bucket="plain-bucket"),
                }
            )
    code, report = inspect_json(str(path))
    assert code == 1
    [group] = report["bundles"][0]["recipients"]
    assert [(link["key"], link["status"]) for link in group["links"]] == [
        ("a.pdf", "EXPIRED"),
        ("b.pdf", "EXPIRED"),
    ]


def test_the_row_expires_at_counts_when_it_is_earlier(run_dir: Path, tmp_path: Path) -> None:
    """A row whose expires_at has passed (credentials ended) is EXPIRED though its URL is not."""
    data = json.loads((run_dir / "q3" / "globex" / "links.json").read_text())
    data["links"][0]["expires_at"] = "2026-01-01T00:00:00Z"
    edited = tmp_path / "links.json"
    edited.write_text(json.dumps(data))
    code, report = inspect_json(str(edited))
    assert code == 1
    statuses = [link["status"] for link in report["bundles"][0]["recipients"][0]["links"]]
    assert statuses == ["EXPIRED", "VALID"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "recipient,bucket,key,size,etag,last_modified,method,expires_at,url\n"
            "a,b,k,1,e,2026-01-01T00:00:00Z,GET,soon,https://h/k?X-Amz-Algorithm=AWS4-HMAC-SHA256\n",
            ":2: expires_at: 'soon' is not a moment",
        ),
        ("recipient,bucket\na,b\n", ":1: not a sharebatch bundle: no column key"),
        (
            "recipient,bucket,key,size,etag,last_modified,method,expires_at,url\n"
            "a,b,k,1,e,2026-01-01T00:00:00Z,GET,2026-01-01T00:00:00Z,https://h/k?x=1\n",
            ":2: url: not a presigned S3 URL",
        ),
    ],
)
def test_bad_bundles_exit_2_naming_file_line_and_field(
    tmp_path: Path, content: str, message: str
) -> None:
    """An unreadable bundle is exit 2 with file:line: field: reason, and no report."""
    path = tmp_path / "links.csv"
    path.write_text(content)
    result = invoke("inspect", str(path))
    assert result.exit_code == 2
    assert f"{path}{message}" in result.stderr
    assert result.stdout == ""


def test_missing_files_and_non_urls_exit_2(tmp_path: Path) -> None:
    """A path that is not there, or a URL that is not presigned, is bad input: exit 2."""
    missing = invoke("inspect", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2
    assert "nope.json: cannot read the bundle" in missing.stderr
    plain = invoke("inspect", "https://example.com/file.pdf")
    assert plain.exit_code == 2
    assert "argument 1: not a presigned S3 URL" in plain.stderr
    bad_window = invoke("inspect", "https://example.com/f", "--within", "soon")
    assert bad_window.exit_code == 2 and "--within" in bad_window.stderr


def test_a_csv_key_with_a_line_separator_stays_one_row(tmp_path: Path) -> None:
    """A quoted key holding U+2028 is one row: the CSV is read as CSV, not split at it."""
    path = tmp_path / "links.csv"
    # Later than any link signed now can last, on whatever day this runs.
    row_end = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with path.open("w", newline="", encoding="utf-8") as handle:
        table = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\r\n")
        table.writeheader()
        table.writerow(
            {
                "recipient": "acme",
                "bucket": "plain-bucket",
                "key": "a\u2028b.txt",
                "size": 1,
                "etag": "e",
                "last_modified": "2026-01-01T00:00:00Z",
                "method": "GET",
                "expires_at": row_end,
                "url": botocore_url("a\u2028b.txt", bucket="plain-bucket"),
            }
        )
    code, report = inspect_json(str(path))
    assert code == 0
    [link] = report["bundles"][0]["recipients"][0]["links"]
    assert link["key"] == "a\u2028b.txt"
    assert link["expires_at"] != row_end  # the URL's own end is earlier


# A window-title OSC sequence, a clear-screen CSI and a right-to-left override: the raw
# characters must never reach a terminal; their escaped form must.
HOSTILE_KEY = "evil/\x1b]0;x\x07\x1b[2J\u202egnp.exe.pdf"
HOSTILE_SHOWN = b"evil/\\x1b]0;x\\x07\\x1b[2J\\u202egnp.exe.pdf"
RAW = (b"\x1b", b"\x07", "\u202e".encode())


def test_hostile_keys_reach_a_terminal_escaped(s3: S3, tmp_path: Path) -> None:
    """inspect on a real terminal, for a bundle and for its URL given on stdin: the key is
    shown escaped, and no ESC, BEL or U+202E reaches the terminal."""
    bundle = shared_run(s3, tmp_path, {HOSTILE_KEY: b"%PDF evil"}, "evil/") / "q3" / "globex"
    url = json.loads((bundle / "links.json").read_text())["links"][0]["url"]
    for args, stdin in (((str(bundle),), b""), (("-",), url.encode() + b"\n")):
        code, shown = on_terminal("inspect", *args, stdin=stdin)
        assert code == 0, shown
        assert HOSTILE_SHOWN in shown
        assert not any(raw in shown for raw in RAW), shown


def test_file_names_in_errors_are_escaped(tmp_path: Path) -> None:
    """A bundle path with escapes, named in an error, is shown escaped on stderr."""
    result = invoke("inspect", str(tmp_path / "x\x1b[2J\u202e.json"))
    assert result.exit_code == 2
    assert "x\\x1b[2J\\u202e.json: cannot read the bundle" in result.stderr
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr


def signed_at_offset(monkeypatch: pytest.MonkeyPatch, offset: timedelta) -> None:
    """botocore signs as if at the real clock's now + ``offset``."""
    moment = datetime.now(UTC) + offset
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment)


def scope_moved_a_day_back(url: str) -> str:
    """The URL with its credential scope's date one day before its X-Amz-Date."""
    day = dict(parse_qsl(urlsplit(url).query))["X-Amz-Date"][:8]
    before = (datetime.strptime(day, "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
    moved = url.replace(f"%2F{day}%2F", f"%2F{before}%2F")
    assert moved != url
    return moved


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda url: url, "X-Amz-Date is in the future"),
        (scope_moved_a_day_back, "is not the credential scope's date"),
        (
            lambda url: url.replace("X-Amz-Expires=3600", "X-Amz-Expires=0"),
            "X-Amz-Expires 0s: S3 needs 1 s to 7 days",
        ),
        (lambda url: url + "&X-Amz-Expires=60", "X-Amz-Expires is given 2 times"),
    ],
    ids=["signed-in-the-future", "date-off-scope", "expires-0", "repeated"],
)
def test_urls_s3_would_refuse_are_invalid_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, edit: Any, problem: str
) -> None:
    """A URL signed ten years ahead (from the real clock), a credential scope of another day,
    X-Amz-Expires=0 and a repeated parameter are each INVALID, exit 1, with the reason."""
    if problem.startswith("X-Amz-Date is in the future"):
        signed_at_offset(monkeypatch, timedelta(days=3653))
    url = edit(botocore_url(bucket="plain-bucket"))
    code, report = inspect_json(url)
    [found] = report["urls"]
    assert (code, found["status"], report["invalid"]) == (1, "INVALID", 1)
    assert problem in found["problem"]
    shown = invoke("inspect", url).stdout
    assert f"problem      {found['problem']}" in shown
    assert "7-day limit" not in shown


def test_a_url_signed_within_the_clock_skew_s3_allows_is_valid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signer whose clock runs a few minutes ahead makes links S3 still takes: VALID."""
    signed_at_offset(monkeypatch, timedelta(minutes=5))
    code, report = inspect_json(botocore_url(bucket="plain-bucket"))
    assert (code, report["urls"][0]["status"], report["urls"][0]["problem"]) == (0, "VALID", None)


def test_a_bundle_row_with_a_refused_url_is_invalid_with_the_reason(
    run_dir: Path, tmp_path: Path
) -> None:
    """A bundle row whose URL carries X-Amz-Expires twice is INVALID and says why."""
    data = json.loads((run_dir / "q3" / "globex" / "links.json").read_text())
    data["links"][1]["url"] += "&X-Amz-Expires=60"
    edited = tmp_path / "links.json"
    edited.write_text(json.dumps(data))
    code, report = inspect_json(str(edited))
    links = report["bundles"][0]["recipients"][0]["links"]
    assert code == 1
    assert [(link["status"], link["problem"]) for link in links] == [
        ("VALID", None),
        ("INVALID", "X-Amz-Expires is given 2 times"),
    ]
    assert "problem: X-Amz-Expires is given 2 times" in invoke("inspect", str(edited)).stdout


def inspect_process(stdin: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m sharebatch inspect ARGS`` with ``stdin`` as raw bytes."""
    return subprocess.run(
        [sys.executable, "-m", "sharebatch", "inspect", *args],
        input=stdin,
        capture_output=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (b"a\x00b\n", "stdin line 1: not an http(s) URL"),
        (b"\n\n" + b"links.json\n", "stdin line 3: not an http(s) URL"),
        (b"https://h/k\x00?X-Amz-Algorithm=x\n", "stdin line 1: the URL holds \\x00"),
        (b"{url}\n\xff\xfe\n", "stdin line 2: not UTF-8 text"),
        (b"\xef\xbb\xbfhttps://x\n", "stdin line 1: not a presigned S3 URL"),
    ],
    ids=["nul", "a-path", "nul-in-a-url", "not-utf8", "bom"],
)
def test_odd_stdin_lines_exit_2_with_one_line_naming_the_line(stdin: bytes, message: str) -> None:
    """stdin holds URLs only: a path, a NUL, bytes that are not UTF-8 are bad input (exit 2,
    one line naming the line, no traceback); a BOM before the first URL is not part of it."""
    url = sigv2_url(datetime.now(UTC) + timedelta(hours=1)).encode()
    result = inspect_process(stdin.replace(b"{url}", url), "-")
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert stderr.startswith("sharebatch: error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr
    assert "Traceback" not in stderr and "https:/x" not in stderr
    assert result.stdout == b""


def test_odd_paths_are_bad_input_not_tracebacks(tmp_path: Path) -> None:
    """A FIFO is refused without being read (nothing hangs), a name too long for the file
    system is exit 2, and a NUL in a path is a LinkError, not os's ValueError."""
    fifo = tmp_path / "links.json"
    os.mkfifo(fifo)
    result = invoke("inspect", str(fifo))
    assert (result.exit_code, result.stderr) == (
        2,
        f"sharebatch: error: {fifo}: not a regular file\n",
    )
    long = invoke("inspect", "x" * 5000 + ".json")
    assert long.exit_code == 2 and "cannot read the bundle: OSError" in long.stderr
    with pytest.raises(LinkError, match="cannot read the bundle: ValueError"):
        read_bundle("a\x00b.json")


def test_other_schemes_are_named_not_read_as_paths() -> None:
    """An s3:// address is refused as such, not mangled into the path s3:/b/k."""
    result = invoke("inspect", "s3://b/k")
    assert result.exit_code == 2
    assert "argument 1: an s3:// address is not a presigned URL" in result.stderr
    assert "s3:/b" not in result.stderr


def test_within_reaches_past_seven_days_for_long_lived_links() -> None:
    """A SigV2 link ending in 20 days (from the real clock) is EXPIRING --within 30d and VALID
    --within 10d; beyond the 366-day bound --within is refused, exit 2."""
    url = sigv2_url(datetime.now(UTC) + timedelta(days=20))
    code, report = inspect_json(url, "--within", "30d")
    assert (code, report["urls"][0]["status"], report["within_seconds"]) == (
        1,
        "EXPIRING",
        30 * 86400,
    )
    code, report = inspect_json(url, "--within", "10d")
    assert (code, report["urls"][0]["status"]) == (0, "VALID")
    too_long = invoke("inspect", url, "--within", "367d")
    assert too_long.exit_code == 2
    assert "--within: 367d is longer than 366 days" in too_long.stderr


def test_an_uploads_csv_is_no_longer_refused(s3: S3, tmp_path: Path) -> None:
    """inspect reads an uploads.csv (it used to refuse it, exit 2): its slots, exit 0."""
    slot = '{id: globex, upload: {prefix: "inbox/globex/", max_size: 1KB, keys: [back.pdf]}}'
    run = shared_run(s3, tmp_path, FILES, "q3/", slot)
    uploads = run / "q3" / "globex" / "uploads.csv"
    result = invoke("inspect", str(uploads))
    assert result.exit_code == 0, result.stderr
    assert "holds upload slots, not links" not in result.stdout + result.stderr
    assert "inbox/globex/back.pdf" in result.stdout


def slots_of(target: Path, now: datetime, within: timedelta = timedelta(0)) -> list[Any]:
    """The upload slots ``inspect`` reports for one bundle target, at ``now``."""
    report = inspect_targets([str(target)], now, within)
    slots: list[Any] = report["bundles"][0]["uploads"]
    return slots


def test_a_json_bundles_slots_end_when_their_signatures_do(s3: S3, tmp_path: Path) -> None:
    """A PUT slot ends when its URL does, a POST slot when its policy does; both VALID now,
    shown with recipient, key (a prefix for POST), size, type and link id."""
    run = slot_run(s3, tmp_path)
    now = datetime.now(UTC)
    for recipient, method, key in (("globex", "PUT", PUT_KEY), ("initech", "POST", POST_KEY)):
        bundle = run / "q3" / recipient
        [row] = bundle_json(bundle)["uploads"]
        [slot] = slots_of(bundle / "links.json", now)
        if method == "PUT":
            signed_end = read_url(row["url"]).expires_at
        else:
            signed_end = parse_iso(read_policy(row["fields"])["expiration"])
        assert signed_end == parse_iso(row["expires_at"])
        assert timedelta(minutes=119) < signed_end - now <= timedelta(hours=2)
        assert slot["expires_at"] == row["expires_at"]
        assert (slot["recipient"], slot["method"], slot["key"]) == (recipient, method, key)
        assert (slot["max_size"], slot["content_type"]) == (row["max_size"], "application/pdf")
        assert slot["link_id"] == row["link_id"] and row["link_id"]
        assert (slot["status"], slot["problem"]) == ("VALID", None)
        assert slot["seconds_left"] == int((signed_end - now).total_seconds())
        assert "url" not in slot and "fields" not in slot


def test_an_uploads_csv_reads_as_the_json_does(s3: S3, tmp_path: Path) -> None:
    """uploads.csv's slots are the links.json's, but for where each is named."""
    bundle = slot_run(s3, tmp_path) / "q3" / "initech"
    now = datetime.now(UTC)
    from_csv = slots_of(bundle / "uploads.csv", now)
    from_json = slots_of(bundle / "links.json", now)
    assert [s.pop("where") for s in from_csv] == [f"{bundle / 'uploads.csv'}:2"]
    assert [s.pop("where") for s in from_json] == [f"{bundle / 'links.json'}: uploads[0]"]
    assert from_csv == from_json


def test_a_csv_folder_shows_the_uploads_file_beside_its_links(s3: S3, tmp_path: Path) -> None:
    """A folder of CSV bundles only: its uploads.csv's slots come with its links.csv."""
    bundle = slot_run(s3, tmp_path, "[csv]") / "q3" / "globex"
    assert not (bundle / "links.json").exists()
    [slot] = slots_of(bundle, datetime.now(UTC))
    assert (slot["method"], slot["key"], slot["status"]) == ("PUT", PUT_KEY, "VALID")


def test_slots_expire_and_come_due_by_the_clock(s3: S3, tmp_path: Path) -> None:
    """Past their end slots are EXPIRED, within --within EXPIRING; either makes ok False."""
    run = slot_run(s3, tmp_path)
    now = datetime.now(UTC)
    for recipient in ("globex", "initech"):
        uploads = run / "q3" / recipient / "uploads.csv"
        report = inspect_targets([str(uploads)], now + timedelta(hours=3), timedelta(0))
        assert [s["status"] for s in report["bundles"][0]["uploads"]] == ["EXPIRED"]
        assert (report["upload_slots"]["expired"], report["ok"]) == (1, False)
        report = inspect_targets([str(uploads)], now, timedelta(hours=3))
        assert (report["upload_slots"]["expiring"], report["ok"]) == (1, False)
        report = inspect_targets([str(uploads)], now, timedelta(minutes=30))
        assert (report["upload_slots"]["valid"], report["ok"]) == (1, True)


@pytest.mark.parametrize(
    ("recipient", "edit", "reason"),
    [
        pytest.param(
            "initech",
            {"expires_at": "later"},
            "is later than its signature's end",
            id="post-expires-at-widened",
        ),
        pytest.param(
            "initech",
            {"key": "inbox/globex/${filename}"},
            "its key is not the one its policy allows",
            id="post-other-prefix",
        ),
        pytest.param(
            "initech",
            {"max_size": 10**9},
            "its max_size is not its policy's content-length-range",
            id="post-bigger",
        ),
        pytest.param(
            "globex",
            {"expires_at": "later"},
            "is later than its signature's end",
            id="put-expires-at-widened",
        ),
        pytest.param(
            "globex",
            {"key": "inbox/initech/other.pdf"},
            "its bucket or key is not its URL's",
            id="put-other-key",
        ),
        pytest.param(
            "globex",
            {"link_id": "0000000000000000"},
            "link_id 0000000000000000 is not its URL's",
            id="put-other-id",
        ),
    ],
)
def test_a_row_claiming_more_than_its_signature_is_invalid(
    s3: S3, tmp_path: Path, recipient: str, edit: dict[str, Any], reason: str
) -> None:
    """An edited slot row (later end, other key, bigger size, other id) is INVALID with the
    reason, and its end stays the signature's."""
    bundle = slot_run(s3, tmp_path) / "q3" / recipient
    data = bundle_json(bundle)
    [row] = data["uploads"]
    signed_end = row["expires_at"]
    if edit.get("expires_at") == "later":
        edit = {"expires_at": iso(parse_iso(signed_end) + timedelta(days=5))}
    row.update(edit)
    [slot] = slots_of(rewrite_json(bundle, data), datetime.now(UTC))
    assert slot["status"] == "INVALID"
    assert reason in slot["problem"]
    assert slot["expires_at"] == signed_end


def test_an_earlier_expires_at_is_taken_as_the_end(s3: S3, tmp_path: Path) -> None:
    """A row ending before its policy (credentials that end first) ends then, not INVALID."""
    bundle = slot_run(s3, tmp_path) / "q3" / "initech"
    data = bundle_json(bundle)
    now = datetime.now(UTC).replace(microsecond=0)
    data["uploads"][0]["expires_at"] = iso(now + timedelta(minutes=10))
    [slot] = slots_of(rewrite_json(bundle, data), now, timedelta(minutes=30))
    assert (slot["status"], slot["problem"]) == ("EXPIRING", None)
    assert slot["seconds_left"] == 600


def test_an_unreadable_policy_is_bad_input_naming_the_slot(s3: S3, tmp_path: Path) -> None:
    """A POST slot whose policy cannot be read: LinkError naming file, slot and field."""
    bundle = slot_run(s3, tmp_path) / "q3" / "initech"
    data = bundle_json(bundle)
    data["uploads"][0]["fields"]["policy"] = "not base64!"
    path = rewrite_json(bundle, data)
    with pytest.raises(LinkError, match=r"links\.json: uploads\[0\]: fields: no readable"):
        slots_of(path, datetime.now(UTC))


def test_a_put_slot_s3_would_refuse_is_invalid_with_the_urls_reason(s3: S3, tmp_path: Path) -> None:
    """A PUT slot's URL is judged as any URL: X-Amz-Expires=0 makes the slot INVALID, saying
    so, and its end is the URL's."""
    bundle = slot_run(s3, tmp_path) / "q3" / "globex"
    data = bundle_json(bundle)
    row = data["uploads"][0]
    signed = read_url(row["url"])
    assert signed.signed_at is not None
    row["url"] = row["url"].replace(f"X-Amz-Expires={signed.expires_in}", "X-Amz-Expires=0")
    [slot] = slots_of(rewrite_json(bundle, data), datetime.now(UTC))
    assert slot["status"] == "INVALID"
    assert "X-Amz-Expires 0s: S3 needs 1 s to 7 days" in slot["problem"]
    assert slot["expires_at"] == iso(signed.signed_at)


def test_a_post_form_signed_in_the_future_is_invalid(s3: S3, tmp_path: Path) -> None:
    """A POST form whose x-amz-date is past S3's 15-minute skew is INVALID, naming it."""
    bundle = slot_run(s3, tmp_path) / "q3" / "initech"
    data = bundle_json(bundle)
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    data["uploads"][0]["fields"]["x-amz-date"] = ahead.strftime("%Y%m%dT%H%M%SZ")
    [slot] = slots_of(rewrite_json(bundle, data), datetime.now(UTC))
    assert slot["status"] == "INVALID"
    assert slot["problem"] == f"x-amz-date is in the future ({iso(ahead)})"
