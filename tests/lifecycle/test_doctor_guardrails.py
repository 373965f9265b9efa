"""doctor's guardrails checks: the live bucket policy (moto stores it) read back and judged by
meaning against what ``sharebatch policy`` would write for the manifest. Missing guardrails
WARN; an age limit below the manifest's links FAILs, since it would refuse them early."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sharebatch.lifecycle.doctor import Check, diagnose
from sharebatch.manifest.load import load_manifest
from sharebatch.models import Connection
from tests.support.grants import policy_of
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
