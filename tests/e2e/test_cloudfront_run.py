"""End to end: a run of `link: cloudfront` grants on moto, every link downloaded through the
test edge (tests/support/cloudfront_edge.py: CloudFront's checks, then the object from moto).

One manifest mixes kinds: RSA SHA-256, RSA SHA-1 and ECDSA P-256 key pairs, a recipient held
to 127.0.0.1/32, one whose links start in two days (mailed its links), one with a recipient
page, and one of plain S3 links. Its links live 30 days: past SigV4's 7, within `max_expires_in`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from sharebatch import notify
from sharebatch.errors import UsageError
from sharebatch.lifecycle.inspect import read_bundle
from sharebatch.manifest.load import load_manifest
from sharebatch.models import Connection, RunSummary
from sharebatch.run.cfsign import CloudFrontKeys
from sharebatch.run.runner import run_manifest, run_resolved_async
from sharebatch.run.sign import content_disposition
from sharebatch.times import iso, parse_iso
from tests.support.cfkeys import KeyPair, ec_pair, public_keys, rsa_pair
from tests.support.chromium import chromium
from tests.support.cloudfront_edge import Edge, cloudfront_edge
from tests.support.cloudfront_edge import fetch as edge_fetch
from tests.support.linkkit import container_credentials, invoke
from tests.support.pages import settings, with_notify
from tests.support.s3 import S3, fetch, fresh_s3, write_manifest

BUCKET = "acme-reports"
DAY = 86_400
FILES = {
    "reports/q3/summary.pdf": b"%PDF summary " * 40,
    "reports/q3/notes with space+plus.txt": "notes \u00e9\n".encode(),
    "reports/q3/caf\u00e9 r\u00e9sum\u00e9.csv": b"a,b\n1,2\n",
    "reports/q3/100% done #1?.txt": b"odd characters",
    "reports/q3/sub/detail.bin": bytes(range(256)) * 8,
}
CLOUDFRONT = ("rsa256", "rsa1", "ecdsa", "office", "later", "paged")


@dataclass
class Keys:
    """The run's three key pairs: the default (RSA, SHA-256), RSA for SHA-1, ECDSA P-256."""

    rsa256: KeyPair
    rsa1: KeyPair
    ecdsa: KeyPair

    @property
    def all(self) -> tuple[KeyPair, ...]:
        return (self.rsa256, self.rsa1, self.ecdsa)


def manifest_text(origin: str, keys: Keys, folder: Path, not_before: datetime) -> str:
    """The mixed manifest: every key file written (0600) into ``folder`` beside it."""
    files = {pair.key_pair_id: pair.write(folder)[0] for pair in keys.all}
    return f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  expires_in: 72h
jobs:
  - name: q3
    prefixes: [reports/q3/]
    link: cloudfront
    expires_in: 30d
    download_name: "q3-{{basename}}"
    cloudfront:
      domain: "{origin}"
      key_pair_id: {keys.rsa256.key_pair_id}
      private_key: {{file: {files[keys.rsa256.key_pair_id]}}}
      max_expires_in: 90d
    recipients:
      - id: rsa256
      - id: rsa1
        cloudfront:
          key_pair_id: {keys.rsa1.key_pair_id}
          private_key: {{file: {files[keys.rsa1.key_pair_id]}}}
          hash: sha1
      - id: ecdsa
        cloudfront:
          key_pair_id: {keys.ecdsa.key_pair_id}
          private_key: {{file: {files[keys.ecdsa.key_pair_id]}}}
      - id: office
        allow_ips: [127.0.0.1/32]
      - id: later
        email: later@example.com
        cloudfront:
          not_before: "{iso(not_before)}"
      - id: paged
        email: paged@example.com
      - id: plain
        link: s3
        expires_in: 72h
"""


@dataclass
class Run:
    """A finished mixed run: its summary, folder, edge and keys."""

    summary: RunSummary
    run_dir: Path
    edge: Edge
    keys: Keys
    clock_offset: list[float]
    not_before: datetime

    def bundle(self, recipient: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.run_dir / "q3" / recipient / "links.json").read_text(encoding="utf-8")
        )
        return data

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = (self.run_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == name]


@pytest.fixture
def mixed(s3: S3, tmp_path: Path) -> Iterator[Run]:
    """The mixed manifest run on moto, behind an edge on 127.0.0.1 that trusts the three
    keys; the edge's clock is the wall clock plus ``clock_offset[0]`` seconds."""
    s3.bucket(BUCKET, FILES)
    keys = Keys(rsa_pair(0), rsa_pair(1), ec_pair(0))
    offset = [0.0]
    not_before = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    with cloudfront_edge(
        s3, BUCKET, public_keys(*keys.all), clock=lambda: time.time() + offset[0]
    ) as edge:
        text = manifest_text(edge.origin, keys, tmp_path, not_before)
        chosen = {"paged": settings(), "later": settings(delivery="links")}
        path = write_manifest(tmp_path / "q3.yml", with_notify(text, chosen))
        summary = run_manifest(
            path, out=tmp_path / "out", connection=Connection(endpoint_url=s3.endpoint)
        )
        assert summary.run_dir is not None
        yield Run(summary, Path(summary.run_dir), edge, keys, offset, not_before)


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_every_cloudfront_link_downloads_its_object_through_the_edge(mixed: Run) -> None:
    """Each recipient's bundle holds one 30-day CloudFront link per object, signed with its
    own key pair and hash; each downloads the object's exact bytes under its download name."""
    assert mixed.summary.status == "ok"
    expected_hash = {"rsa1": None, "ecdsa": "SHA256"}
    key_pair = {"rsa1": mixed.keys.rsa1, "ecdsa": mixed.keys.ecdsa}
    [run_started] = mixed.events("run_started")
    started = parse_iso(run_started["timestamp"]).replace(microsecond=0)
    for recipient in ("rsa256", "rsa1", "ecdsa", "paged"):
        bundle = mixed.bundle(recipient)
        header, links = bundle["header"], bundle["links"]
        assert header["link"] == "cloudfront"
        pair = key_pair.get(recipient, mixed.keys.rsa256)
        assert header["cloudfront"]["key_pair_id"] == pair.key_pair_id
        assert header["cloudfront"]["policy"] == "canned"
        assert sorted(row["key"] for row in links) == sorted(FILES)
        # Signed after the run started and before its bundles were written: bounds that
        # hold however slow the machine is, unlike a few seconds' slack after generated_at.
        generated = parse_iso(header["generated_at"])
        for row in links:
            url = row["url"]
            assert url.startswith(mixed.edge.origin + "/reports/q3/")
            params = query(url)
            assert params["Key-Pair-Id"] == pair.key_pair_id
            assert params.get("Hash-Algorithm") == expected_hash.get(recipient, "SHA256")
            assert params["x-sharebatch-id"] == row["link_id"]
            ends = parse_iso(row["expires_at"])
            assert int(params["Expires"]) == int(ends.timestamp())
            assert started + timedelta(days=30) <= ends <= generated + timedelta(days=30)
            answer = edge_fetch(url)
            assert answer.status == 200, answer.body
            assert answer.body == FILES[row["key"]]
            name = "q3-" + row["key"].rsplit("/", 1)[1]
            assert answer.headers["content-disposition"] == content_disposition(name)
    assert set(mixed.edge.reasons) == {"served"}


def test_a_recipient_held_to_one_network_is_refused_from_another(mixed: Run) -> None:
    """allow_ips 127.0.0.1/32: a custom policy; served from 127.0.0.1, refused from
    127.0.0.2 (the client socket bound there), by the IP rule."""
    bundle = mixed.bundle("office")
    assert bundle["header"]["allow_ips"] == ["127.0.0.1/32"]
    assert bundle["header"]["cloudfront"]["policy"] == "custom"
    for row in bundle["links"]:
        assert "Policy" in query(row["url"]) and "Expires" not in query(row["url"])
        assert edge_fetch(row["url"], source="127.0.0.1").body == FILES[row["key"]]
        refused = edge_fetch(row["url"], source="127.0.0.2")
        assert refused.status == 403 and refused.body != FILES[row["key"]]
    assert [client for client, reason in mixed.edge.log if reason != "served"] == [
        "127.0.0.2"
    ] * len(FILES)


def test_links_that_start_later_are_refused_until_then(mixed: Run) -> None:
    """not_before two days ahead: the edge refuses every link now and serves it once its
    clock is past the start (the links were signed for it, not for today)."""
    links = mixed.bundle("later")["links"]
    assert mixed.bundle("later")["header"]["cloudfront"]["not_before"] == iso(mixed.not_before)
    for row in links:
        assert edge_fetch(row["url"]).status == 403
    assert all(reason != "served" for reason in mixed.edge.reasons)
    mixed.clock_offset[0] = 2 * DAY + 60
    for row in links:
        assert edge_fetch(row["url"]).body == FILES[row["key"]]


def test_the_s3_recipient_of_the_same_run_gets_presigned_links(mixed: Run) -> None:
    """link: s3 beside cloudfront: SigV4 links from moto, a header without the new keys."""
    bundle = mixed.bundle("plain")
    assert not {"link", "cloudfront", "allow_ips"} & set(bundle["header"])
    for row in bundle["links"]:
        assert "X-Amz-Signature" in row["url"] and fetch(row["url"]) == FILES[row["key"]]


def _signatures(run: Run) -> set[str]:
    return {
        query(row["url"])["Signature"]
        for recipient in CLOUDFRONT
        for row in run.bundle(recipient)["links"]
    }


def test_no_signature_and_no_key_material_outside_the_bundles(mixed: Run) -> None:
    """The audit log holds no Signature= at all; no file of the run folder holds a private
    key's PEM body; the signature values appear only in the bundles and the review page
    (bearer files by design), never in the audit log, summary or delivery plan."""
    audit = (mixed.run_dir / "audit.jsonl").read_text(encoding="utf-8")
    assert "Signature=" not in audit and "BEGIN PRIVATE KEY" not in audit
    bodies = ["".join(pair.private_pem.decode().splitlines()[1:-1]) for pair in mixed.keys.all]
    lines = [line for pair in mixed.keys.all for line in pair.private_pem.decode().splitlines()]
    secrets = [line for line in lines if "PRIVATE KEY" not in line]
    signatures = _signatures(mixed)
    assert len(signatures) == len(CLOUDFRONT) * len(FILES)
    bearer = {"links.json", "links.csv", "index.html"}
    for path in mixed.run_dir.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        assert not any(body in text.replace("\n", "") for body in bodies), path
        assert not any(line in text for line in secrets), path
        if path.name not in bearer:
            assert not any(value in text for value in signatures), path


def test_the_audit_says_which_links_are_cloudfront(mixed: Run) -> None:
    """link_issued: kind cloudfront for CloudFront links only, url_sha256 the URL's digest."""
    issued = {e["link_id"]: e for e in mixed.events("link_issued")}
    for recipient in (*CLOUDFRONT, "plain"):
        for row in mixed.bundle(recipient)["links"]:
            event = issued[row["link_id"]]
            assert event["url_sha256"] == hashlib.sha256(row["url"].encode()).hexdigest()
            if recipient == "plain":
                assert "kind" not in event
            else:
                assert event["kind"] == "cloudfront"


def test_the_summary_and_review_page_say_each_bundles_kind(mixed: Run) -> None:
    """summary.json: link/cloudfront per CloudFront recipient (policy, key pair, hash),
    allow_ips where set, nothing new for the S3 one; index.html's Link kinds table."""
    report = json.loads((mixed.run_dir / "summary.json").read_text(encoding="utf-8"))
    people = {r["id"]: r for r in report["jobs"][0]["recipients"]}
    assert not {"link", "cloudfront", "allow_ips", "page_expires_at"} & set(people["plain"])
    assert people["rsa1"]["link"] == "cloudfront"
    assert people["rsa1"]["cloudfront"] == {
        "domain": mixed.edge.origin,
        "key_pair_id": mixed.keys.rsa1.key_pair_id,
        "hash": "sha1",
        "policy": "canned",
        "not_before": None,
        "max_expires_in": 90 * DAY,
    }
    assert people["office"]["allow_ips"] == ["127.0.0.1/32"]
    assert people["office"]["cloudfront"]["policy"] == "custom"
    assert people["later"]["cloudfront"]["not_before"] == iso(mixed.not_before)
    page = (mixed.run_dir / "index.html").read_text(encoding="utf-8")
    assert "<h2>Link kinds</h2>" in page
    table = page.split('<table id="links"', 1)[1].split("</table>", 1)[0]
    assert table.count('<td class="link-cloudfront">CloudFront</td>') == len(CLOUDFRONT)
    assert table.count('<td class="link-s3">S3 presigned</td>') == 1
    for pair in mixed.keys.all:
        assert f'<td class="">{pair.key_pair_id}</td>' in table
    assert '<td class="">127.0.0.1/32</td>' in table and '<td class="">SHA-1</td>' in table


def test_the_recipient_page_link_is_capped_at_7_days_and_says_so(mixed: Run) -> None:
    """The page of 30-day links: its S3 link ends 7 days after signing (page_capped, header
    and summary page_expires_at); it serves the page, whose links download through the edge."""
    header = mixed.bundle("paged")["header"]
    [capped] = mixed.events("page_capped")
    assert capped["recipient"] == "paged" and capped["capped_by"] == "sigv4"
    assert header["page_expires_at"] == capped["page_expires_at"]
    page_url = header["page_url"]
    params = query(page_url)
    assert params["X-Amz-Expires"] == "604800"
    ends = parse_iso(header["page_expires_at"])
    assert ends < parse_iso(header["expires_at"])
    report = json.loads((mixed.run_dir / "summary.json").read_text(encoding="utf-8"))
    [paged] = [r for r in report["jobs"][0]["recipients"] if r["id"] == "paged"]
    assert paged["page_expires_at"] == header["page_expires_at"]
    served = fetch(page_url).decode("utf-8")
    assert f'This page works until <time datetime="{header["page_expires_at"]}">' in served
    first = mixed.bundle("paged")["links"][0]
    assert edge_fetch(first["url"]).body == FILES[first["key"]]


def test_a_key_file_changed_since_the_manifest_was_checked_is_bad_input(
    s3: S3, tmp_path: Path
) -> None:
    """A key made readable by others after loading: UsageError (exit 2) naming the job and
    recipient, before anything exists on disk; the message shows no key material."""
    s3.bucket(BUCKET, FILES)
    keys = Keys(rsa_pair(0), rsa_pair(1), ec_pair(0))
    path = write_manifest(
        tmp_path / "q3.yml",
        manifest_text("http://127.0.0.1:9", keys, tmp_path, datetime.now(UTC) + timedelta(1)),
    )
    manifest = load_manifest(path)
    (tmp_path / f"{keys.rsa1.key_pair_id}.pem").chmod(0o644)
    with pytest.raises(UsageError, match=r"job q3, recipient rsa1: cloudfront\.private_key") as e:
        CloudFrontKeys.load(g for job in manifest.jobs for g in job.grants)
    assert "0644" in str(e.value) and "PRIVATE" not in str(e.value)
    out = tmp_path / "out"
    with pytest.raises(UsageError):
        asyncio.run(
            run_resolved_async(manifest, out=out, connection=Connection(endpoint_url=s3.endpoint))
        )
    assert not out.exists()


def test_30_day_cloudfront_links_on_1_hour_credentials_are_not_refused(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """on_short_credentials: fail (the default) refuses 72h S3 links on a 1-hour session,
    but not 30-day CloudFront links: a key pair signs them. Their page's S3 link is the
    credentials' again: refused under fail, ended with the credentials under clamp."""
    with fresh_s3(moto_endpoint) as s3:
        s3.bucket(BUCKET, FILES)
        pair = rsa_pair(0)
        key = pair.write(tmp_path)[0]
        body = f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  endpoint_url: {s3.endpoint}
  expires_in: 30d
  link: cloudfront
  cloudfront:
    domain: d111111abcdef8.cloudfront.net
    key_pair_id: {pair.key_pair_id}
    private_key: {{file: {key}}}
    max_expires_in: 90d
jobs:
  - name: q3
    prefixes: [reports/q3/]
    recipients:
      - id: globex
"""
        plain = write_manifest(tmp_path / "plain.yml", body)
        paged = write_manifest(tmp_path / "paged.yml", with_notify(body, {"globex": settings()}))
        clamped = write_manifest(
            tmp_path / "clamped.yml",
            with_notify(
                body.replace(
                    "  link: cloudfront\n", "  link: cloudfront\n  on_short_credentials: clamp\n"
                ),
                {"globex": settings()},
            ),
        )
        with container_credentials(monkeypatch) as expiry:
            ok = invoke("run", str(plain), "--out", str(tmp_path / "a"))
            refused = invoke("run", str(paged), "--out", str(tmp_path / "b"))
            capped = invoke("run", str(clamped), "--out", str(tmp_path / "c"))
    assert ok.exit_code == 0, ok.stderr
    links = json.loads((Path(ok.stdout.strip()) / "q3/globex/links.json").read_text())
    assert all(parse_iso(r["expires_at"]) - expiry > timedelta(days=29) for r in links["links"])
    assert refused.exit_code == 3 and "recipient page links would work until" in refused.stderr
    assert not (tmp_path / "b").exists()
    assert capped.exit_code == 0, capped.stderr
    header = json.loads((Path(capped.stdout.strip()) / "q3/globex/links.json").read_text())[
        "header"
    ]
    assert parse_iso(header["page_expires_at"]) <= expiry


def test_the_mail_promises_the_page_only_until_its_link_ends(mixed: Run) -> None:
    """notify --dry-run: the recipient's mail says the page works until the page's own end
    (7 days), not the 30 days of the CloudFront links on it."""
    report = notify(mixed.run_dir, dry_run=True)
    assert report.outbox is not None
    [mail] = [p for p in Path(report.outbox).rglob("*.eml") if "paged" in p.name]
    text = mail.read_text(encoding="utf-8")
    ends = parse_iso(mixed.bundle("paged")["header"]["page_expires_at"])
    assert f"work until {ends:%Y-%m-%d %H:%M} UTC" in text.replace("=\n", "")


def test_the_mail_of_links_that_start_later_says_from_when(mixed: Run) -> None:
    """notify --dry-run: the mail of the links starting in two days says from when they
    work; the page recipient's, whose links work at once, says nothing of a start."""
    report = notify(mixed.run_dir, dry_run=True)
    assert report.outbox is not None
    mails = {p.name: p.read_text(encoding="utf-8") for p in Path(report.outbox).rglob("*.eml")}
    [later] = [text for name, text in mails.items() if "later" in name]
    [paged] = [text for name, text in mails.items() if "paged" in name]
    start = f"{mixed.not_before:%Y-%m-%d %H:%M} UTC"
    assert f"They work only from {start}: before then they are refused." in later.replace("=\n", "")
    assert "work only from" not in paged.replace("=\n", "")


def test_a_page_that_would_end_before_its_links_start_fails_that_recipient(
    s3: S3, tmp_path: Path
) -> None:
    """Links starting in 8 days on a recipient page, which lives at most 7: that page is
    refused (page_failed, a failure of the summary naming the start, exit 1), the recipient
    gets no bundle and no page is stored; the run's other recipients are written."""
    s3.bucket(BUCKET, FILES)
    keys = Keys(rsa_pair(0), rsa_pair(1), ec_pair(0))
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=8)
    text = manifest_text("http://127.0.0.1:9", keys, tmp_path, start)
    path = write_manifest(tmp_path / "q3.yml", with_notify(text, {"later": settings()}))
    summary = run_manifest(
        path, out=tmp_path / "out", connection=Connection(endpoint_url=s3.endpoint)
    )
    assert summary.run_dir is not None and summary.status == "partial"
    run_dir = Path(summary.run_dir)
    report = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    [failure] = report["failures"]
    assert (failure["kind"], failure["recipient"]) == ("page", "later")
    assert f"cloudfront.not_before {iso(start)}" in failure["message"]
    assert not (run_dir / "q3" / "later").exists() and (run_dir / "q3" / "rsa256").exists()
    skipped = [
        e
        for e in map(json.loads, (run_dir / "audit.jsonl").read_text().splitlines())
        if e["event"] == "bundle_skipped"
    ]
    assert [(e["recipient"], e["reason"]) for e in skipped] == [("later", "page_failed")]
    listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix="_sharebatch/")
    assert listed.get("KeyCount") == 0


def test_an_ecdsa_key_with_sha1_is_refused_before_anything_is_written(
    s3: S3, tmp_path: Path
) -> None:
    """CloudFront verifies ECDSA over SHA-256 only: `run` exits 2 at the manifest's line and
    OUT is never made; a grant that reaches the run so (a key file replaced by an ECDSA one
    since the manifest was checked) is refused when the keys are read, naming who."""
    s3.bucket(BUCKET, FILES)
    keys = Keys(rsa_pair(0), rsa_pair(1), ec_pair(0))
    text = manifest_text("http://127.0.0.1:9", keys, tmp_path, datetime.now(UTC) + timedelta(1))
    ecdsa = f"          key_pair_id: {keys.ecdsa.key_pair_id}\n"
    path = write_manifest(
        tmp_path / "q3.yml", text.replace(ecdsa, ecdsa + "          hash: sha1\n")
    )
    out = tmp_path / "out"
    result = invoke("run", str(path), "--out", str(out), "--endpoint-url", s3.endpoint)
    assert result.exit_code == 2
    assert "recipients[2].cloudfront.hash" in result.stderr
    assert not out.exists()
    # The manifest checked an RSA key for rsa1's SHA-1; the file now holds an ECDSA one.
    manifest = load_manifest(write_manifest(tmp_path / "ok.yml", text))
    rsa1 = tmp_path / f"{keys.rsa1.key_pair_id}.pem"
    rsa1.write_bytes(keys.ecdsa.private_pem)
    with pytest.raises(UsageError, match="job q3, recipient rsa1: cloudfront: ECDSA keys sign"):
        CloudFrontKeys.load(g for job in manifest.jobs for g in job.grants)


def test_both_bundle_files_read_back_to_the_same_cloudfront_links(mixed: Run) -> None:
    """links.csv and links.json of each CloudFront recipient read back (inspect's reader)
    to the same rows: key, URL, end and link id, the URL byte for byte."""
    for recipient in CLOUDFRONT:
        folder = mixed.run_dir / "q3" / recipient
        from_csv = read_bundle(folder / "links.csv").rows
        from_json = read_bundle(folder / "links.json").rows
        expected = [
            (r["key"], r["url"], parse_iso(r["expires_at"]), r["link_id"])
            for r in mixed.bundle(recipient)["links"]
        ]
        for rows in (from_csv, from_json):
            assert [(r.key, r.url, r.expires_at, r.link_id) for r in rows] == expected


def test_a_dry_run_names_each_recipients_kind_and_signs_nothing(s3: S3, tmp_path: Path) -> None:
    """--dry-run: the summary on stdout says which recipients get CloudFront links and
    counts theirs; nothing is written."""
    s3.bucket(BUCKET, FILES)
    keys = Keys(rsa_pair(0), rsa_pair(1), ec_pair(0))
    text = manifest_text("http://127.0.0.1:9", keys, tmp_path, datetime.now(UTC) + timedelta(1))
    path = write_manifest(tmp_path / "q3.yml", text)
    out = tmp_path / "out"
    result = invoke("run", str(path), "--dry-run", "--out", str(out), "--endpoint-url", s3.endpoint)
    assert result.exit_code == 0, result.stderr
    people = {r["id"]: r for r in json.loads(result.stdout)["jobs"][0]["recipients"]}
    assert {name for name, r in people.items() if r.get("link") == "cloudfront"} == set(CLOUDFRONT)
    assert people["rsa1"]["links"] == len(FILES) and "link" not in people["plain"]
    assert not out.exists()


def test_the_download_name_and_link_id_are_covered_by_the_signature(mixed: Run) -> None:
    """Changing the download name or the link id in a link's query makes the edge refuse it:
    both are part of the policy's Resource, as signed."""
    row = mixed.bundle("rsa256")["links"][0]
    url = row["url"]
    renamed = url.replace("filename%3D%22q3-", "filename%3D%22evil-", 1)
    relabelled = url.replace(row["link_id"], "0" * 16, 1)
    assert renamed != url and relabelled != url
    for forged in (renamed, relabelled):
        assert edge_fetch(forged).status == 403
    assert edge_fetch(url).body == FILES[row["key"]]
    assert mixed.edge.reasons[-1] == "served" and "served" not in mixed.edge.reasons[:-1]


async def _link_kinds_in_chromium(executable: str, page_path: Path, profile: Path) -> Any:
    async with chromium(executable, profile) as browser:
        page = await browser.new_page(1280, 900)
        await page.send("Page.navigate", url=page_path.as_uri())
        await page.wait_for("Page.loadEventFired")
        count = await page.evaluate("document.getElementById('links-count').textContent")
        await page.evaluate("document.getElementById('search').focus()")
        await page.send("Input.insertText", text="office")
        shown = await page.evaluate(
            "Array.from(document.querySelectorAll('#links tbody tr'))"
            ".filter(r => !r.hidden).map(r => [r.cells[1].textContent, r.cells[2].textContent])"
        )
        problems = page.events("Runtime.exceptionThrown") + [
            e for e in page.events("Log.entryAdded") if e["entry"]["level"] == "error"
        ]
        return count, shown, problems


def test_the_link_kinds_table_filters_in_chromium(
    executable: str, mixed: Run, tmp_path: Path
) -> None:
    """The review page's Link kinds table is one of its filterable tables: the page's own
    script (allowed by its CSP) counts its rows and the search box filters them."""
    count, shown, problems = asyncio.run(
        _link_kinds_in_chromium(executable, mixed.run_dir / "index.html", tmp_path / "profile")
    )
    rows = len(CLOUDFRONT) + 1
    assert count == f"{rows} of {rows} shown"
    assert shown == [["office", "CloudFront"]]
    assert problems == []


def test_a_start_after_the_links_end_is_bad_input_before_anything_is_written(
    s3: S3, tmp_path: Path
) -> None:
    """not_before after the 30-day end: no link could ever work. The manifest says so at
    its line (exit 2, OUT never made); a grant built past that check (a caller's own
    Manifest value) is refused when the run reads its keys, naming job and recipient."""
    s3.bucket(BUCKET, FILES)
    keys = Keys(rsa_pair(0), rsa_pair(1), ec_pair(0))
    soon = datetime.now(UTC) + timedelta(days=1)
    late = datetime.now(UTC) + timedelta(days=40)
    path = write_manifest(
        tmp_path / "q3.yml", manifest_text("http://127.0.0.1:9", keys, tmp_path, late)
    )
    out = tmp_path / "out"
    result = invoke("run", str(path), "--out", str(out), "--endpoint-url", s3.endpoint)
    assert result.exit_code == 2, result.stderr
    assert "recipients[4].cloudfront.not_before" in result.stderr
    assert not out.exists()
    manifest = load_manifest(
        write_manifest(
            tmp_path / "ok.yml", manifest_text("http://127.0.0.1:9", keys, tmp_path, soon)
        )
    )
    grants = [g for job in manifest.jobs for g in job.grants]
    later = next(g for g in grants if g.recipient.id == "later")
    assert later.cloudfront is not None
    moved = later.model_copy(
        update={"cloudfront": replace(later.cloudfront, not_before=late.replace(microsecond=0))}
    )
    with pytest.raises(UsageError, match=r"job q3, recipient later: cloudfront\.not_before"):
        CloudFrontKeys.load([*grants, moved])
