"""Upload slots end to end: `sharebatch run` issues them, recipients upload, `inbox` lists.

Every PUT URL and POST form a run writes is used with a plain HTTP client against moto's
server, and each object is read back and compared byte for byte. moto checks no signature,
expiry or policy: the refusals S3 makes are shown in test_upload_enforcement.py.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.run.link_ids import LINK_ID_PATTERN, link_id_of
from sharebatch.run.slots import sample_file
from tests.support.http_upload import post_form, put
from tests.support.s3 import S3, write_manifest

BUCKET = "acme-reports"
AS_OF = "2026-11-28"  # the period is 2026-Q3


def manifest(endpoint: str, extra: str = "") -> str:
    return f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  endpoint_url: {endpoint}
  expires_in: 1h
jobs:
  - name: q3
    prefixes: ["reports/{{period.label}}/"]
    upload:
      prefix: "inbox/{{period.label}}/{{recipient.id}}/"
      max_size: 1KB
    recipients:
      - id: globex
        upload:
          content_types: [application/pdf, text/csv]
          keys: [signed-contract.pdf, "{{recipient.id}}-data.csv"]
      - id: initech
        upload: {{content_types: [application/pdf, "text/csv; charset=utf-8"]}}
      - id: hooli
      - id: umbrella
        upload: false
{extra}"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def run(s3: S3, tmp_path: Path, extra: str = "") -> Path:
    s3.bucket(BUCKET, {"reports/2026-Q3/summary.pdf": b"%PDF summary"})
    path = write_manifest(tmp_path / "q3.yml", manifest(s3.endpoint, extra))
    result = invoke("run", str(path), "--out", str(tmp_path / "out"), "--as-of", AS_OF, "-q")
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def uploads_of(run_dir: Path, recipient: str) -> list[dict[str, Any]]:
    data = json.loads((run_dir / "q3" / recipient / "links.json").read_text(encoding="utf-8"))
    uploads: list[dict[str, Any]] = data["uploads"]
    return uploads


def stored(s3: S3, key: str) -> tuple[bytes, str]:
    found = s3.client.get_object(Bucket=BUCKET, Key=key)
    with found["Body"] as body:
        return body.read(), found["ContentType"]


def body_for(upload: dict[str, Any]) -> bytes:
    return f"returned by {upload['recipient']} as {upload['content_type'] or 'any'}\n".encode()


def test_every_put_url_and_post_form_takes_an_upload_read_back_byte_for_byte(
    s3: S3, tmp_path: Path
) -> None:
    """Each PUT URL (with its signed type and id) and each POST form (its action URL carrying
    the id) stores exactly the bytes sent."""
    run_dir = run(s3, tmp_path)
    issued = {r: uploads_of(run_dir, r) for r in ("globex", "initech", "hooli")}
    every = [u for slots in issued.values() for u in slots]
    assert len({u["link_id"] for u in every}) == len(every) == 5
    for upload in every:
        assert LINK_ID_PATTERN.fullmatch(upload["link_id"])
        assert link_id_of(upload["url"]) == upload["link_id"]
    assert [(u["method"], u["key"], u["content_type"]) for u in issued["globex"]] == [
        ("PUT", "inbox/2026-Q3/globex/signed-contract.pdf", "application/pdf"),
        ("PUT", "inbox/2026-Q3/globex/globex-data.csv", "text/csv"),
    ]
    form_key = "inbox/2026-Q3/initech/${filename}"
    assert [(u["method"], u["key"], u["content_type"]) for u in issued["initech"]] == [
        ("POST", form_key, "application/pdf"),
        ("POST", form_key, "text/csv; charset=utf-8"),
    ]
    assert [(u["method"], u["content_type"]) for u in issued["hooli"]] == [("POST", "")]
    expected: dict[str, tuple[bytes, str]] = {}
    for upload in issued["globex"]:
        status, _ = put(upload["url"], body_for(upload), upload["headers"])
        assert status == 200
        expected[upload["key"]] = (body_for(upload), upload["content_type"])
    for n, upload in enumerate([*issued["initech"], *issued["hooli"]]):
        name = f"returned-{n}.bin"
        # The part's own type differs on purpose: the form's Content-Type field decides.
        status, _ = post_form(upload["url"], upload["fields"], name, body_for(upload), "x/y")
        assert status == 204
        key = upload["key"].replace("${filename}", name)
        expected[key] = (body_for(upload), upload["content_type"] or "application/octet-stream")
    assert len(expected) == 5
    for key, (data, content_type) in expected.items():
        assert stored(s3, key) == (data, content_type)


def test_put_urls_sign_the_content_type_and_carry_no_checksum(s3: S3, tmp_path: Path) -> None:
    """A typed PUT URL signs content-type; no URL has a default CRC checksum baked in."""
    for upload in uploads_of(run(s3, tmp_path), "globex"):
        url = upload["url"]
        assert "X-Amz-SignedHeaders=content-type%3Bhost" in url
        assert "checksum" not in url.lower()
        assert upload["headers"] == {"Content-Type": upload["content_type"]}


def test_bundles_hold_the_slots_in_csv_and_json_privately(s3: S3, tmp_path: Path) -> None:
    """uploads.csv and links.json's uploads list the same slots; files 0600; none without one."""
    run_dir = run(s3, tmp_path)
    for recipient, count in (("globex", 2), ("initech", 2), ("hooli", 1)):
        bundle = run_dir / "q3" / recipient
        data = json.loads((bundle / "links.json").read_text(encoding="utf-8"))
        assert data["header"]["uploads"] == count == len(data["uploads"])
        with (bundle / "uploads.csv").open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        as_text = [
            {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in u.items()}
            for u in data["uploads"]
        ]
        assert rows == as_text
        assert stat.S_IMODE((bundle / "uploads.csv").stat().st_mode) == 0o600
    umbrella = run_dir / "q3" / "umbrella"
    assert not (umbrella / "uploads.csv").exists()
    data = json.loads((umbrella / "links.json").read_text(encoding="utf-8"))
    assert "uploads" not in data and "uploads" not in data["header"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed here")
def test_the_generated_curl_commands_upload_as_written(s3: S3, tmp_path: Path) -> None:
    """Each bundle's curl command, run by a shell as pasted, uploads the file it names."""
    run_dir = run(s3, tmp_path)
    work = tmp_path / "recipient"
    work.mkdir()
    expected = {}
    for recipient in ("globex", "initech", "hooli"):
        for upload in uploads_of(run_dir, recipient):
            if upload["method"] == "PUT":
                name = upload["key"].rsplit("/", 1)[1]
                key = upload["key"]
            else:
                name = sample_file(upload["content_type"] or None)
                key = upload["key"].replace("${filename}", name)
            data = body_for(upload) + upload["content_type"].encode()
            (work / name).write_bytes(data)
            done = subprocess.run(
                ["sh", "-c", upload["curl"]], cwd=work, capture_output=True, check=False
            )
            assert done.returncode == 0, done.stderr.decode()
            expected[key] = data
    assert len(expected) == 5
    for key, data in expected.items():
        assert stored(s3, key)[0] == data


def test_audit_records_each_slot_by_digest_never_by_signature(s3: S3, tmp_path: Path) -> None:
    """upload_slot_issued per slot, with the URL's or policy's sha256; no signature anywhere."""
    run_dir = run(s3, tmp_path)
    audit = (run_dir / "audit.jsonl").read_text(encoding="utf-8")
    events = [json.loads(line) for line in audit.splitlines()]
    issued = [e for e in events if e["event"] == "upload_slot_issued"]
    uploads = [u for r in ("globex", "initech", "hooli") for u in uploads_of(run_dir, r)]

    def digest(u: dict[str, Any]) -> tuple[str, str]:
        if u["method"] == "PUT":
            return "url_sha256", hashlib.sha256(u["url"].encode()).hexdigest()
        return "policy_sha256", hashlib.sha256(u["fields"]["policy"].encode()).hexdigest()

    expected = [(u["recipient"], u["method"], u["key"], *digest(u)) for u in uploads]
    got = [
        (e["recipient"], e["method"], e["key"], name, e[name])
        for e in issued
        for name in ("url_sha256", "policy_sha256")
        if name in e
    ]
    assert sorted(got) == sorted(expected)
    assert {e["expires_at"] for e in issued} == {u["expires_at"] for u in uploads}
    summary = (run_dir / "summary.json").read_text(encoding="utf-8")
    for u in uploads:
        signature = u["fields"].get("x-amz-signature") or u["url"].rsplit("=", 1)[1]
        assert signature not in audit and signature not in summary


def test_no_slot_is_issued_for_a_bundle_that_is_skipped(s3: S3, tmp_path: Path) -> None:
    """A recipient whose bundle is skipped (a prefix failed) gets no upload slot either."""
    extra = """\
  - name: broken
    bucket: no-such-bucket
    prefixes: [x/]
    upload: {prefix: "inbox/{recipient.id}/", max_size: 1KB}
    recipients:
      - id: wayne
"""
    s3.bucket(BUCKET, {})
    path = write_manifest(tmp_path / "q3.yml", manifest(s3.endpoint, extra))
    result = invoke("run", str(path), "--out", str(tmp_path / "out"), "--as-of", AS_OF, "-q")
    assert result.exit_code == 1
    run_dir = Path(result.stdout.strip())
    events = [json.loads(x) for x in (run_dir / "audit.jsonl").read_text().splitlines()]
    recipients = {e["recipient"] for e in events if e["event"] == "upload_slot_issued"}
    assert recipients == {"globex", "initech", "hooli"}
    assert not (run_dir / "broken").exists()


# --- sharebatch inbox -------------------------------------------------------------------------


def test_inbox_lists_what_each_recipient_returned_with_size_and_time(
    s3: S3, tmp_path: Path
) -> None:
    """After uploads, inbox shows per recipient each file's size and time, and missing keys."""
    run_dir = run(s3, tmp_path)
    contract = next(u for u in uploads_of(run_dir, "globex") if u["key"].endswith(".pdf"))
    assert put(contract["url"], b"%PDF signed", contract["headers"])[0] == 200
    form = uploads_of(run_dir, "hooli")[0]
    assert post_form(form["url"], form["fields"], "q3 data.xlsx", b"PK\x03\x04")[0] == 204
    out = tmp_path / "returned.csv"
    result = invoke("inbox", str(tmp_path / "q3.yml"), "--as-of", AS_OF, "--csv", str(out), "-q")
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    def when(key: str) -> str:
        modified = s3.client.head_object(Bucket=BUCKET, Key=key)["LastModified"]
        return str(modified.strftime("%Y-%m-%dT%H:%M:%SZ"))

    pdf, xlsx = "inbox/2026-Q3/globex/signed-contract.pdf", "inbox/2026-Q3/hooli/q3 data.xlsx"
    assert [
        (r["recipient"], r["name"], r["status"], r["size"], r["last_modified"]) for r in rows
    ] == [
        ("globex", "signed-contract.pdf", "received", "11", when(pdf)),
        ("globex", "globex-data.csv", "missing", "", ""),
        ("hooli", "q3 data.xlsx", "received", "4", when(xlsx)),
    ]
    lines = result.stdout.splitlines()
    assert "q3/globex  acme-reports/inbox/2026-Q3/globex/  1 of 2 expected files" in lines
    assert "q3/initech  acme-reports/inbox/2026-Q3/initech/  0 files" in lines
    assert any(
        line.split()[:2] == ["received", "4"] and line.endswith("q3 data.xlsx") for line in lines
    )


def test_inbox_flags_a_put_upload_over_max_size(s3: S3, tmp_path: Path) -> None:
    """A PUT URL cannot limit the size (S3 takes it too): inbox marks the file too_large."""
    run_dir = run(s3, tmp_path)
    contract = uploads_of(run_dir, "globex")[0]
    assert put(contract["url"], b"x" * 1001, contract["headers"])[0] == 200
    result = invoke("inbox", str(tmp_path / "q3.yml"), "--as-of", AS_OF, "--json", "-q")
    assert result.exit_code == 0, result.output
    slots = {s["recipient"]: s for s in json.loads(result.stdout)["slots"]}
    assert [(f["name"], f["status"], f["size"]) for f in slots["globex"]["files"]] == [
        ("signed-contract.pdf", "too_large", 1001),
        ("globex-data.csv", "missing", None),
    ]
    assert (slots["globex"]["returned"], slots["globex"]["missing"]) == (1, 1)
    assert set(slots) == {"globex", "initech", "hooli"}


def test_inbox_of_another_period_looks_in_that_periods_folders(s3: S3, tmp_path: Path) -> None:
    """--as-of picks the period: a Q2 inbox does not show Q3 uploads."""
    run_dir = run(s3, tmp_path)
    form = uploads_of(run_dir, "hooli")[0]
    assert post_form(form["url"], form["fields"], "a.pdf", b"q3")[0] == 204
    result = invoke("inbox", str(tmp_path / "q3.yml"), "--as-of", "2026-08-01", "--json", "-q")
    slots = json.loads(result.stdout)["slots"]
    assert {s["prefix"] for s in slots} == {
        f"inbox/2026-Q2/{r}/" for r in ("globex", "initech", "hooli")
    }
    assert [f for s in slots for f in s["files"] if f["status"] != "missing"] == []


def test_inbox_reports_a_slot_it_cannot_list_and_lists_the_others(s3: S3, tmp_path: Path) -> None:
    """A slot in a missing bucket is an error row (exit 1); the other slots are still listed."""
    extra = """\
  - name: broken
    bucket: no-such-bucket
    prefixes: [x/]
    upload: {prefix: "inbox/{recipient.id}/", max_size: 1KB}
    recipients:
      - id: wayne
"""
    s3.bucket(BUCKET, {"inbox/2026-Q3/hooli/a.pdf": b"a"})
    path = write_manifest(tmp_path / "q3.yml", manifest(s3.endpoint, extra))
    result = invoke("inbox", str(path), "--as-of", AS_OF, "--json", "-q")
    assert result.exit_code == 1
    slots = {s["recipient"]: s for s in json.loads(result.stdout)["slots"]}
    assert "NoSuchBucket" in slots["wayne"]["error"]
    assert [f["name"] for f in slots["hooli"]["files"]] == ["a.pdf"]


def test_inbox_needs_a_slot_in_the_manifest(s3: S3, tmp_path: Path) -> None:
    """A manifest without upload slots is a usage error (exit 2), not an empty list."""
    text = f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, endpoint_url: {s3.endpoint}, expires_in: 1h}}
jobs:
  - name: q3
    prefixes: [reports/]
    recipients: [{{id: globex}}]
"""
    path = write_manifest(tmp_path / "plain.yml", text)
    result = invoke("inbox", str(path), "--as-of", AS_OF)
    assert result.exit_code == 2
    assert "no recipient has an upload slot" in result.stderr


def test_inbox_without_credentials_exits_3(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credentials: exit 3 before anything is listed."""
    path = write_manifest(tmp_path / "q3.yml", manifest(s3.endpoint))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = invoke("inbox", str(path), "--as-of", AS_OF)
    assert result.exit_code == 3
    assert "no AWS credentials" in result.stderr


def test_inbox_shows_names_from_strangers_harmlessly(s3: S3, tmp_path: Path) -> None:
    """A name that is a formula or holds control characters is quoted in the CSV and escaped on
    the terminal; the JSON keeps it exactly."""
    name = "=HYPERLINK(x)\x1b[2J.pdf"
    s3.bucket(BUCKET, {f"inbox/2026-Q3/hooli/{name}": b"x"})
    path = write_manifest(tmp_path / "q3.yml", manifest(s3.endpoint))
    out = tmp_path / "returned.csv"
    result = invoke("inbox", str(path), "--as-of", AS_OF, "--csv", str(out), "-q")
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        [row] = [r for r in csv.DictReader(handle) if r["status"] == "received"]
    assert row["name"] == "'=HYPERLINK(x)\\x1b[2J.pdf"
    assert "\x1b" not in result.stdout and "=HYPERLINK(x)\\x1b[2J.pdf" in result.stdout
    as_json = invoke("inbox", str(path), "--as-of", AS_OF, "--json", "-q")
    files = [f for s in json.loads(as_json.stdout)["slots"] for f in s["files"]]
    assert [f["name"] for f in files if f["status"] == "received"] == [name]


def test_inbox_csv_to_a_missing_folder_is_a_usage_error(s3: S3, tmp_path: Path) -> None:
    """--csv into a folder that does not exist: exit 2 with the path, nothing half-written."""
    path = write_manifest(tmp_path / "q3.yml", manifest(s3.endpoint))
    s3.bucket(BUCKET, {})
    result = invoke("inbox", str(path), "--as-of", AS_OF, "--csv", str(tmp_path / "no" / "x.csv"))
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and "x.csv" in result.stderr
    assert not (tmp_path / "no").exists()
