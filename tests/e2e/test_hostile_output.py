"""What a run writes for hostile keys and for what goes out beside the links.

Keys with invisible or reversing characters, keys with ``.``/``..`` segments that a browser
would send elsewhere, upload slots that go out with the bundles, and prefixes merged into
another: each must be visible in the summary, the review page and the run's output. Every run
is against moto on 127.0.0.1; links are fetched and their answers read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from rich.console import Console

from sharebatch.cli.view import summary_table
from sharebatch.run.select import linkable
from sharebatch.s3.probe import browser_url
from sharebatch.visible import HIDDEN, visible
from tests.support.linkkit import invoke
from tests.support.review_page import parse
from tests.support.s3 import S3, fetch, write_manifest

BUCKET = "hostile-keys"


def run(s3: S3, tmp_path: Path, files: dict[str, bytes], body: str, *extra: str) -> Any:
    s3.bucket(BUCKET, files)
    manifest = write_manifest(
        tmp_path / "m.yml",
        f"version: 1\ndefaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}\n{body}",
    )
    return invoke(
        "run", str(manifest), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint,
        *extra,
    )  # fmt: skip


def run_dir(result: Any) -> Path:
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip())


def links_of(folder: Path) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = json.loads((folder / "links.json").read_text())["links"]
    return links


def summary_of(folder: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text())
    return summary


def audit_events(folder: Path, event: str) -> list[dict[str, Any]]:
    lines = (folder / "audit.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


def download_names(url: str) -> tuple[str, str | None]:
    """Fetch the link from S3 and read back the file name its Content-Disposition gives:
    the ``filename`` fallback and the decoded ``filename*`` (None when there is none)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        header = response.headers["Content-Disposition"]
    assert header.isascii()
    message = EmailMessage()
    message["Content-Disposition"] = header
    fallback = message.get_param("filename", header="content-disposition")
    assert isinstance(fallback, str)
    extended = [p for p in header.split("; ") if p.startswith("filename*=")]
    if not extended:
        return fallback, None
    charset, _, encoded = extended[0].removeprefix("filename*=").split("'", 2)
    assert charset == "UTF-8"
    return fallback, unquote(encoded, errors="strict")


# --- invisible and reversing characters ---------------------------------------------------

HIDDEN_KEYS = {
    "evil/\u202egnp.exe.pdf": "gnp.exe.pdf",
    "evil/bell\x07esc\x1b[31m.txt": "bellesc[31m.txt",
    "evil/line\u2028sep\u200b.txt": "linesep.txt",
    "evil/\u202e\u2066": "download",  # nothing left of the name
    "evil/..\u200b": "download",  # dots only once the hidden character is gone
    "evil/r\u00e9sum\u00e9 \u202e.pdf": "r\u00e9sum\u00e9 .pdf",
}
JOB_EVIL = "jobs:\n  - name: share\n    prefixes: [evil/]\n    recipients: [{id: alice}]\n"


def test_download_names_never_carry_hidden_characters(s3: S3, tmp_path: Path) -> None:
    """Each link, fetched from S3, names its file without controls, bidi or separators (in
    both filename= and filename*=); a name with nothing visible left becomes 'download'."""
    files = {key: key.encode() for key in HIDDEN_KEYS}
    folder = run_dir(run(s3, tmp_path, files, JOB_EVIL))
    links = links_of(folder / "share" / "alice")
    assert sorted(link["key"] for link in links) == sorted(HIDDEN_KEYS)
    for link in links:
        assert fetch(link["url"]) == link["key"].encode()
        fallback, extended = download_names(link["url"])
        expected = HIDDEN_KEYS[link["key"]]
        assert (extended if extended is not None else fallback) == expected
        assert HIDDEN.search(fallback) is None and "%" not in fallback
        assert fallback.strip(".") != ""


def test_review_page_shows_hidden_characters_escaped(s3: S3, tmp_path: Path) -> None:
    """On the page a key's bidi override, controls and separators are written as escapes
    (the browser test checks what Chromium renders); nothing hidden is left in any cell."""
    files = {key: key.encode() for key in HIDDEN_KEYS}
    folder = run_dir(run(s3, tmp_path, files, JOB_EVIL))
    page = parse(folder / "index.html")
    keys = [row["cells"][2] for row in page.tables["files"]]
    assert sorted(keys) == sorted(visible(key) for key in HIDDEN_KEYS)
    assert "evil/\\u202egnp.exe.pdf" in keys
    for table in page.tables.values():
        for row in table:
            for cell in [*row["cells"], row["search"]]:
                assert HIDDEN.search(cell) is None, cell


# --- keys a browser would send elsewhere --------------------------------------------------

DOT_FILES = {
    "a/b.pdf": b"the object a/b.pdf",
    "a/./b.pdf": b"a/./b.pdf, which no browser reaches",
    "a/x/../b.pdf": b"a/x/../b.pdf",
    "a/../../etc/passwd": b"root:x:0:0",
    "a/.": b"a/.",
    "a/..": b"a/..",
    # Linkable: the signer encodes '%' (%252e is no dot segment), and neither '...' nor an
    # empty segment is one; browsers and curl keep them as they are.
    "a/%2e%2e/c.txt": b"percent",
    "a/.../d.txt": b"three dots",
    "a//e.txt": b"empty segment",
    "a/.hidden": b"dot file",
}
UNLINKABLE = ["a/.", "a/..", "a/../../etc/passwd", "a/./b.pdf", "a/x/../b.pdf"]
JOB_A = "jobs:\n  - name: share\n    prefixes: [a/]\n    recipients: [{id: alice}]\n"


def test_keys_with_dot_segments_are_skipped_and_reported(s3: S3, tmp_path: Path) -> None:
    """A key with a '.' or '..' segment gets no link: the bundle holds the others; the
    summary, the review page, the audit log and the terminal table name each one skipped."""
    result = run(s3, tmp_path, DOT_FILES, JOB_A)
    folder = run_dir(result)
    links = links_of(folder / "share" / "alice")
    assert [link["key"] for link in links] == sorted(set(DOT_FILES) - set(UNLINKABLE))
    for link in links:  # each link works, also as a browser would send it
        assert fetch(browser_url(link["url"])) == DOT_FILES[link["key"]]

    summary = summary_of(folder)
    [alice] = summary["jobs"][0]["recipients"]
    assert alice["links"] == len(links)
    assert alice["unlinkable"] == UNLINKABLE
    assert alice["unlinkable_count"] == len(UNLINKABLE)
    assert summary["totals"]["unlinkable"] == len(UNLINKABLE)
    assert summary["status"] == "ok"  # the others went out; the skipped ones are warnings

    events = audit_events(folder, "key_unlinkable")
    assert sorted(e["key"] for e in events) == UNLINKABLE
    assert {(e["job"], e["recipient"], e["level"]) for e in events} == {
        ("share", "alice", "warning")
    }

    page = parse(folder / "index.html")
    assert [row["cells"][:3] for row in page.tables["unlinkable"]] == [
        ["share", "alice", key] for key in UNLINKABLE
    ]

    out = io.StringIO()
    Console(file=out, width=200).print(summary_table(summary))
    shown = out.getvalue()
    assert f"{len(UNLINKABLE)} keys cannot be linked" in shown
    for key in UNLINKABLE:
        assert f"share/alice: {key}" in shown


def test_dry_run_reports_unlinkable_keys_too(s3: S3, tmp_path: Path) -> None:
    """--dry-run counts and names the keys it would skip, and does not count them as links."""
    result = run(s3, tmp_path, DOT_FILES, JOB_A, "--dry-run")
    assert result.exit_code == 0, result.stderr
    [alice] = json.loads(result.stdout)["jobs"][0]["recipients"]
    assert alice["links"] == len(DOT_FILES) - len(UNLINKABLE)
    assert alice["unlinkable"] == UNLINKABLE


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/b/a/./b.pdf", "/b/a/b.pdf"),
        ("/b/evil/../../etc/passwd", "/etc/passwd"),
        ("/b/a/%2e%2E/x", "/b/x"),
        ("/b/a/.%2e/x", "/b/x"),
        ("/b/a/%2E./x", "/b/x"),
        ("/b/a/%2e/x", "/b/a/x"),
        ("/b/a/..", "/b/"),
        ("/b/a/.", "/b/a/"),
        ("/b/a\\..\\x", "/b/x"),
        ("/b/a//x", "/b/a//x"),
        ("/b/a/.../x", "/b/a/.../x"),
        ("/b/a/%252e%252e/x", "/b/a/%252e%252e/x"),
        ("/..", "/"),
        ("", "/"),
    ],
)
def test_urls_resolve_as_whatwg_says(path: str, sent: str) -> None:
    """The WHATWG URL standard's path rules (dot segments, %2e forms, backslashes), which the
    browser test also checks against Chromium's own parser."""
    assert browser_url(f"http://127.0.0.1:9/{path.lstrip('/')}?X-Amz-Date=1#f") == (
        f"http://127.0.0.1:9{sent}?X-Amz-Date=1#f"
    )
    assert browser_url(f" \thttp://127.0.0.1:9{path}\n") == f"http://127.0.0.1:9{sent}"


def test_the_key_rule_agrees_with_the_signed_url() -> None:
    """A key is linkable exactly when a browser sends its signed URL's path unchanged."""
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="eu-west-1",
        aws_access_key_id="AKIATESTTESTTESTTEST",
        aws_secret_access_key="only-for-this-test",
    )
    keys = [*DOT_FILES, ".", "..", "./a", "../a", "a/...", "a/..b", "..a/b", "a\\..\\b"]
    try:
        for key in keys:
            url = client.generate_presigned_url("get_object", Params={"Bucket": "b1", "Key": key})
            assert linkable(key) == (browser_url(url) == url), key
    finally:
        client.close()
    unlinkable = sorted(key for key in keys if not linkable(key))
    assert unlinkable == sorted([*UNLINKABLE, ".", "..", "./a", "../a"])


def _misdirected_bundle(s3: S3, tmp_path: Path) -> tuple[Path, str]:
    """A bundle (written as an older sharebatch did) whose one link is for 'a/x/../b.pdf'."""
    run_dir(run(s3, tmp_path, {"a/b.pdf": DOT_FILES["a/b.pdf"]}, JOB_A))
    bundle = next((tmp_path / "out").glob("*/share/alice/links.json"))
    data = json.loads(bundle.read_text())
    key = "a/x/../b.pdf"
    body = DOT_FILES[key]
    s3.client.put_object(Bucket=BUCKET, Key=key, Body=body)
    url = s3.client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": BUCKET,
            "Key": key,
            "ResponseContentDisposition": 'attachment; filename="b.pdf"',
        },
        ExpiresIn=3600,
    )
    data["links"][0].update(
        key=key,
        url=url,
        size=len(body),
        etag=hashlib.md5(body).hexdigest(),  # noqa: S324
    )
    edited = tmp_path / "links.json"
    edited.write_text(json.dumps(data))
    return edited, url


def test_verify_reports_a_link_a_browser_sends_elsewhere(s3: S3, tmp_path: Path) -> None:
    """A link to 'a/x/../b.pdf' fetched as is gets that object (what verify used to see), but
    a browser asks for 'a/b.pdf'; verify resolves the URL first and reports it, exit 1."""
    edited, url = _misdirected_bundle(s3, tmp_path)
    assert fetch(url) == DOT_FILES["a/x/../b.pdf"]
    assert fetch(browser_url(url)) == DOT_FILES["a/b.pdf"]

    result = invoke("verify", str(edited), "--json")
    assert result.exit_code == 1, result.stderr
    [verdict] = json.loads(result.stdout)["results"]
    assert verdict["outcome"] == "rewritten"
    assert verdict["http_status"] is None
    assert f"/{BUCKET}/a/b.pdf" in verdict["detail"]


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(url: str) -> bytes:
    """Download with real curl, which removes dot segments as RFC 3986 says."""
    done = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", url],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return done.stdout


@needs_curl
def test_curl_sends_the_path_as_the_resolver_predicts(s3: S3, tmp_path: Path) -> None:
    """Real curl fetches the other object too: its RFC 3986 dot-segment removal agrees with
    browser_url on literal dots, so the link is misdirected for curl users as well."""
    _, url = _misdirected_bundle(s3, tmp_path)
    assert curl(url) == DOT_FILES["a/b.pdf"] == fetch(browser_url(url))


@needs_curl
def test_every_link_issued_reaches_its_own_key_with_curl(s3: S3, tmp_path: Path) -> None:
    """Keys kept as linkable ('%2e%2e', '...', an empty segment, a dot file) download their
    own bytes with curl, as with urllib."""
    folder = run_dir(run(s3, tmp_path, DOT_FILES, JOB_A))
    links = links_of(folder / "share" / "alice")
    assert {link["key"]: curl(link["url"]) for link in links} == {
        key: body for key, body in DOT_FILES.items() if key not in UNLINKABLE
    }


# --- upload slots going out with the bundles ----------------------------------------------

UPLOAD_JOB = """\
jobs:
  - name: q3
    prefixes: [a/]
    upload:
      prefix: "inbox/{recipient.id}/"
      max_size: 1KB
      expires_in: 2h
    recipients:
      - id: globex
        upload: {content_types: [application/pdf], keys: [signed.pdf, data.pdf]}
      - id: initech
        upload: {content_types: [application/pdf, text/csv]}
      - id: umbrella
        upload: false
"""


def test_summary_and_page_list_the_upload_slots_issued(s3: S3, tmp_path: Path) -> None:
    """Per recipient, summary.json lists each upload slot issued (method, key, type, size,
    expiry; never its URL or form), the page shows them, the terminal table counts them."""
    folder = run_dir(run(s3, tmp_path, {"a/b.pdf": b"x"}, UPLOAD_JOB))
    summary = summary_of(folder)
    recipients = {r["id"]: r for r in summary["jobs"][0]["recipients"]}
    for recipient in ("globex", "initech", "umbrella"):
        bundle = folder / "q3" / recipient / "links.json"
        issued = json.loads(bundle.read_text()).get("uploads", [])
        slots = recipients[recipient]["uploads"]
        assert [(s["method"], s["key"], s["content_type"], s["max_size"], s["expires_at"])
                for s in slots] == [
            (u["method"], u["key"], u["content_type"], u["max_size"], u["expires_at"])
            for u in issued
        ]  # fmt: skip
        assert all(set(slot) == {"method", "key", "content_type", "max_size", "expires_at"}
                   for slot in slots)  # fmt: skip
    assert [s["method"] for s in recipients["globex"]["uploads"]] == ["PUT", "PUT"]
    assert [s["method"] for s in recipients["initech"]["uploads"]] == ["POST", "POST"]
    assert recipients["umbrella"]["uploads"] == []
    assert summary["totals"]["upload_slots"] == 4
    assert summary["jobs"][0]["upload_slots"] == 4
    text = (folder / "summary.json").read_text()
    assert "Signature" not in text and "policy" not in text and "http" not in text

    page = parse(folder / "index.html")
    rows = [row["cells"] for row in page.tables["uploads"]]
    assert [row[:4] for row in rows] == [
        ["q3", "globex", "PUT", "inbox/globex/signed.pdf"],
        ["q3", "globex", "PUT", "inbox/globex/data.pdf"],
        ["q3", "initech", "POST", "inbox/initech/${filename}"],
        ["q3", "initech", "POST", "inbox/initech/${filename}"],
    ]
    assert [row[4:6] for row in rows] == [
        ["application/pdf", "1000 B"],
        ["application/pdf", "1000 B"],
        ["application/pdf", "1000 B"],
        ["text/csv", "1000 B"],
    ]
    assert [row[6] for row in rows] == [s["expires_at"] for r in recipients.values()
                                        for s in r["uploads"]]  # fmt: skip

    out = io.StringIO()
    Console(file=out, width=200).print(summary_table(summary))
    lines = out.getvalue().splitlines()
    header, job_row = (re.split(r"\s*[│┃]\s*", lines[i]) for i in (2, 4))
    assert header[-2] == "upload slots" and job_row[1] == "q3" and job_row[-2] == "4"


# --- prefixes inside other prefixes -------------------------------------------------------

MERGED = """\
jobs:
  - name: share
    prefixes: [a/x/, c/]
    recipients:
      - id: alice
        prefixes: [a/]
"""


def test_a_contained_prefix_is_merged_visibly(s3: S3, tmp_path: Path) -> None:
    """'a/x/' inside the recipient's 'a/' is merged into it: validate says so (text and
    JSON), the run logs prefix_merged, and rows follow the documented order: the wider
    prefix's place in the manifest, its keys in key order."""
    files = {"a/x/1.txt": b"1", "a/0.txt": b"0", "a/y.txt": b"y", "c/c.txt": b"c"}
    manifest = write_manifest(
        tmp_path / "v.yml",
        f"version: 1\ndefaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}\n{MERGED}",
    )
    text = invoke("validate", str(manifest))
    assert text.exit_code == 0, text.stderr
    assert "prefix a/x/ is inside a/ and merged into it" in text.stdout
    plan = json.loads(invoke("validate", str(manifest), "--json").stdout)
    [alice] = plan["jobs"][0]["recipients"]
    assert alice["prefixes"] == ["c/", "a/"]
    assert alice["merged_prefixes"] == [{"prefix": "a/x/", "into": "a/"}]

    result = run(s3, tmp_path, files, MERGED)
    folder = run_dir(result)
    assert [link["key"] for link in links_of(folder / "share" / "alice")] == [
        "c/c.txt",
        "a/0.txt",
        "a/x/1.txt",
        "a/y.txt",
    ]
    [event] = audit_events(folder, "prefix_merged")
    assert (event["level"], event["recipient"], event["prefix"], event["into"]) == (
        "warning",
        "alice",
        "a/x/",
        "a/",
    )
    [alice_summary] = summary_of(folder)["jobs"][0]["recipients"]
    assert alice_summary["merged_prefixes"] == [{"prefix": "a/x/", "into": "a/"}]
    with (folder / "share" / "alice" / "links.csv").open(newline="") as handle:
        assert next(csv.DictReader(handle))["key"] == "c/c.txt"
