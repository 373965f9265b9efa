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
    """--existing: their statements first and unchanged, ours replaced (an old one of this
    manifest's scope, m, dropped); the whole get-bucket-policy answer is read as well as the
    bare policy."""
    theirs = {
        "Sid": "Audit",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::1:root"},
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::acme-reports/audit/*",
    }
    stale = {
        "Sid": "sharebatch-m-ip-0123456789ab",
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


def test_scope_and_lower_age(tmp_path: Path) -> None:
    """Two manifests on one bucket: the weekly one (7-day links, an IP-restricted recipient,
    printed with --scope weekly) is live; the daily one's policy (its file's stem: daily) keeps
    the weekly IP deny and the 7-day limit, saying so on stderr; --lower-age prints the
    daily 1-day limit instead; a --scope that is not letters and digits is exit 2."""
    weekly = write_manifest(
        tmp_path / "weekly.yml",
        ONE_BUCKET.replace("expires_in: 3d", "expires_in: 7d").replace(
            "      - id: globex\n",
            "      - id: globex\n        allow_ips: [203.0.113.0/24]\n"
            "        prefixes: [partners/globex/]\n",
        ),
    )
    printed = invoke(str(weekly), "--scope", "weekly")
    assert printed.exit_code == 0, printed.output
    (ip,) = [sid for sid in statements(printed.stdout) if sid.startswith("sharebatch-weekly-ip-")]
    live = tmp_path / "live.json"
    live.write_text(printed.stdout, encoding="utf-8")
    daily = write_manifest(
        tmp_path / "daily.yml",
        ONE_BUCKET.replace("expires_in: 3d", "expires_in: 1d").replace(
            "expires_in: 5d", "expires_in: 1h"
        ),
    )
    kept = invoke(str(daily), "--existing", str(live))
    assert kept.exit_code == 0, kept.output
    found = statements(kept.stdout)
    assert ip in found and age_ms(found["sharebatch-max-signature-age"]) == (7 * 86400 + 60) * 1000
    assert "kept the existing sharebatch-max-signature-age of 7d1m" in kept.stderr
    lowered = invoke(str(daily), "--existing", str(live), "--lower-age")
    assert lowered.exit_code == 0, lowered.output
    assert age_ms(statements(lowered.stdout)["sharebatch-max-signature-age"]) == 86460 * 1000
    assert "lowered from 7d1m" in lowered.stderr
    refused = invoke(str(daily), "--scope", "q3-daily")
    assert refused.exit_code == 2 and refused.stdout == ""
    assert "--scope q3-daily: use 1 to 32 letters and digits" in refused.stderr


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
    (oac,) = [s for sid, s in found.items() if sid.startswith("sharebatch-m-oac-")]
    assert oac["Condition"] == {"StringEquals": {"AWS:SourceArn": arn}}
    assert oac["Resource"] == ["arn:aws:s3:::acme-reports/films/*"]
    (ip,) = [s for sid, s in found.items() if sid.startswith("sharebatch-m-ip-")]
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


def test_policy_needs_no_private_key(tmp_path: Path) -> None:
    """The policy holds nothing of the CloudFront key, and whoever applies it rarely has it
    (an {env: ...} key may be set only for runs): with the key file gone, or readable by
    everyone, ``sharebatch policy`` still prints the OAC statement (review R1); a key location
    that is wrong as written (file and env both) is still exit 2."""
    arn = "arn:aws:cloudfront::111122223333:distribution/EDFDVBD6EXAMPLE"
    manifest = cloudfront_manifest(tmp_path, f"      distribution_arn: {arn}\n")
    (tmp_path / "cf.pem").chmod(0o644)
    loose = invoke(str(manifest))
    assert loose.exit_code == 0, loose.stderr
    (tmp_path / "cf.pem").unlink()
    result = invoke(str(manifest))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == loose.stdout
    (oac,) = [s for s in statements(result.stdout).values() if s["Principal"] != "*"]
    assert oac["Condition"] == {"StringEquals": {"AWS:SourceArn": arn}}
    text = manifest.read_text(encoding="utf-8")
    both = text.replace("private_key: {file: ", "private_key: {env: SHAREBATCH_CF_KEY, file: ")
    manifest.write_text(both, encoding="utf-8")
    refused = invoke(str(manifest))
    assert refused.exit_code == 2 and refused.stdout == ""
    assert "private_key needs exactly one of file and env" in refused.stderr
