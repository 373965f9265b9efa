"""sharebatch verify on CloudFront bundles, against a CloudFront edge of the tests' own: a
working link is ok, an expired, tampered or not-yet-valid one is refused and reported."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sharebatch.cloudfront.sign import cf_b64, cf_b64decode
from sharebatch.lifecycle.verify import verify_bundles
from tests.support.cfbundle import BUCKET, FILES, write_cf_bundle
from tests.support.cfkeys import ec_pair, public_keys, rsa_pair
from tests.support.cloudfront_edge import cloudfront_edge
from tests.support.linkkit import invoke
from tests.support.s3 import S3


def test_working_links_are_ok_through_the_edge(s3: S3, tmp_path: Path) -> None:
    """Each link of the bundle is asked of the edge with a one-byte GET and found as the row
    says (size and ETag from the origin); the CLI exits 0."""
    s3.bucket(BUCKET, FILES)
    pair = rsa_pair()
    with cloudfront_edge(s3, BUCKET, public_keys(pair)) as edge:
        made = write_cf_bundle(tmp_path, s3, edge.origin, pair)
        result = invoke("verify", str(made.folder), "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["outcomes"] == {"ok": 3}
        assert {r["http_status"] for r in report["results"]} == {206}
        assert edge.reasons == ["served"] * 3


def test_ecdsa_and_sha1_links_verify(s3: S3, tmp_path: Path) -> None:
    """An ECDSA P-256 bundle and an RSA SHA-1 one both pass the edge's signature check."""
    s3.bucket(BUCKET, FILES)
    with cloudfront_edge(s3, BUCKET, public_keys(ec_pair(), rsa_pair(1))) as edge:
        ecdsa = write_cf_bundle(tmp_path / "ec", s3, edge.origin, ec_pair())
        sha1 = write_cf_bundle(tmp_path / "sha1", s3, edge.origin, rsa_pair(1), hash="sha1")
        report = verify_bundles([ecdsa.folder, sha1.folder])
    assert [v.outcome for v in report.verdicts] == ["ok"] * 6


def test_expired_at_the_edge_is_refused_and_reported(s3: S3, tmp_path: Path) -> None:
    """The edge's clock past the links' end (ours not): asked, refused with 403, exit 1."""
    s3.bucket(BUCKET, FILES)
    pair = rsa_pair()
    later = time.time() + 3 * 86400
    with cloudfront_edge(s3, BUCKET, public_keys(pair), clock=lambda: later) as edge:
        made = write_cf_bundle(tmp_path, s3, edge.origin, pair)
        result = invoke("verify", str(made.folder))
        assert result.exit_code == 1
        assert result.stdout.count("DENIED") == 3
        assert "403 AccessDenied: Access denied" in result.stdout
        assert edge.reasons == ["expired"] * 3


def test_a_tampered_link_is_refused_and_reported(s3: S3, tmp_path: Path) -> None:
    """A row whose policy was edited to a wider IP range than its header's is refused by
    verify itself, never requested (an error naming the range); one whose signature was
    changed is refused by the edge: denied, exit 1."""
    s3.bucket(BUCKET, FILES)
    pair = rsa_pair()
    with cloudfront_edge(s3, BUCKET, public_keys(pair)) as edge:
        made = write_cf_bundle(tmp_path, s3, edge.origin, pair, allow_ips=["127.0.0.2/32"])
        data = made.data()
        url = data["links"][0]["url"]
        policy = url.split("Policy=")[1].split("&")[0]
        wider = cf_b64(cf_b64decode(policy).replace(b"127.0.0.2/32", b"127.0.0.0/8"))
        data["links"][0]["url"] = url.replace(policy, wider)
        second = data["links"][1]["url"]
        signature = second.split("Signature=")[1].split("&")[0]
        flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
        data["links"][1]["url"] = second.replace(signature, flipped)
        made.json_path.write_text(json.dumps(data), encoding="utf-8")
        report = verify_bundles([made.json_path])
        assert [v.outcome for v in report.verdicts] == ["error", "denied", "denied"]
        assert "its IP range 127.0.0.0/8 is not the header's 127.0.0.2/32" in (
            report.verdicts[0].detail
        )
        # The third, untouched, is refused only for its IP rule: verify runs from 127.0.0.1.
        # (Links are checked in parallel: the edge's log is in arrival order.)
        assert sorted(edge.reasons) == ["signature", "source ip"]
    assert report.exit_code == 1


def test_a_link_before_its_start_is_skipped_not_asked(s3: S3, tmp_path: Path) -> None:
    """not_before ahead: CloudFront would refuse it by design, so verify skips it, says why,
    and asks nothing; exit 0 (nothing found broken)."""
    s3.bucket(BUCKET, FILES)
    pair = rsa_pair()
    start = datetime.now(UTC) + timedelta(days=1)
    with cloudfront_edge(s3, BUCKET, public_keys(pair)) as edge:
        made = write_cf_bundle(tmp_path, s3, edge.origin, pair, not_before=start)
        result = invoke("verify", str(made.folder))
        assert result.exit_code == 0, result.output
        assert result.stdout.count("SKIPPED") == 3
        assert "(its policy's start); not requested" in result.stdout
        assert edge.log == []


def test_a_rewritten_path_is_not_asked(s3: S3, tmp_path: Path) -> None:
    """The WHATWG path rule holds for CloudFront links: a key with a dot segment is reported
    rewritten, without a request."""
    s3.bucket(BUCKET, {"q3/../x.txt": b"x", **FILES})
    pair = rsa_pair()
    with cloudfront_edge(s3, BUCKET, public_keys(pair)) as edge:
        made = write_cf_bundle(tmp_path, s3, edge.origin, pair, keys=["q3/../x.txt"])
        report = verify_bundles([made.folder])
        assert [v.outcome for v in report.verdicts] == ["rewritten"]
        assert edge.log == []
