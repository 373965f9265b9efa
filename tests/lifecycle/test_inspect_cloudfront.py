"""sharebatch inspect on CloudFront signed URLs: read back without any network, with statuses
and exit codes like S3 links', malformed ones INVALID with a reason, hostile text escaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sharebatch.cloudfront.sign import CloudFrontSigner
from sharebatch.lifecycle.inspect import inspect, inspect_url
from sharebatch.models import LINK_ID_PARAM
from tests.support.cfbundle import BUCKET, FILES, write_cf_bundle
from tests.support.cfkeys import ec_pair, rsa_pair
from tests.support.linkkit import invoke
from tests.support.s3 import S3

ORIGIN = "d111111abcdef8.cloudfront.net"
NOW = datetime(2026, 10, 1, 6, 0, tzinfo=UTC)


def signed(
    key: str = "q3/a.pdf",
    *,
    hash: str = "sha256",
    ends: timedelta = timedelta(days=30),
    not_before: datetime | None = None,
    source_ip: str | None = None,
    ecdsa: bool = False,
) -> str:
    pair = ec_pair() if ecdsa else rsa_pair()
    signer = CloudFrontSigner(
        domain=ORIGIN,
        key_pair_id=pair.key_pair_id,
        key=pair.private,
        hash="sha256" if hash == "sha256" else "sha1",
    )
    return signer.sign(
        key,
        NOW + ends,
        query=[(LINK_ID_PARAM, "0123456789abcdef")],
        not_before=not_before,
        source_ip=source_ip,
    )


def test_a_canned_link_is_read_back_with_its_end_key_pair_and_hash() -> None:
    """Expires gives the end; Key-Pair-Id, Hash-Algorithm and the path's key are shown."""
    found = inspect_url(signed(), NOW, timedelta(0))
    assert found["link"] == "cloudfront"
    assert found["status"] == "VALID"
    assert found["expires_at"] == "2026-10-31T06:00:00Z"
    assert found["seconds_left"] == 30 * 86400
    assert (found["key"], found["host"]) == ("q3/a.pdf", ORIGIN)
    assert (found["key_pair_id"], found["hash"], found["policy"]) == (
        rsa_pair().key_pair_id,
        "sha256",
        "canned",
    )
    assert (found["not_before"], found["source_ip"], found["problem"]) == (None, None, None)
    assert found["link_id"] == "0123456789abcdef"


def test_a_custom_policy_gives_its_start_and_ip_range() -> None:
    """The decoded policy's DateGreaterThan and AWS:SourceIp come back, SHA-1 named as such."""
    start = NOW + timedelta(days=1)
    found = inspect_url(
        signed(hash="sha1", not_before=start, source_ip="203.0.113.0/24"), NOW, timedelta(0)
    )
    assert (found["policy"], found["hash"]) == ("custom", "sha1")
    assert found["not_before"] == "2026-10-02T06:00:00Z"
    assert found["source_ip"] == "203.0.113.0/24"


def test_statuses_follow_the_end_and_the_start() -> None:
    """EXPIRING within the window, EXPIRED after the end, NOT_YET_VALID before the start."""
    link = signed(ends=timedelta(hours=10), not_before=NOW + timedelta(hours=2))
    assert inspect_url(link, NOW, timedelta(0))["status"] == "NOT_YET_VALID"
    assert inspect_url(link, NOW + timedelta(hours=3), timedelta(0))["status"] == "VALID"
    assert inspect_url(link, NOW + timedelta(hours=3), timedelta(days=1))["status"] == "EXPIRING"
    assert inspect_url(link, NOW + timedelta(hours=10), timedelta(0))["status"] == "EXPIRED"


def test_an_ecdsa_link_reads_like_any_other() -> None:
    """An ECDSA P-256 signature does not change what inspect reads."""
    found = inspect_url(signed(ecdsa=True), NOW, timedelta(0))
    assert (found["status"], found["key_pair_id"]) == ("VALID", ec_pair().key_pair_id)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda url: url.replace("Policy=", "Policy=AAAA"), "Policy cannot be read"),
        (lambda url: url.replace("Hash-Algorithm=SHA256", "Hash-Algorithm=MD5"), "SHA256"),
        (lambda url: url + "&Key-Pair-Id=KOTHER", "Key-Pair-Id more than once"),
        (lambda url: url.replace("&Signature=", "&Signed="), "no Signature"),
        (lambda url: url.replace("Policy=", "Expires=1&Policy="), "exactly one of Expires"),
    ],
)
def test_a_malformed_link_is_invalid_with_its_reason(change: object, reason: str) -> None:
    """A policy or parameter CloudFront cannot read is INVALID with why, never a traceback,
    and the reason does not quote the URL (a bearer secret)."""
    url = signed(not_before=NOW - timedelta(days=1))
    assert callable(change)
    bad = change(url)
    found = inspect_url(bad, NOW, timedelta(0))
    assert found["status"] == "INVALID"
    assert reason in found["problem"]
    assert found["expires_at"] is None and found["seconds_left"] is None
    assert url.split("Signature=")[1][:20] not in found["problem"]


def test_cli_exit_codes_match_s3_links() -> None:
    """0 for VALID and NOT_YET_VALID (a start ahead needs no renewal), 1 for EXPIRING,
    EXPIRED or INVALID, as for S3 links; text output names the CloudFront facts."""
    now = datetime.now(UTC)
    pair = rsa_pair()
    signer = CloudFrontSigner(domain=ORIGIN, key_pair_id=pair.key_pair_id, key=pair.private)
    valid = signer.sign("q3/a.pdf", now + timedelta(days=30))
    early = signer.sign("q3/a.pdf", now + timedelta(days=30), not_before=now + timedelta(days=1))
    expired = signer.sign("q3/a.pdf", now - timedelta(hours=1))
    soon = signer.sign("q3/a.pdf", now + timedelta(hours=1))
    result = invoke("inspect", "-", stdin=f"{valid}\n{early}\n")
    assert result.exit_code == 0, result.output
    assert "NOT_YET_VALID" in result.stdout and "CloudFront signed URL" in result.stdout
    assert f"key pair id  {pair.key_pair_id}" in result.stdout
    assert "1 not yet valid" in result.stdout
    assert invoke("inspect", "-", stdin=expired).exit_code == 1
    assert invoke("inspect", "-", "--within", "2h", stdin=soon).exit_code == 1
    assert invoke("inspect", "-", stdin=soon).exit_code == 0
    broken = valid.replace("Expires=", "Expires=x")
    result = invoke("inspect", "-", "--json", stdin=broken)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["urls"][0]["status"] == "INVALID"


def test_hostile_key_is_shown_escaped() -> None:
    """A key with a terminal escape and a bidi override is shown through visible()."""
    hostile = "q3/\x1b[31mred\u202egnp.exe"
    result = invoke("inspect", "-", stdin=signed(hostile))
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert "\\x1b[31mred\\u202egnp.exe" in result.stdout


def test_a_bundle_of_cloudfront_links(s3: S3, tmp_path: Path) -> None:
    """A bundle's CloudFront rows: statuses, key pair, policy and IP range per row, the
    bundle's kind, and a row edited to another distribution is INVALID."""
    s3.bucket(BUCKET, FILES)
    start = datetime.now(UTC) + timedelta(days=1)
    made = write_cf_bundle(
        tmp_path,
        s3,
        "http://127.0.0.1:9",
        rsa_pair(),
        not_before=start,
        allow_ips=["127.0.0.1/32"],
    )
    report = inspect([str(made.folder)], datetime.now(UTC))
    bundle = report["bundles"][0]
    assert bundle["link"] == "cloudfront"
    links = bundle["recipients"][0]["links"]
    assert [link["status"] for link in links] == ["NOT_YET_VALID"] * 3
    assert {link["source_ip"] for link in links} == {"127.0.0.1/32"}
    assert {link["policy"] for link in links} == {"custom"}
    assert (report["not_yet_valid"], report["ok"]) == (3, True)
    data = made.data()
    data["links"][0]["url"] = data["links"][0]["url"].replace("127.0.0.1:9", "127.0.0.3:9")
    made.json_path.write_text(json.dumps(data), encoding="utf-8")
    edited = inspect([str(made.json_path)], datetime.now(UTC))
    first = edited["bundles"][0]["recipients"][0]["links"][0]
    assert first["status"] == "INVALID"
    assert "not the header's domain" in first["problem"]
    assert edited["ok"] is False


def test_a_csv_bundle_is_read_by_its_links_form(s3: S3, tmp_path: Path) -> None:
    """links.csv has no header: its CloudFront links are told by their parameters, and read
    like the JSON's."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(tmp_path, s3, "http://127.0.0.1:9", rsa_pair(), hash="sha1")
    report = inspect([str(made.folder / "links.csv")], datetime.now(UTC))
    bundle = report["bundles"][0]
    assert bundle["link"] == "cloudfront"
    links = bundle["recipients"][0]["links"]
    assert [(link["status"], link["hash"]) for link in links] == [("VALID", "sha1")] * 3
    assert [link["key"] for link in links] == list(FILES)
