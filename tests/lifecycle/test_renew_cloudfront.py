"""sharebatch renew on CloudFront bundles: due links re-signed with the header's distribution,
key pair, hash and IP range, with the key from the header's source; downloads through the
renewed links compared byte for byte; a forged header or a bad key refused before anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from sharebatch.cloudfront.read import read_cloudfront_url
from sharebatch.models import LINK_ID_PARAM, CloudFrontHash
from sharebatch.run.bundles import BundleHeader
from sharebatch.run.link_ids import link_id_of
from tests.support.cfbundle import (
    BUCKET,
    FILES,
    CfBundle,
    audit_events,
    sha256_of,
    write_cf_bundle,
)
from tests.support.cfkeys import ec_pair, public_keys, rsa_pair
from tests.support.cloudfront_edge import cloudfront_edge, fetch
from tests.support.linkkit import invoke
from tests.support.s3 import S3


def renewed(result: object, made: CfBundle) -> dict[str, Any]:
    """The renewal's JSON, from the paths renew printed."""
    stdout = getattr(result, "stdout", "")
    paths = [Path(line) for line in stdout.splitlines() if line.endswith(".json")]
    assert len(paths) == 1 and paths[0].parent == made.folder
    data: dict[str, Any] = json.loads(paths[0].read_text(encoding="utf-8"))
    return data


def soon(hours: int = 1) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


@pytest.mark.parametrize(
    ("kind", "hash"), [("rsa", "sha256"), ("rsa", "sha1"), ("ecdsa", "sha256")]
)
def test_due_links_are_re_signed_past_seven_days_and_download(
    s3: S3, tmp_path: Path, kind: str, hash: CloudFrontHash
) -> None:
    """Links of a 30-day policy that end within the window get new 30-day links: same
    distribution, key pair and hash, the download name kept, new link ids, link_renewed with
    kind cloudfront; each downloads through the edge with the object's exact bytes (RSA with
    SHA-256 or SHA-1, ECDSA P-256)."""
    s3.bucket(BUCKET, FILES)
    pair = rsa_pair() if kind == "rsa" else ec_pair()
    with cloudfront_edge(s3, BUCKET, public_keys(pair)) as edge:
        made = write_cf_bundle(
            tmp_path, s3, edge.origin, pair, expires_in=30 * 86400, links_end=soon(), hash=hash
        )
        old = made.data()
        result = invoke("renew", str(made.folder), "--within", "2h")
        assert result.exit_code == 0, result.output
        new = renewed(result, made)
        assert new["header"]["link"] == "cloudfront"
        assert new["header"]["cloudfront"] == old["header"]["cloudfront"]
        rows = new["links"]
        assert isinstance(rows, list)
        for was, row in zip(old["links"], rows, strict=True):
            facts = read_cloudfront_url(row["url"])
            assert (facts.key_pair_id, facts.hash, facts.canned) == (pair.key_pair_id, hash, True)
            left = facts.expires - datetime.now(UTC)
            assert timedelta(days=29, hours=23) < left <= timedelta(days=30)
            assert row["url"].startswith(edge.origin + "/")
            assert row["link_id"] != was["link_id"] and row["link_id"] == link_id_of(row["url"])
            names = [n for n, _ in parse_qsl(urlsplit(row["url"]).query)]
            assert names[:2] == ["response-content-disposition", LINK_ID_PARAM]
            got = fetch(row["url"])
            assert got.status == 200
            assert got.body == FILES[row["key"]]
            old_name = dict(parse_qsl(urlsplit(was["url"]).query))["response-content-disposition"]
            assert got.headers["content-disposition"] == old_name
        events = audit_events(made.run_dir, "link_renewed")
        assert [e["kind"] for e in events] == ["cloudfront"] * 3
        assert [e["old_link_id"] for e in events] == [r["link_id"] for r in old["links"]]
        assert [e["link_id"] for e in events] == [r["link_id"] for r in rows]
        assert len(audit_events(made.run_dir, "bundle_renewed")) == 1
        # The audit log names links by digest: no CloudFront signature, old or new, is in it.
        log = (made.run_dir / "audit.jsonl").read_text(encoding="utf-8")
        assert "Signature=" not in log
        for row in [*old["links"], *rows]:
            assert row["url"].split("Signature=")[1].split("&")[0] not in log


def test_a_renewal_of_a_renewal_is_vouched_for_and_renewed(s3: S3, tmp_path: Path) -> None:
    """The chain holds for CloudFront bundles: a renewal (recorded by bundle_renewed) renews
    again, and the folder's newest renewal is what renew takes."""
    s3.bucket(BUCKET, FILES)
    pair = rsa_pair()
    made = write_cf_bundle(tmp_path, s3, "http://127.0.0.1:9", pair, expires_in=3600)
    first = invoke("renew", str(made.folder), "--within", "2h")
    assert first.exit_code == 0, first.output
    second = invoke("renew", str(made.folder), "--within", "2h")
    assert second.exit_code == 0, second.output
    assert second.stdout != first.stdout
    assert len(audit_events(made.run_dir, "bundle_renewed")) == 2


def test_allow_ips_and_a_start_ahead_are_kept(s3: S3, tmp_path: Path) -> None:
    """A custom policy's IP range is kept, and a start still ahead too: a renewal never opens
    a link earlier or wider than the grant."""
    s3.bucket(BUCKET, FILES)
    start = (datetime.now(UTC) + timedelta(minutes=30)).replace(microsecond=0)
    made = write_cf_bundle(
        tmp_path,
        s3,
        "http://127.0.0.1:9",
        rsa_pair(),
        not_before=start,
        allow_ips=["127.0.0.1/32"],
        expires_in=86400,
        links_end=soon(),
    )
    result = invoke("renew", str(made.folder), "--within", "2h")
    assert result.exit_code == 0, result.output
    for row in renewed(result, made)["links"]:
        facts = read_cloudfront_url(row["url"])
        assert (facts.canned, facts.source_ip, facts.not_before) == (False, "127.0.0.1/32", start)


def test_a_passed_start_is_kept_as_a_run_signs_it(s3: S3, tmp_path: Path) -> None:
    """A not_before already passed stays in the renewed link's custom policy, as a run
    signing now would write it (one signer, one policy shape), and the link works through
    the edge."""
    s3.bucket(BUCKET, FILES)
    pair = rsa_pair()
    start = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    with cloudfront_edge(s3, BUCKET, public_keys(pair)) as edge:
        made = write_cf_bundle(
            tmp_path,
            s3,
            edge.origin,
            pair,
            not_before=start,
            expires_in=3600,
        )
        assert "Policy=" in made.data()["links"][0]["url"]
        result = invoke("renew", str(made.folder), "--within", "2h")
        assert result.exit_code == 0, result.output
        for row in renewed(result, made)["links"]:
            facts = read_cloudfront_url(row["url"])
            assert not facts.canned
            assert facts.not_before == start
            assert fetch(row["url"]).body == FILES[row["key"]]


def test_a_deleted_object_keeps_its_row_and_is_reported(s3: S3, tmp_path: Path) -> None:
    """The origin bucket's objects are HEADed as for S3 links: a deleted one is not renewed
    (exit 1), the others are."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(tmp_path, s3, "http://127.0.0.1:9", rsa_pair(), expires_in=3600)
    s3.client.delete_object(Bucket=BUCKET, Key="q3/b.csv")
    result = invoke("renew", str(made.folder), "--within", "2h")
    assert result.exit_code == 1
    assert "q3/b.csv: not renewed: missing" in result.stderr
    rows = renewed(result, made)["links"]
    old = made.data()["links"]
    assert [r["url"] == o["url"] for r, o in zip(rows, old, strict=True)] == [False, True, False]


@pytest.mark.parametrize("problem", ["missing", "open"])
def test_a_bad_key_file_is_a_clear_error_and_nothing_is_written(
    s3: S3, tmp_path: Path, problem: str
) -> None:
    """The key named by the header is loaded with the run's checks: missing, or readable by
    others, is exit 2 naming the source; no file is written."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(tmp_path, s3, "http://127.0.0.1:9", rsa_pair(), expires_in=3600)
    if problem == "missing":
        made.key_file.unlink()
    else:
        made.key_file.chmod(0o644)
    before = sorted(p.name for p in made.folder.iterdir())
    result = invoke("renew", str(made.folder), "--within", "2h")
    assert result.exit_code == 2
    assert "header: cloudfront.private_key" in result.stderr
    assert ("does not exist" if problem == "missing" else "readable by group or others") in (
        result.stderr
    )
    assert sorted(p.name for p in made.folder.iterdir()) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [("domain", "http://127.0.0.3:9"), ("private_key", {"file": "/tmp/attacker.pem"})],
)
def test_a_forged_header_cannot_widen_access(
    s3: S3, tmp_path: Path, field: str, value: object
) -> None:
    """Another distribution or key in links.json changes its sha256, which the run did not
    record: refused (exit 2) before any key is read or link signed."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(tmp_path, s3, "http://127.0.0.1:9", rsa_pair(), expires_in=3600)
    data = made.data()
    data["header"]["cloudfront"][field] = value
    made.json_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    result = invoke("renew", str(made.json_path), "--within", "2h")
    assert result.exit_code == 2
    assert "is not a bundle its run wrote" in result.stderr
    assert not list(made.folder.glob("links.renewed-*"))


def test_a_forged_renewal_cannot_change_the_distribution(s3: S3, tmp_path: Path) -> None:
    """A renewal edited afterwards to name another domain is not recorded, and differs from
    its source's header: the chain refuses it (exit 2)."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(tmp_path, s3, "http://127.0.0.1:9", rsa_pair(), expires_in=3600)
    first = invoke("renew", str(made.folder), "--within", "2h")
    assert first.exit_code == 0, first.output
    path = next(Path(p) for p in first.stdout.splitlines() if p.endswith(".json"))
    data = json.loads(path.read_text(encoding="utf-8"))
    data["header"]["cloudfront"]["domain"] = "http://127.0.0.3:9"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    result = invoke("renew", str(path), "--within", "2h")
    assert result.exit_code == 2
    assert "header: cloudfront differs from its source" in result.stderr


def test_the_header_round_trips_and_s3_headers_stay_as_they_were(s3: S3, tmp_path: Path) -> None:
    """The CloudFront header reads back equal; an S3 header's JSON has no link keys; a
    policy kind that not_before and allow_ips contradict is refused."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(
        tmp_path, s3, "http://127.0.0.1:9", rsa_pair(), allow_ips=["127.0.0.1/32"]
    )
    raw = made.data()["header"]
    header = BundleHeader.from_json(raw)
    assert header.to_json() == raw
    assert raw["cloudfront"]["policy"] == "custom" and raw["allow_ips"] == ["127.0.0.1/32"]
    assert header.policy is not None and header.policy.link == "cloudfront"
    plain = BundleHeader.from_json(
        {k: v for k, v in raw.items() if k not in ("link", "cloudfront", "allow_ips")}
    )
    assert not {"link", "cloudfront", "allow_ips"} & plain.to_json().keys()
    forged = json.loads(json.dumps(raw))
    forged["cloudfront"]["policy"] = "canned"
    with pytest.raises(ValueError, match=r"cloudfront\.policy"):
        BundleHeader.from_json(forged)


def test_a_recorded_header_the_signer_cannot_use_is_bad_input(s3: S3, tmp_path: Path) -> None:
    """Even a header its run recorded is refused (exit 2, nothing written) when its domain is
    no host name or loopback origin: the signer's refusal names the setting, no traceback."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(tmp_path, s3, "http://127.0.0.1:9", rsa_pair(), expires_in=3600)
    data = made.data()
    data["header"]["cloudfront"]["domain"] = "http://192.0.2.1:9"
    made.json_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    event = {"event": "bundle_written", "sha256": sha256_of(made.json_path)}
    with (made.run_dir / "audit.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(event) + "\n")
    result = invoke("renew", str(made.json_path), "--within", "2h")
    assert result.exit_code == 2
    # Refused when the header is read, as the manifest would refuse it.
    assert "header: cloudfront.domain: domain 'http://192.0.2.1:9' would make" in result.stderr
    assert not list(made.folder.glob("links.renewed-*"))


def test_the_window_may_pass_seven_days_for_long_links(s3: S3, tmp_path: Path) -> None:
    """--within 31d renews 30-day CloudFront links weeks ahead (the window is not SigV4's)."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(tmp_path, s3, "http://127.0.0.1:9", rsa_pair(), expires_in=30 * 86400)
    assert invoke("renew", str(made.folder), "--within", "29d").stderr.endswith(
        "nothing to renew\n"
    )
    result = invoke("renew", str(made.folder), "--within", "31d")
    assert result.exit_code == 0, result.output
    assert len(renewed(result, made)["links"]) == 3


def test_a_renewal_drops_the_old_page_end(s3: S3, tmp_path: Path) -> None:
    """page_expires_at is the old recipient page's end: a renewal drops it with the page."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(
        tmp_path, s3, "http://127.0.0.1:9", rsa_pair(), expires_in=3600, page_expires_at=soon()
    )
    assert "page_expires_at" in made.data()["header"]
    result = invoke("renew", str(made.folder), "--within", "2h")
    assert result.exit_code == 0, result.output
    assert "page_expires_at" not in renewed(result, made)["header"]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("domain", "evil.example/steal", "header: cloudfront.domain: domain 'evil.example/steal'"),
        ("key_pair_id", "k2jcjmdehxqw5f", "header: cloudfront.key_pair_id: key_pair_id"),
        ("max_expires_in", 3650 * 86_400, "header: cloudfront.max_expires_in: expected 1 to"),
    ],
)
def test_a_header_the_manifest_would_refuse_is_a_located_error(
    s3: S3, tmp_path: Path, field: str, value: object, problem: str
) -> None:
    """A CloudFront field the manifest would refuse, even in a bundle its run recorded (its
    sha256 in audit.jsonl matching): exit 2 naming the file and the field, no traceback,
    nothing written."""
    s3.bucket(BUCKET, FILES)
    made = write_cf_bundle(tmp_path, s3, "http://127.0.0.1:9", rsa_pair(), expires_in=3600)
    data = made.data()
    data["header"]["cloudfront"][field] = value
    made.json_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    event = {"event": "bundle_written", "sha256": sha256_of(made.json_path)}
    with (made.run_dir / "audit.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(event) + "\n")
    result = invoke("renew", str(made.json_path), "--within", "2h")
    assert result.exit_code == 2, result.output
    assert str(made.json_path) in result.stderr and problem in result.stderr
    assert "Traceback" not in result.output
    assert not list(made.folder.glob("links.renewed-*"))
