"""sharebatch verify: links checked over HTTP against moto, and a refusing server of our own."""

from __future__ import annotations

import csv
import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from moto.s3.responses import S3Response

from sharebatch.lifecycle.verify import verify_bundles
from sharebatch.run.bundles import COLUMNS
from tests.support.linkkit import invoke, on_terminal, run_dir_of, serve
from tests.support.s3 import S3, write_manifest
from tests.support.slot_run import slot_run

BUCKET = "verify-me"
FILES = {
    "q3/a.pdf": b"%PDF a",
    "q3/b.csv": b"x,y\n1,2\n",
    "q3/c.txt": b"see",
    "q3/d.bin": bytes(range(256)),
}


def run(s3: S3, tmp_path: Path, files: dict[str, bytes] = FILES) -> Path:
    s3.bucket(BUCKET, files)
    path = write_manifest(
        tmp_path / "m.yml",
        f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: q3
    prefixes: [q3/]
    recipients: [{{id: globex}}]
""",
    )
    run_dir = run_dir_of(
        invoke("run", str(path), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint)
    )
    return run_dir / "q3" / "globex"


def verify_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = invoke("verify", *args, "--json")
    assert result.stderr == ""
    return result.exit_code, json.loads(result.stdout)


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {r["key"]: r["outcome"] for r in report["results"]}


def test_every_link_of_a_fresh_bundle_works(s3: S3, tmp_path: Path) -> None:
    """Each link answers a one-byte GET with the bundle's size and ETag: all ok, exit 0."""
    bundle = run(s3, tmp_path)
    code, report = verify_json(str(bundle / "links.json"))
    assert code == 0
    assert outcomes(report) == dict.fromkeys(FILES, "ok")
    assert {r["http_status"] for r in report["results"]} == {206}
    assert report["checked"] == report["links"] == len(FILES)
    assert all("url" not in r for r in report["results"])


def test_links_with_and_without_ids_verify_alike(s3: S3, tmp_path: Path) -> None:
    """Every link carries its signed x-sharebatch-id and S3 (moto) answers it as before; the
    same run with link_ids: false verifies the same."""
    (tmp_path / "ids").mkdir()
    bundle = run(s3, tmp_path / "ids")
    rows = json.loads((bundle / "links.json").read_text(encoding="utf-8"))["links"]
    assert all(f"x-sharebatch-id={r['link_id']}&" in r["url"] for r in rows)
    code, report = verify_json(str(bundle / "links.json"))
    assert code == 0 and outcomes(report) == dict.fromkeys(FILES, "ok")
    path = tmp_path / "off.yml"
    path.write_text(
        f"version: 1\ndefaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h,"
        " link_ids: false}\njobs:\n  - name: q3\n    prefixes: [q3/]\n"
        "    recipients: [{id: globex}]\n",
        encoding="utf-8",
    )
    result = invoke("run", str(path), "--out", str(tmp_path / "off"), "--endpoint-url", s3.endpoint)
    bare = run_dir_of(result) / "q3" / "globex" / "links.json"
    assert "x-sharebatch-id" not in bare.read_text(encoding="utf-8")
    code, report = verify_json(str(bare))
    assert code == 0 and outcomes(report) == dict.fromkeys(FILES, "ok")


@pytest.fixture
def moto_answers_missing_keys_like_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto answers a presigned GET of a missing key with 403 SignatureDoesNotMatch whenever
    the URL carries response-content-disposition (its ``_invalid_headers`` check wants the
    response-* values echoed as request headers); S3 answers 404 NoSuchKey to a signer that
    may list the bucket. The server runs in this process, so the check is switched off."""
    monkeypatch.setattr(S3Response, "_invalid_headers", lambda self, url, headers: False)


@pytest.mark.usefixtures("moto_answers_missing_keys_like_s3")
def test_a_deleted_object_is_reported_missing(s3: S3, tmp_path: Path) -> None:
    """An object deleted after signing: 404 for that link only, exit 1."""
    bundle = run(s3, tmp_path)
    s3.client.delete_object(Bucket=BUCKET, Key="q3/b.csv")
    result = invoke("verify", str(bundle / "links.csv"))
    assert result.exit_code == 1
    assert "MISSING  globex  verify-me/q3/b.csv  404 NoSuchKey" in result.stdout
    assert result.stdout.count("OK  ") == len(FILES) - 1
    assert "verify: 4 of 4 links checked: 1 missing, 3 ok" in result.stdout


def test_a_changed_object_is_an_etag_mismatch(s3: S3, tmp_path: Path) -> None:
    """An object overwritten after signing: the link works but serves other bytes: changed."""
    bundle = run(s3, tmp_path)
    s3.client.put_object(Bucket=BUCKET, Key="q3/a.pdf", Body=b"%PDF a, edited")
    code, report = verify_json(str(bundle))
    assert code == 1
    [changed] = [r for r in report["results"] if r["outcome"] != "ok"]
    assert changed["key"] == "q3/a.pdf" and changed["outcome"] == "changed"
    assert "size 14 bytes, the bundle says 6" in changed["detail"]
    assert "ETag" in changed["detail"]


def test_an_empty_object_is_checked_too(s3: S3, tmp_path: Path) -> None:
    """A one-byte range of an empty object is 416 with its size: the link works."""
    bundle = run(s3, tmp_path, {"q3/empty.txt": b"", "q3/x.txt": b"x"})
    code, report = verify_json(str(bundle))
    assert code == 0
    assert outcomes(report) == {"q3/empty.txt": "ok", "q3/x.txt": "ok"}


def test_sample_checks_n_links_in_bundle_order(s3: S3, tmp_path: Path) -> None:
    """--sample 2 checks two random links of the bundle, reported in bundle order."""
    bundle = run(s3, tmp_path)
    code, report = verify_json(str(bundle), "--sample", "2")
    assert code == 0
    assert (report["checked"], report["links"]) == (2, len(FILES))
    keys = [r["key"] for r in report["results"]]
    assert keys == sorted(keys) and set(keys) <= set(FILES)


def test_urls_are_not_printed_by_default(s3: S3, tmp_path: Path) -> None:
    """verify names links by bucket and key; no URL or signature in its output."""
    bundle = run(s3, tmp_path)
    plain = invoke("verify", str(bundle))
    assert plain.exit_code == 0
    assert "X-Amz-" not in plain.stdout + plain.stderr


@pytest.mark.secrets_on_stdout
def test_show_urls_prints_each_url_on_stdout_only(s3: S3, tmp_path: Path) -> None:
    """--show-urls adds each link's URL to its stdout line, and to nothing else."""
    bundle = run(s3, tmp_path)
    shown = invoke("verify", str(bundle), "--show-urls")
    assert shown.exit_code == 0
    assert shown.stdout.count("X-Amz-Signature=") == len(FILES)
    assert "X-Amz-" not in shown.stderr


class _Refuse(BaseHTTPRequestHandler):
    """Stands in for S3 judging signatures, which moto does not: 403 for every link."""

    def do_GET(self) -> None:
        expired = "/expired" in self.path
        code = "AccessDenied" if expired else "SignatureDoesNotMatch"
        message = "Request has expired" if expired else "The signature does not match"
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _pointed_at(bundle: Path, base: str, dest: Path, rename: dict[str, str] | None = None) -> Path:
    """A copy of the bundle's CSV whose URLs go to ``base``, paths renamed per ``rename``."""
    with (bundle / "links.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    host = urlsplit(base).netloc
    for row in rows:
        parts = urlsplit(row["url"])
        path = (rename or {}).get(row["key"], parts.path)
        row["url"] = urlunsplit((parts.scheme, host, path, parts.query, ""))
    with dest.open("w", newline="") as handle:
        table = csv.DictWriter(handle, fieldnames=COLUMNS)
        table.writeheader()
        table.writerows(rows)
    return dest


def test_signature_and_expiry_refusals_are_reported(s3: S3, tmp_path: Path) -> None:
    """A 403 SignatureDoesNotMatch is denied; 403 'Request has expired' is expired; exit 1."""
    bundle = run(s3, tmp_path)
    with serve(_Refuse) as base:
        copy = _pointed_at(bundle, base, tmp_path / "links.csv", {"q3/c.txt": "/expired"})
        code, report = verify_json(str(copy))
    assert code == 1
    assert outcomes(report) == {
        "q3/a.pdf": "denied",
        "q3/b.csv": "denied",
        "q3/c.txt": "expired",
        "q3/d.bin": "denied",
    }
    denied = next(r for r in report["results"] if r["outcome"] == "denied")
    assert denied["detail"] == "403 SignatureDoesNotMatch: The signature does not match"


def test_an_unreachable_server_is_an_error_without_the_url(s3: S3, tmp_path: Path) -> None:
    """Connection refused: reported as an error, naming the failure and never the URL."""
    bundle = run(s3, tmp_path)
    with serve(_Refuse) as base:
        pass  # the port is closed again: nothing listens there now
    copy = _pointed_at(bundle, base, tmp_path / "links.csv")
    result = invoke("verify", str(copy))
    assert result.exit_code == 1
    assert result.stdout.count("ERROR ") == len(FILES)
    assert "X-Amz-" not in result.stdout


class _Pairs(BaseHTTPRequestHandler):
    """Holds each request until a second one arrives, and records how many are in flight."""

    lock = threading.Lock()
    active = 0
    peak = 0
    barrier = threading.Barrier(2, timeout=10)

    def do_GET(self) -> None:
        with self.lock:
            type(self).active += 1
            type(self).peak = max(type(self).peak, type(self).active)
        self.barrier.wait()
        with self.lock:
            type(self).active -= 1
        self.send_response(206)
        self.send_header("Content-Range", "bytes 0-0/1")
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(b"x")

    def log_message(self, *args: object) -> None:
        pass


def test_checks_run_concurrently_within_the_bound(s3: S3, tmp_path: Path) -> None:
    """With --concurrency 2, requests meet in pairs (concurrent) and never exceed two."""
    bundle = run(s3, tmp_path, {f"q3/{i}.txt": b"x" for i in range(6)})
    _Pairs.active = _Pairs.peak = 0
    _Pairs.barrier.reset()
    with serve(_Pairs) as base:
        copy = _pointed_at(bundle, base, tmp_path / "links.csv")
        report = verify_bundles([copy], concurrency=2)
    assert report.checked == 6
    # Every answer had to wait for a partner, so two were in flight at once; never three.
    assert _Pairs.peak == 2
    assert {v.http_status for v in report.verdicts} == {206}


def test_bad_options_and_input_exit_2(tmp_path: Path) -> None:
    """A missing bundle or --sample 0 is bad input: exit 2, nothing checked."""
    assert invoke("verify", str(tmp_path / "none.csv")).exit_code == 2
    result = invoke("verify", str(tmp_path), "--sample", "0")
    assert result.exit_code == 2


def test_a_link_past_its_end_is_expired_without_asking(s3: S3, tmp_path: Path) -> None:
    """A row whose expires_at has passed is expired, even where a lenient server would answer."""
    bundle = run(s3, tmp_path)
    data = json.loads((bundle / "links.json").read_text())
    data["links"][1]["expires_at"] = "2026-01-01T00:00:00Z"
    edited = tmp_path / "links.json"
    edited.write_text(json.dumps(data))
    code, report = verify_json(str(edited))
    assert code == 1
    [expired] = [r for r in report["results"] if r["outcome"] == "expired"]
    assert expired["http_status"] is None
    assert expired["key"] == data["links"][1]["key"]


def test_hostile_keys_reach_a_terminal_escaped(s3: S3, tmp_path: Path) -> None:
    """verify on a real terminal: a key carrying an OSC title, a clear-screen and U+202E is
    shown escaped; no ESC, BEL or U+202E reaches the terminal, and the link works."""
    key = "q3/\x1b]0;x\x07\x1b[2J\u202egnp.exe.pdf"
    bundle = run(s3, tmp_path, {key: b"%PDF evil"})
    code, shown = on_terminal("verify", str(bundle))
    assert code == 0, shown
    assert b"q3/\\x1b]0;x\\x07\\x1b[2J\\u202egnp.exe.pdf  206" in shown
    assert not any(raw in shown for raw in (b"\x1b", b"\x07", "\u202e".encode())), shown


def test_an_uploads_csv_is_refused_naming_inspect(s3: S3, tmp_path: Path) -> None:
    """verify checks links: an uploads.csv (slots only) is bad input, exit 2, pointing to
    inspect, not "0 links checked" with exit 0."""
    uploads = slot_run(s3, tmp_path) / "q3" / "globex" / "uploads.csv"
    result = invoke("verify", str(uploads))
    assert result.exit_code == 2 and result.stdout == ""
    assert f"{uploads}: an uploads.csv holds upload slots, not links" in result.stderr
    assert "sharebatch inspect shows the slots" in result.stderr
