"""doctor's logging check: is S3 server access logging on for each bucket, and where do the
logs go? Receipts (``sharebatch usage``) read them, so without logging doctor WARNs and gives
the one-line fix.

moto stores a bucket's logging configuration (and checks the target bucket's policy for the
logging service, as S3 does); a refused GetBucketLogging comes from the tests' fault proxy.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from sharebatch.lifecycle.doctor import Check, diagnose
from sharebatch.manifest.load import load_manifest
from sharebatch.models import Connection
from tests.support.faultproxy import fault_proxy
from tests.support.s3 import S3, write_manifest
from tests.support.s3logging import logging_policy, turn_on_logging

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


def logging_check(tmp_path: Path, endpoint: str) -> tuple[Check, int]:
    """The one logging check of a doctor run on MANIFEST, and doctor's exit code."""
    manifest = load_manifest(write_manifest(tmp_path / "m.yml", MANIFEST))
    diagnosis = diagnose(manifest, connection=Connection(endpoint_url=endpoint))
    (check,) = [c for c in diagnosis.checks if c.name == "logging"]
    return check, diagnosis.exit_code


def test_logging_on_says_where_the_logs_go(s3: S3, tmp_path: Path) -> None:
    """Logging into another bucket: OK, naming s3://target/prefix and the usage command."""
    s3.bucket("acme-reports", {"reports/q3/a.pdf": b"a"})
    turn_on_logging(s3, "acme-reports", "acme-logs", "acme-reports/")
    check, code = logging_check(tmp_path, s3.endpoint)
    assert (check.status, check.subject) == ("OK", "acme-reports")
    assert check.message == (
        "server access logs go to s3://acme-logs/acme-reports/ (best effort, within hours);"
        " receipts: sharebatch usage OUT/<run-id> --access-logs s3://acme-logs/acme-reports/"
    )
    assert code == 0


def test_logging_off_warns_with_the_fix_that_works(s3: S3, tmp_path: Path) -> None:
    """No logging: WARN that receipts are impossible, with a put-bucket-logging line; that
    line's configuration, run against S3, turns logging on and the check passes."""
    s3.bucket("acme-reports", {"reports/q3/a.pdf": b"a"})
    check, code = logging_check(tmp_path, s3.endpoint)
    assert (check.status, check.subject) == ("WARN", "acme-reports")
    assert check.message.startswith(
        "server access logging is off: receipts (sharebatch usage) are impossible"
    )
    assert code == 0  # a WARN: the run can still go
    command = shlex.split(check.message.split("turn it on: ", 1)[1])
    assert command[:5] == ["aws", "s3api", "put-bucket-logging", "--bucket", "acme-reports"]
    assert command[5] == "--bucket-logging-status"
    status = json.loads(command[6])
    assert status == {
        "LoggingEnabled": {"TargetBucket": "LOGS-BUCKET", "TargetPrefix": "acme-reports/"}
    }
    # What the operator does with it: a real logs bucket in place of the placeholder.
    status["LoggingEnabled"]["TargetBucket"] = "acme-logs"
    s3.bucket("acme-logs", {})
    s3.client.put_bucket_policy(
        Bucket="acme-logs", Policy=logging_policy("acme-logs", "acme-reports/")
    )
    s3.client.put_bucket_logging(Bucket=command[4], BucketLoggingStatus=status)
    after, _ = logging_check(tmp_path, s3.endpoint)
    assert after.status == "OK" and "s3://acme-logs/acme-reports/" in after.message


def test_a_refused_get_bucket_logging_warns_naming_the_permission(
    s3: S3, tmp_path: Path, moto_endpoint: str
) -> None:
    """S3 refusing GetBucketLogging alone: a WARN naming s3:GetBucketLogging, exit 0."""
    s3.bucket("acme-reports", {"reports/q3/a.pdf": b"a"})
    with fault_proxy(moto_endpoint) as proxy:
        proxy.add("denied", path="/acme-reports", query="logging", times=None)
        check, code = logging_check(tmp_path, proxy.url)
        refused = [s for s in proxy.seen if s.fault == "denied"]
    assert check == Check(
        "WARN",
        "logging",
        "acme-reports",
        "cannot read server access logging (AccessDenied): the role needs"
        " s3:GetBucketLogging for this check; receipts need logging on",
    )
    assert len(refused) == 1 and code == 0  # only the logging request was refused


def test_logs_inside_a_shared_prefix_fail(s3: S3, tmp_path: Path) -> None:
    """Logs written into the bucket under a prefix the manifest shares would be handed to
    recipients with the next run: FAIL; into the bucket elsewhere: WARN."""
    s3.bucket("acme-reports", {"reports/q3/a.pdf": b"a"})
    turn_on_logging(s3, "acme-reports", "acme-reports", "reports/q3/logs/")
    check, code = logging_check(tmp_path, s3.endpoint)
    assert check.status == "FAIL" and code == 1
    assert "inside the shared prefix reports/q3/" in check.message
    turn_on_logging(s3, "acme-reports", "acme-reports", "access-logs/")
    check, code = logging_check(tmp_path, s3.endpoint)
    assert check.status == "WARN" and code == 0
    assert "into the bucket they log" in check.message
