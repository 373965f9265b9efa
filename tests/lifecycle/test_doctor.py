"""`sharebatch doctor`: one OK/WARN/FAIL line per preflight check, against a real HTTP S3.

moto serves STS GetCallerIdentity, HeadBucket, GetPublicAccessBlock, GetBucketEncryption and
ListObjectsV2; refusals and a skewed server clock come from a small S3 stand-in of the tests'
own, because moto grants everything and shares the local clock.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.lifecycle.doctor import credential_kind, diagnose
from sharebatch.models import Connection, Credentials
from tests.support.grants import policy_of
from tests.support.linkkit import serve
from tests.support.s3 import ACCESS_KEY, REGION, S3, SECRET_KEY, write_manifest
from tests.support.s3logging import turn_on_logging

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
        prefixes: [partners/globex/]
  - name: weekly
    expires_in: 7d
    prefixes: [weekly/]
    recipients:
      - id: initech
"""

FILES = {
    "reports/q3/a.pdf": b"a",
    "partners/globex/s.csv": b"s",
    "weekly/w.csv": b"w",
}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def checks(result: Any) -> dict[tuple[str, str], dict[str, str]]:
    """--json output keyed by (check, subject)."""
    data = json.loads(result.stdout)
    return {(c["name"], c["subject"]): c for c in data["checks"]}


def private_bucket(s3: S3) -> None:
    """The bucket as the recipe wants it: Block Public Access fully on, default encryption,
    server access logs going to a bucket of their own (receipts read them), and the bucket
    policy ``sharebatch policy`` prints for MANIFEST (moto stores it, and enforces none)."""
    s3.bucket("acme-reports", FILES)
    policy = policy_of(MANIFEST, datetime.now(UTC))
    s3.client.put_bucket_policy(Bucket="acme-reports", Policy=json.dumps(policy))
    turn_on_logging(s3, "acme-reports", "acme-logs", "acme/")
    s3.client.put_public_access_block(
        Bucket="acme-reports",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.client.put_bucket_encryption(
        Bucket="acme-reports",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )


@pytest.fixture
def sts(s3: S3, monkeypatch: pytest.MonkeyPatch) -> S3:
    """STS calls go to the moto server too (the standard AWS_ENDPOINT_URL_STS setting)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", s3.endpoint)
    return s3


def test_every_check_passes_for_a_private_bucket(sts: S3, tmp_path: Path) -> None:
    """A private, encrypted bucket with every prefix listable: all OK, exit 0, one line each."""
    private_bucket(sts)
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    result = invoke("doctor", str(manifest), "--endpoint-url", sts.endpoint, "--json")
    assert result.exit_code == 0, result.output
    found = checks(result)
    assert {c["status"] for c in found.values()} == {"OK"}
    assert sorted(found) == sorted(
        [
            ("credentials", ""),
            ("clock", sts.endpoint),
            ("region", "acme-reports"),
            ("public-access", "acme-reports"),
            ("encryption", "acme-reports"),
            ("logging", "acme-reports"),
            ("guardrails", "acme-reports"),
            ("listing", "acme-reports/reports/q3/"),
            ("listing", "acme-reports/partners/globex/"),
            ("listing", "acme-reports/weekly/"),
            ("expiry", "q3"),
            ("expiry", "weekly"),
        ]
    )
    guardrails = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "guardrails"]
    assert [c["message"].split(" ", 1)[0] for c in guardrails] == [
        "presigned",
        "requests",
        "requests",
    ]
    credentials = found[("credentials", "")]["message"]
    assert credentials.startswith("arn:aws:sts::123456789012:user/moto: long-term key from env")
    assert "no expiry" in credentials
    assert found[("region", "acme-reports")]["message"] == "eu-west-1, as configured"
    assert "SSE-S3" in found[("encryption", "acme-reports")]["message"]
    assert "up to 7d, within the SigV4 limit of 7d" in found[("expiry", "weekly")]["message"]

    text = invoke("doctor", str(manifest), "--endpoint-url", sts.endpoint)
    lines = text.stdout.splitlines()
    assert len(lines) == len(json.loads(result.stdout)["checks"]) + 1
    assert lines[0].startswith("OK    credentials    arn:aws:sts::123456789012:user/moto")
    assert "OK    listing        acme-reports/weekly/: listing allowed" in lines
    assert lines[-1] == "doctor: 0 FAIL, 0 WARN: ready to run"


def test_open_unencrypted_bucket_and_empty_prefix_warn(sts: S3, tmp_path: Path) -> None:
    """Block Public Access not fully on, no default encryption, an empty prefix: WARN, exit 0."""
    sts.bucket("acme-reports", {"reports/q3/a.pdf": b"a", "weekly/w.csv": b"w"})
    sts.client.put_public_access_block(
        Bucket="acme-reports",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": False,
        },
    )
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    result = invoke("doctor", str(manifest), "--endpoint-url", sts.endpoint, "--json")
    assert result.exit_code == 0
    found = checks(result)
    public = found[("public-access", "acme-reports")]
    assert public["status"] == "WARN"
    assert public["message"].endswith("BlockPublicPolicy, RestrictPublicBuckets off")
    assert found[("encryption", "acme-reports")]["status"] == "WARN"
    empty = found[("listing", "acme-reports/partners/globex/")]
    assert (empty["status"], empty["message"]) == (
        "WARN",
        "listing allowed, but nothing is there yet",
    )
    assert json.loads(result.stdout)["status"] == "WARN"


def test_no_public_access_block_and_kms_encryption(sts: S3, tmp_path: Path) -> None:
    """No Block Public Access configuration warns; SSE-KMS is OK and names the key to decrypt."""
    sts.bucket("acme-reports", FILES)
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd"
    sts.client.put_bucket_encryption(
        Bucket="acme-reports",
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key,
                    }
                }
            ]
        },
    )
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    found = checks(invoke("doctor", str(manifest), "--endpoint-url", sts.endpoint, "--json"))
    public = found[("public-access", "acme-reports")]
    assert public["status"] == "WARN" and "not configured" in public["message"]
    encryption = found[("encryption", "acme-reports")]
    assert encryption["status"] == "OK"
    assert encryption["message"] == f"default encryption aws:kms with {key}: the signer needs" + (
        " kms:Decrypt on it"
    )


def test_region_mismatch_fails(sts: S3, tmp_path: Path) -> None:
    """A bucket in another region than configured is a FAIL (its links would not work)."""
    west = boto3.client(
        "s3",
        endpoint_url=sts.endpoint,
        region_name="us-west-2",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    west.create_bucket(
        Bucket="acme-reports", CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    west.close()
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    result = invoke("doctor", str(manifest), "--endpoint-url", sts.endpoint, "--json")
    assert result.exit_code == 1
    region = checks(result)[("region", "acme-reports")]
    assert region["status"] == "FAIL"
    assert region["message"] == (
        "in us-west-2 but configured eu-west-1: links signed for eu-west-1 fail"
    )


def test_missing_bucket_fails(sts: S3, tmp_path: Path) -> None:
    """A bucket that does not exist is a FAIL, and its other checks are not attempted."""
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    result = invoke("doctor", str(manifest), "--endpoint-url", sts.endpoint, "--json")
    assert result.exit_code == 1
    found = checks(result)
    assert found[("region", "acme-reports")]["status"] == "FAIL"
    assert found[("region", "acme-reports")]["message"] == "the bucket does not exist"
    skipped = ("listing", "public-access", "encryption", "logging")
    assert not [key for key in found if key[0] in skipped]


class _Stingy(BaseHTTPRequestHandler):
    """An S3 and STS stand-in: the bucket exists in eu-west-1, every read is AccessDenied.

    Its clock (the Date header) runs ``skew`` ahead; STS rejects the key when ``sts_code`` is
    set, as AWS does for a deleted access key.
    """

    skew = timedelta(0)
    sts_code: str | None = None

    def date_time_string(self, timestamp: float | None = None) -> str:
        return format_datetime(datetime.now(UTC) + self.skew, usegmt=True)

    def _reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("x-amz-bucket-region", "eu-west-1")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._reply(200)

    def do_GET(self) -> None:
        self._reply(
            403,
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
            b"<Message>Access Denied</Message></Error>",
        )

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.sts_code is None:
            body = (
                "<GetCallerIdentityResponse><GetCallerIdentityResult>"
                "<Arn>arn:aws:iam::123456789012:user/ops</Arn><UserId>AIDA</UserId>"
                "<Account>123456789012</Account></GetCallerIdentityResult>"
                "</GetCallerIdentityResponse>"
            )
            self._reply(200, body.encode())
        else:
            body = (
                f"<ErrorResponse><Error><Type>Sender</Type><Code>{self.sts_code}</Code>"
                "<Message>The security token included in the request is invalid.</Message>"
                "</Error></ErrorResponse>"
            )
            self._reply(403, body.encode())

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Stingy:
    endpoint: str
    handler: type[_Stingy]


@pytest.fixture
def stingy(monkeypatch: pytest.MonkeyPatch, credentials: None) -> Iterator[Stingy]:
    """Run a fresh ``_Stingy`` subclass (so tests can set its skew) as both S3 and STS."""

    class Handler(_Stingy):
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", endpoint)
    yield Stingy(endpoint, Handler)
    server.shutdown()
    server.server_close()
    thread.join()


def test_denied_listing_fails_and_unreadable_settings_warn(stingy: Stingy, tmp_path: Path) -> None:
    """S3 refusing ListObjectsV2 is a FAIL per prefix; unreadable bucket settings only WARN."""
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    endpoint = stingy.endpoint
    result = invoke("doctor", str(manifest), "--endpoint-url", endpoint, "--json")
    assert result.exit_code == 1
    found = checks(result)
    listing = found[("listing", "acme-reports/weekly/")]
    assert listing == {
        "status": "FAIL",
        "name": "listing",
        "subject": "acme-reports/weekly/",
        "message": "listing refused (AccessDenied: Access Denied)",
    }
    assert found[("public-access", "acme-reports")]["message"] == (
        "cannot read Block Public Access (AccessDenied)"
    )
    assert found[("encryption", "acme-reports")]["status"] == "WARN"
    assert found[("logging", "acme-reports")]["status"] == "WARN"
    assert "s3:GetBucketLogging" in found[("logging", "acme-reports")]["message"]
    assert found[("credentials", "")]["message"].startswith("arn:aws:iam::123456789012:user/ops")
    assert invoke("doctor", str(manifest), "--endpoint-url", endpoint).stdout.endswith(
        "not ready to run\n"
    )


def reported_skew(message: str) -> int:
    """Seconds in "local clock is 19m59s ahead of S3...": the check's own reading of the skew."""
    found = re.match(r"local clock is (?:(\d+)m)?(?:(\d+)s)? ", message)
    assert found, message
    return int(found[1] or 0) * 60 + int(found[2] or 0)


@pytest.mark.parametrize(
    ("skew", "status", "words"),
    [
        (timedelta(minutes=-20), "FAIL", "ahead of S3: S3 refuses requests signed 15 min off"),
        (timedelta(minutes=5), "WARN", "behind S3: links live shorter or start late; use NTP"),
    ],
)
def test_clock_skew_is_read_from_the_date_header(
    stingy: Stingy, tmp_path: Path, skew: timedelta, status: str, words: str
) -> None:
    """The local clock is compared with S3's Date header: minutes off WARN, past 15 min FAIL."""
    stingy.handler.skew = skew
    endpoint = stingy.endpoint
    result = invoke("doctor", "--endpoint-url", endpoint, "--json")
    clock = checks(result)[("clock", endpoint)]
    assert clock["status"] == status
    assert clock["message"].endswith(words)
    # The Date header counts whole seconds, and the request takes time: a second either way.
    assert abs(reported_skew(clock["message"]) - abs(skew.total_seconds())) <= 2
    assert result.exit_code == (1 if status == "FAIL" else 0)


def test_skewed_local_clock_against_moto(sts: S3) -> None:
    """The same check from the other side: a local clock 20 minutes fast is a FAIL."""
    diagnosis = diagnose(
        connection=Connection(endpoint_url=sts.endpoint),
        clock=lambda: datetime.now(UTC) + timedelta(minutes=20),
    )
    clock = next(c for c in diagnosis.checks if c.name == "clock")
    assert clock.status == "FAIL" and " ahead of S3" in clock.message
    assert abs(reported_skew(clock.message) - 1200) <= 2
    assert diagnosis.exit_code == 1


def test_rejected_credentials_fail(stingy: Stingy, tmp_path: Path) -> None:
    """Credentials STS rejects are a FAIL naming the error code, never the key."""
    stingy.handler.sts_code = "InvalidClientTokenId"
    endpoint = stingy.endpoint
    result = invoke("doctor", "--endpoint-url", endpoint)
    assert result.exit_code == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith("FAIL  credentials    STS rejected the credentials")
    assert "InvalidClientTokenId" in first
    assert SECRET_KEY not in result.output


def test_no_credentials_fail_without_a_traceback(moto_endpoint: str, tmp_path: Path) -> None:
    """Without credentials doctor still answers: a FAIL line, the clock check, exit 1."""
    result = invoke("doctor", "--endpoint-url", moto_endpoint)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL  credentials    no AWS credentials found")
    assert lines[1].startswith("OK    clock")
    assert "Traceback" not in result.output


def test_session_credentials_of_unknown_expiry_warn(
    sts: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session credentials (a token, no known expiry) are named as such and WARN."""
    client = boto3.client(
        "sts",
        endpoint_url=sts.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    token = client.get_session_token(DurationSeconds=900)["Credentials"]
    client.close()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", token["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", token["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", token["SessionToken"])
    result = invoke("doctor", "--endpoint-url", sts.endpoint, "--json")
    credentials = checks(result)[("credentials", "")]
    assert credentials["status"] == "WARN"
    assert credentials["message"].endswith("session from env, expiry unknown")
    assert token["SessionToken"] not in result.output
    assert token["SecretAccessKey"] not in result.output


def test_role_credentials_show_their_expiry_and_links_outliving_them(
    sts: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A role shows its expiry; links outliving it FAIL or WARN by on_short_credentials."""
    private_bucket(sts)
    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        f"[base]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    (aws / "config").write_text(
        "[profile base]\nregion = eu-west-1\n"
        "[profile ops]\nregion = eu-west-1\nsource_profile = base\n"
        "role_arn = arn:aws:iam::123456789012:role/sharebatch-ops\nduration_seconds = 3600\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws / "config"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    clamped = MANIFEST.replace("  - name: q3\n", "  - name: q3\n    on_short_credentials: clamp\n")
    manifest = write_manifest(tmp_path / "m.yml", clamped)
    before = datetime.now(UTC)
    result = invoke(
        "doctor", str(manifest), "--endpoint-url", sts.endpoint, "--profile", "ops", "--json"
    )
    found = checks(result)
    credentials = found[("credentials", "")]
    assert credentials["status"] == "OK"
    assert ":assumed-role/sharebatch-ops/" in credentials["message"]
    assert "role from assume-role, expires " in credentials["message"]
    expires = datetime.strptime(
        credentials["message"].split("expires ")[1][:20], "%Y-%m-%dT%H:%M:%SZ"
    ).replace(tzinfo=UTC)
    assert before < expires <= before + timedelta(hours=1, minutes=1)  # duration_seconds 3600
    at = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert found[("expiry", "weekly")] == {
        "status": "FAIL",
        "name": "expiry",
        "subject": "weekly",
        "message": "links live up to 7d, within the SigV4 limit of 7d, but the credentials"
        f" expire at {at}: the run will refuse (on_short_credentials: fail)",
    }
    q3 = found[("expiry", "q3")]
    assert q3["status"] == "WARN"
    assert q3["message"].endswith(
        f"expire at {at}: links end with them (on_short_credentials: clamp)"
    )
    assert result.exit_code == 1


def test_credential_kinds() -> None:
    """Provider and ARN name the kind: SSO, role, session or long-term key."""

    def kind(method: str, token: str | None, arn: str | None) -> str:
        return credential_kind(Credentials("AKIA", "secret", token, None, method), arn)

    sso_arn = "arn:aws:sts::1:assumed-role/AWSReservedSSO_Admin_0123/me"
    assert kind("sso", "t", None) == "SSO"
    assert kind("env", "t", sso_arn) == "SSO"
    assert kind("container-role", "t", None) == "role"
    assert kind("iam-role", "t", None) == "role"
    assert kind("assume-role-with-web-identity", "t", None) == "role"
    assert kind("env", "t", "arn:aws:sts::1:assumed-role/ops/session") == "role"
    assert kind("env", "t", "arn:aws:iam::1:user/ops") == "session"
    assert kind("shared-credentials-file", None, "arn:aws:iam::1:user/ops") == "long-term key"


@pytest.fixture
def outside(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every request for a host other than 127.0.0.1 goes to a local proxy that records and
    refuses it: the test sees what would have left the machine, and nothing leaves."""
    seen: list[str] = []

    class Refuse(BaseHTTPRequestHandler):
        def refuse(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_CONNECT = do_GET = do_HEAD = do_POST = do_PUT = refuse

        def log_message(self, *args: object) -> None:
            pass

    with serve(Refuse) as proxy:
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy)
            monkeypatch.setenv(name.lower(), proxy)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        yield seen


@pytest.mark.parametrize("where", ["manifest", "option", "environment"])
def test_identity_is_not_asked_of_aws_for_a_custom_endpoint(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: list[str], where: str
) -> None:
    """S3 elsewhere than AWS and no STS endpoint configured: no request for AWS's STS (or any
    host off 127.0.0.1) is made, and the credentials check WARNs saying why."""
    private_bucket(s3)
    text, options = MANIFEST, ["--json"]
    if where == "manifest":
        text = MANIFEST.replace(
            "  region: eu-west-1\n", f"  region: eu-west-1\n  endpoint_url: {s3.endpoint}\n"
        )
    elif where == "option":
        options.append(f"--endpoint-url={s3.endpoint}")
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    result = invoke("doctor", str(write_manifest(tmp_path / "m.yml", text)), *options)
    assert outside == []
    found = checks(result)
    credentials = found[("credentials", "")]
    assert credentials["status"] == "WARN"
    assert credentials["message"] == (
        "identity not asked: S3 is not AWS and no STS endpoint is configured"
        " (AWS_ENDPOINT_URL_STS, or sts endpoint_url in the profile's services), so AWS's STS"
        " would receive this store's credentials; long-term key from env, no expiry"
    )
    # The store itself was asked: every listing went to moto and succeeded.
    assert found[("listing", "acme-reports/weekly/")]["status"] == "OK"
    assert result.exit_code == 0


class _Sts(BaseHTTPRequestHandler):
    """An STS stand-in: answers GetCallerIdentity and records each request it received."""

    received: ClassVar[list[tuple[str, str, str, str]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.received.append((self.command, self.path, self.headers["Authorization"], body))
        reply = (
            b"<GetCallerIdentityResponse><GetCallerIdentityResult>"
            b"<Arn>arn:aws:iam::123456789012:user/store-ops</Arn><UserId>AIDA</UserId>"
            b"<Account>123456789012</Account></GetCallerIdentityResult>"
            b"</GetCallerIdentityResponse>"
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("configured", ["environment", "profile"])
def test_a_configured_sts_endpoint_is_asked_and_nothing_else(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: list[str], configured: str
) -> None:
    """With a custom S3, an STS endpoint set by AWS_ENDPOINT_URL_STS or by the profile's
    services section receives the one signed GetCallerIdentity; no other host gets any."""

    class Sts(_Sts):
        received: ClassVar[list[tuple[str, str, str, str]]] = []

    private_bucket(s3)
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    with serve(Sts) as sts:
        if configured == "environment":
            monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts)
        else:
            config = tmp_path / "aws-config"
            config.write_text(
                f"[default]\nservices = store\n[services store]\nsts =\n  endpoint_url = {sts}\n"
            )
            monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
        result = invoke("doctor", str(manifest), "--endpoint-url", s3.endpoint, "--json")
    assert outside == []
    [(method, path, authorization, body)] = Sts.received
    assert (method, path) == ("POST", "/")
    assert "Action=GetCallerIdentity" in body
    assert f"Credential={ACCESS_KEY}/" in authorization
    assert "/sts/aws4_request" in authorization
    credentials = checks(result)[("credentials", "")]
    assert credentials == {
        "status": "OK",
        "name": "credentials",
        "subject": "",
        "message": "arn:aws:iam::123456789012:user/store-ops: long-term key from env, no expiry",
    }
    assert result.exit_code == 0


@pytest.mark.parametrize("mixed", [False, True])
def test_aws_s3_still_asks_aws_sts(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: list[str], mixed: bool
) -> None:
    """Some bucket at AWS (no manifest; or one job at AWS, one on a store): the credentials
    are AWS's, so AWS's STS is asked as before (here it reaches the refusing proxy only, and
    the check says STS could not be asked)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("SHAREBATCH_S3_ATTEMPTS", "1")
    store = f"    endpoint_url: {s3.endpoint}\n"
    text = MANIFEST.replace("  - name: weekly\n", "  - name: weekly\n" + store)
    args = [str(write_manifest(tmp_path / "m.yml", text))] if mixed else []
    result = invoke("doctor", *args, "--json")
    assert "CONNECT sts.eu-west-1.amazonaws.com:443" in outside
    credentials = checks(result)[("credentials", "")]
    assert credentials["status"] == "WARN"
    assert credentials["message"].startswith("cannot ask STS who they are (")


def test_invalid_manifest_exits_2(tmp_path: Path) -> None:
    """doctor refuses an invalid manifest like every command: located message, exit 2."""
    manifest = write_manifest(
        tmp_path / "m.yml", MANIFEST.replace("expires_in: 7d", "expires_in: 9d")
    )
    result = invoke("doctor", str(manifest))
    assert result.exit_code == 2
    line = MANIFEST.splitlines().index("    expires_in: 7d") + 1
    assert f"{manifest}:{line}:17: jobs[1].expires_in: 9d is longer than" in result.stderr
    assert result.stdout == ""
