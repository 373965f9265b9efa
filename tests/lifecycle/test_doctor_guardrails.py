"""doctor's guardrails checks: the live bucket policy (moto stores it) read back and judged by
meaning against what ``sharebatch policy`` would write for the manifest. Missing guardrails
WARN; an age limit below the manifest's links FAILs, since it would refuse them early."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sharebatch.guardrails.document import bucket_policy
from sharebatch.lifecycle.doctor import Check, diagnose
from sharebatch.manifest.load import load_manifest
from sharebatch.models import Connection
from tests.support.faultproxy import fault_proxy
from tests.support.grants import BUCKET, DISTRIBUTION, grant, manifest, policy_of
from tests.support.s3 import S3, write_manifest

MANIFEST = """\
version: 1
defaults:
  bucket: acme-reports
  region: eu-west-1
  expires_in: 3d
jobs:
  - name: q3
    prefixes: [reports/q3/]
    recipients:
      - id: globex
"""
DAY_MS = 86400 * 1000


def guardrails(tmp_path: Path, s3: S3) -> tuple[list[Check], int]:
    """The guardrails checks of a doctor run on MANIFEST, and its exit code."""
    manifest = load_manifest(write_manifest(tmp_path / "m.yml", MANIFEST))
    diagnosis = diagnose(manifest, connection=Connection(endpoint_url=s3.endpoint))
    return [c for c in diagnosis.checks if c.name == "guardrails"], diagnosis.exit_code


def hand_written(age_ms: int) -> dict[str, Any]:
    """A policy of someone else's wording: other Sids, one deny for TLS and signature age."""
    bucket = "arn:aws:s3:::acme-reports"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OldLinksOut",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": f"{bucket}/*",
                "Condition": {"NumericGreaterThan": {"s3:signatureage": age_ms}},
            },
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket, f"{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": False}},
            },
        ],
    }


def test_no_bucket_policy_warns_for_each_guardrail(s3: S3, tmp_path: Path) -> None:
    """No policy (NoSuchBucketPolicy is an answer): each guardrail WARNs, the first names the
    command that prints them; doctor still exits 0."""
    s3.bucket("acme-reports", {"reports/q3/a.pdf": b"a"})
    checks, code = guardrails(tmp_path, s3)
    assert [c.status for c in checks] == ["WARN", "WARN", "WARN"]
    assert "sharebatch policy MANIFEST --bucket acme-reports" in checks[0].message
    assert "longest is 3d (q3/globex: links)" in checks[0].message
    assert code == 0


def test_printed_policy_holds_every_guardrail(s3: S3, tmp_path: Path) -> None:
    """The policy `sharebatch policy` prints, put on the bucket: every guardrail OK."""
    s3.bucket("acme-reports", {"reports/q3/a.pdf": b"a"})
    policy = policy_of(MANIFEST, datetime.now(UTC))
    s3.client.put_bucket_policy(Bucket="acme-reports", Policy=json.dumps(policy))
    checks, code = guardrails(tmp_path, s3)
    assert [c.status for c in checks] == ["OK", "OK", "OK"]
    assert code == 0


def test_policy_in_other_words_is_judged_by_meaning(s3: S3, tmp_path: Path) -> None:
    """A hand-written policy: its 3-day age limit and TLS deny count whatever their Sids; the
    missing SigV4 deny WARNs."""
    s3.bucket("acme-reports", {"reports/q3/a.pdf": b"a"})
    policy = hand_written(3 * DAY_MS)
    s3.client.put_bucket_policy(Bucket="acme-reports", Policy=json.dumps(policy))
    checks, code = guardrails(tmp_path, s3)
    assert [c.status for c in checks] == ["OK", "WARN", "OK"]
    assert "Signature Version 2" in checks[1].message
    assert code == 0


def test_age_limit_weaker_warns_and_too_strict_fails(s3: S3, tmp_path: Path) -> None:
    """A 7-day limit for 3-day links WARNs (weaker); a 1-day limit would cut them: FAIL."""
    s3.bucket("acme-reports", {"reports/q3/a.pdf": b"a"})
    s3.client.put_bucket_policy(Bucket="acme-reports", Policy=json.dumps(hand_written(7 * DAY_MS)))
    checks, code = guardrails(tmp_path, s3)
    assert checks[0].status == "WARN" and "needs at most 3d" in checks[0].message
    assert code == 0
    s3.client.put_bucket_policy(Bucket="acme-reports", Policy=json.dumps(hand_written(DAY_MS)))
    checks, code = guardrails(tmp_path, s3)
    assert checks[0].status == "FAIL" and "stop working early" in checks[0].message
    assert code == 1


def test_refused_get_bucket_policy_warns_once(s3: S3, moto_endpoint: str, tmp_path: Path) -> None:
    """GetBucketPolicy refused (AccessDenied, from the fault proxy): one WARN saying the
    guardrails were not checked; the rest of doctor goes on."""
    s3.bucket("acme-reports", {"reports/q3/a.pdf": b"a"})
    manifest = load_manifest(write_manifest(tmp_path / "m.yml", MANIFEST))
    with fault_proxy(moto_endpoint) as proxy:
        proxy.add("denied", path="/acme-reports", query="policy", times=None)
        diagnosis = diagnose(manifest, connection=Connection(endpoint_url=proxy.url))
        assert any(s.fault == "denied" for s in proxy.seen)
    (check,) = [c for c in diagnosis.checks if c.name == "guardrails"]
    assert check.status == "WARN"
    assert check.message.startswith("cannot read the bucket policy (AccessDenied")
    assert any(c.name == "listing" and c.status == "OK" for c in diagnosis.checks)


def test_ip_denies_and_oac_are_judged_on_the_live_policy(s3: S3, tmp_path: Path) -> None:
    """Resolved grants (a link: s3 recipient with allow_ips, a link: cloudfront one): with the
    printed policy every guardrail is OK; with the IP deny and the OAC statement taken out,
    those two WARN and name the prefix and the distribution."""
    s3.bucket(BUCKET, {"partners/globex/a.pdf": b"a", "films/f.mp4": b"f"})
    grants = (
        grant("globex", ("partners/globex/",), allow_ips=("203.0.113.0/24",)),
        grant("initech", ("films/",), cloudfront="d111111abcdef8.cloudfront.net"),
    )
    resolved = manifest(*grants)
    document = bucket_policy(resolved, None, now=datetime.now(UTC)).document
    s3.client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(document))
    connection = Connection(endpoint_url=s3.endpoint)
    checks = [c for c in diagnose(resolved, connection=connection).checks if c.name == "guardrails"]
    assert [c.status for c in checks] == ["OK"] * 5
    assert "presigned GETs of partners/globex/ (q3/globex) denied from outside" in checks[3].message

    kept = [
        s
        for s in document["Statement"]
        if not s["Sid"].startswith(("sharebatch-ip-", "sharebatch-oac-"))
    ]
    s3.client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({**document, "Statement": kept}))
    checks = [c for c in diagnose(resolved, connection=connection).checks if c.name == "guardrails"]
    assert [c.status for c in checks] == ["OK", "OK", "OK", "WARN", "WARN"]
    assert "partners/globex/" in checks[3].message and "not denied" in checks[3].message
    assert DISTRIBUTION in checks[4].message and "films/" in checks[4].message
