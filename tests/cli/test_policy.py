"""`sharebatch policy MANIFEST`: the bucket policy JSON on stdout, notes on stderr, exit 2 for
what it cannot do (several buckets and none chosen, a file that is no policy, a CloudFront
grant without its distribution's ARN), and nothing on stdout then.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from sharebatch.cli import app
from tests.support.policylint import policy_problems
from tests.support.s3 import write_manifest

ONE_BUCKET = """\
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
      - id: initech
        upload:
          prefix: inbox/initech/
          max_size: 1MB
          expires_in: 5d
"""

TWO_BUCKETS = """\
version: 1
defaults:
  region: eu-west-1
  expires_in: 1d
jobs:
  - name: q3
    bucket: acme-reports
    prefixes: [reports/q3/]
    recipients:
      - id: globex
  - name: weekly
    bucket: acme-weekly
    expires_in: 2d
    prefixes: [weekly/]
    recipients:
      - id: initech
"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["policy", *args], catch_exceptions=False)


def statements(stdout: str) -> dict[str, dict[str, Any]]:
    document = json.loads(stdout)
    assert document["Version"] == "2012-10-17"
    return {s["Sid"]: s for s in document["Statement"]}


def age_ms(statement: dict[str, Any]) -> int:
    return int(statement["Condition"]["NumericGreaterThan"]["s3:signatureAge"])


def test_one_bucket_prints_its_policy(tmp_path: Path) -> None:
    """One bucket: its three guardrails, the age limit from the 5-day upload slot, exit 0."""
    manifest = write_manifest(tmp_path / "m.yml", ONE_BUCKET)
    result = invoke(str(manifest))
    assert result.exit_code == 0, result.output
    found = statements(result.stdout)
    assert list(found) == [
        "sharebatch-max-signature-age",
        "sharebatch-sigv4-only",
        "sharebatch-https-only",
    ]
    assert age_ms(found["sharebatch-max-signature-age"]) == (5 * 86400 + 60) * 1000
    assert result.stderr == ""
    assert policy_problems(json.loads(result.stdout)) == []


def test_several_buckets_need_one_chosen(tmp_path: Path) -> None:
    """Two buckets and no --bucket: exit 2 naming both, nothing on stdout; --bucket picks one,
    whose limit comes from its own jobs only; an unknown bucket is exit 2 too."""
    manifest = write_manifest(tmp_path / "m.yml", TWO_BUCKETS)
    refused = invoke(str(manifest))
    assert refused.exit_code == 2
    assert refused.stdout == ""
    assert "acme-reports, acme-weekly" in refused.stderr and "--bucket" in refused.stderr
    weekly = invoke(str(manifest), "--bucket", "acme-weekly")
    assert weekly.exit_code == 0, weekly.output
    found = statements(weekly.stdout)
    assert age_ms(found["sharebatch-max-signature-age"]) == (2 * 86400 + 60) * 1000
    assert found["sharebatch-https-only"]["Resource"][0] == "arn:aws:s3:::acme-weekly"
    unknown = invoke(str(manifest), "--bucket", "acme-other")
    assert unknown.exit_code == 2 and unknown.stdout == ""


def test_existing_policy_is_merged(tmp_path: Path) -> None:
    """--existing: their statements first and unchanged, ours replaced (an old one of ours
    dropped); the whole get-bucket-policy answer is read as well as the bare policy."""
    theirs = {
        "Sid": "Audit",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::1:root"},
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::acme-reports/audit/*",
    }
    stale = {
        "Sid": "sharebatch-ip-abc",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::acme-reports/old/*",
    }
    current = {"Version": "2012-10-17", "Statement": [stale, theirs]}
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"Policy": json.dumps(current)}), encoding="utf-8")
    manifest = write_manifest(tmp_path / "m.yml", ONE_BUCKET)
    result = invoke(str(manifest), "--existing", str(answer))
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["Statement"][0] == theirs
    assert [s["Sid"] for s in document["Statement"]] == [
        "Audit",
        "sharebatch-max-signature-age",
        "sharebatch-sigv4-only",
        "sharebatch-https-only",
    ]


def test_existing_file_that_is_no_policy_is_exit_2(tmp_path: Path) -> None:
    """A file that is no policy (here a bucket's tagging): exit 2, nothing printed."""
    other = tmp_path / "tags.json"
    other.write_text('{"TagSet": []}', encoding="utf-8")
    manifest = write_manifest(tmp_path / "m.yml", ONE_BUCKET)
    result = invoke(str(manifest), "--existing", str(other))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "not a bucket policy: no Statement" in result.stderr


def test_expires_at_is_counted_from_as_of(tmp_path: Path) -> None:
    """An expires_at grant's lifetime is its distance from --as-of."""
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    as_of = at - timedelta(days=2, hours=1)
    text = ONE_BUCKET.replace("  expires_in: 3d\n", f"  expires_at: '{at.isoformat()}'\n")
    text = text.replace("expires_in: 5d", "expires_in: 1h")
    manifest = write_manifest(tmp_path / "m.yml", text)
    result = invoke(str(manifest), "--as-of", as_of.strftime("%Y-%m-%dT%H:%M:%S"))
    assert result.exit_code == 0, result.output
    found = statements(result.stdout)
    assert age_ms(found["sharebatch-max-signature-age"]) == (2 * 86400 + 3600 + 60) * 1000


def cloudfront_manifest(tmp_path: Path, arn_line: str) -> Path:
    """A manifest with a CloudFront job (its key file 0600) and an IP-restricted s3 job."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "cf.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pem.chmod(0o600)
    text = f"""\
version: 1
defaults:
  bucket: acme-reports
  region: eu-west-1
  expires_in: 3d
jobs:
  - name: films
    link: cloudfront
    expires_in: 30d
    cloudfront:
      domain: d111111abcdef8.cloudfront.net
      key_pair_id: K2JCJMDEHXQW5F
      private_key: {{file: {pem}}}
      max_expires_in: 90d
{arn_line}    prefixes: [films/]
    recipients:
      - id: globex
  - name: q3
    prefixes: [reports/q3/]
    recipients:
      - id: initech
        allow_ips: [203.0.113.0/24]
        prefixes: [partners/initech/]
      - id: hooli
"""
    return write_manifest(tmp_path / "m.yml", text)


def test_cloudfront_and_allow_ips_from_the_manifest(tmp_path: Path) -> None:
    """link: cloudfront gives the OAC statement for its distribution; initech's own prefix
    gets an IP deny; reports/q3/, which hooli reads from anywhere, is left out and stderr
    says so; the 30-day CloudFront links do not raise the age limit above the 3-day links."""
    arn = "arn:aws:cloudfront::111122223333:distribution/EDFDVBD6EXAMPLE"
    manifest = cloudfront_manifest(tmp_path, f"      distribution_arn: {arn}\n")
    result = invoke(str(manifest))
    assert result.exit_code == 0, result.output
    found = statements(result.stdout)
    assert age_ms(found["sharebatch-max-signature-age"]) == (3 * 86400 + 60) * 1000
    (oac,) = [s for sid, s in found.items() if sid.startswith("sharebatch-oac-")]
    assert oac["Condition"] == {"StringEquals": {"AWS:SourceArn": arn}}
    assert oac["Resource"] == ["arn:aws:s3:::acme-reports/films/*"]
    (ip,) = [s for sid, s in found.items() if sid.startswith("sharebatch-ip-")]
    assert ip["Resource"] == "arn:aws:s3:::acme-reports/partners/initech/*"
    assert ip["Condition"]["NotIpAddress"] == {"aws:SourceIp": ["203.0.113.0/24"]}
    assert "prefix reports/q3/" in result.stderr and "q3/hooli" in result.stderr
    assert policy_problems(json.loads(result.stdout)) == []


def test_cloudfront_without_distribution_arn_is_exit_2(tmp_path: Path) -> None:
    """No cloudfront.distribution_arn: exit 2 naming the job, recipient and field; nothing
    printed."""
    manifest = cloudfront_manifest(tmp_path, "")
    result = invoke(str(manifest))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "job films, recipient globex: cloudfront.distribution_arn" in result.stderr
