"""doctor's logging check: is S3 server access logging on for each bucket, and where do the
logs go? Receipts (``sharebatch usage``) read them, so without logging doctor WARNs and gives
the one-line fix. Logs must land where no recipient reads or writes: under no prefix any job of
the manifest shares (in any bucket) and in no upload folder, else doctor FAILs.

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


# Two stores: acme-shared holds a download prefix of its own and two upload folders, one open
# (a POST form: any file name) and one of fixed names (PUT URLs).
TWO_BUCKETS = """\
version: 1
defaults:
  region: eu-west-1
  expires_in: 3d
jobs:
  - name: q3
    bucket: acme-reports
    prefixes: [reports/q3/]
    recipients:
      - id: globex
  - name: shared-area
    bucket: acme-shared
    prefixes: [partners/]
    recipients:
      - id: initech
        upload:
          prefix: inbox/initech/
          max_size: 1MB
      - id: hooli
        upload:
          prefix: inbox/hooli/
          keys: [signed.pdf]
          max_size: 1MB
          content_types: [application/pdf]
"""


def logging_check(
    tmp_path: Path, endpoint: str, text: str = MANIFEST, bucket: str = "acme-reports"
) -> tuple[Check, int]:
    """The logging check of ``bucket`` in a doctor run on ``text``, and doctor's exit code."""
    manifest = load_manifest(write_manifest(tmp_path / "m.yml", text))
    diagnosis = diagnose(manifest, connection=Connection(endpoint_url=endpoint))
    (check,) = [c for c in diagnosis.checks if c.name == "logging" and c.subject == bucket]
    return check, diagnosis.exit_code


def two_buckets(s3: S3) -> None:
    """The buckets of TWO_BUCKETS, each with one object."""
    s3.bucket("acme-reports", {"reports/q3/a.pdf": b"a"})
    s3.bucket("acme-shared", {"partners/x.pdf": b"x"})


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
    assert "inside the prefix reports/q3/ that job q3 shares" in check.message
    turn_on_logging(s3, "acme-reports", "acme-reports", "access-logs/")
    check, code = logging_check(tmp_path, s3.endpoint)
    assert check.status == "WARN" and code == 0
    assert "into the bucket they log" in check.message


def test_logs_under_another_buckets_shared_prefix_fail(s3: S3, tmp_path: Path) -> None:
    """acme-reports logging into acme-shared/partners/logs/, which job shared-area hands to
    its recipients: FAIL, naming the job and its prefix (a hostile review's reproduction)."""
    two_buckets(s3)
    turn_on_logging(s3, "acme-reports", "acme-shared", "partners/logs/")
    check, code = logging_check(tmp_path, s3.endpoint, TWO_BUCKETS)
    assert (check.status, code) == ("FAIL", 1)
    assert check.message.startswith(
        "server access logs go to s3://acme-shared/partners/logs/, inside the prefix partners/"
        " that job shared-area shares: its runs would hand recipients the logs"
    )


def test_logs_over_a_shared_prefix_fail(s3: S3, tmp_path: Path) -> None:
    """Logs whose prefix holds a shared prefix (here the whole bucket): FAIL as well."""
    two_buckets(s3)
    turn_on_logging(s3, "acme-reports", "acme-shared", "")
    check, code = logging_check(tmp_path, s3.endpoint, TWO_BUCKETS)
    assert (check.status, code) == ("FAIL", 1)
    assert "over the prefix partners/ that job shared-area shares" in check.message


def test_logs_over_an_open_upload_folder_fail_saying_why(s3: S3, tmp_path: Path) -> None:
    """Logs over or inside a POST upload folder: the form takes any file name, so the
    recipient could upload fake log files that usage would count as receipts: FAIL."""
    two_buckets(s3)
    for prefix in ("inbox/", "inbox/initech/logs/"):
        turn_on_logging(s3, "acme-reports", "acme-shared", prefix)
        check, code = logging_check(tmp_path, s3.endpoint, TWO_BUCKETS)
        assert (check.status, code) == ("FAIL", 1), prefix
        assert (
            "the upload folder inbox/initech/ of recipient initech (job shared-area), whose"
            " upload form takes any file name: initech could upload fake log files that"
            " sharebatch usage would count as receipts"
        ) in check.message, prefix


def test_logs_meeting_a_fixed_name_upload_folder_fail(s3: S3, tmp_path: Path) -> None:
    """A PUT slot's file landing among the logs would be read as log records; logs inside
    the slot's folder would be listed by inbox as the recipient's uploads: both FAIL."""
    two_buckets(s3)
    turn_on_logging(s3, "acme-reports", "acme-shared", "inbox/hooli/")
    check, code = logging_check(tmp_path, s3.endpoint, TWO_BUCKETS)
    assert (check.status, code) == ("FAIL", 1)
    assert (
        "the upload folder inbox/hooli/ of recipient hooli (job shared-area), whose upload"
        " URL writes inbox/hooli/signed.pdf among the logs: sharebatch usage would read"
        " hooli's file as log records"
    ) in check.message
    turn_on_logging(s3, "acme-reports", "acme-shared", "inbox/hooli/logs/")
    check, code = logging_check(tmp_path, s3.endpoint, TWO_BUCKETS)
    assert (check.status, code) == ("FAIL", 1)
    assert (
        "inside the upload folder inbox/hooli/ of recipient hooli (job shared-area):"
        " sharebatch inbox would list the logs as hooli's uploads"
    ) in check.message


def test_logs_in_a_shared_bucket_outside_what_it_shares_warn(s3: S3, tmp_path: Path) -> None:
    """Logs into a bucket the manifest shares, apart from every shared prefix and upload
    folder: a WARN (one prefix added later would expose them), exit 0."""
    two_buckets(s3)
    turn_on_logging(s3, "acme-reports", "acme-shared", "access-logs/")
    check, code = logging_check(tmp_path, s3.endpoint, TWO_BUCKETS)
    assert (check.status, code) == ("WARN", 0)
    assert check.message.startswith(
        "server access logs go to s3://acme-shared/access-logs/, into a bucket the manifest"
        " shares (job shared-area)"
    )
