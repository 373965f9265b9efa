"""Shared fixtures: a real HTTP S3 (moto's server on 127.0.0.1) and a sealed AWS environment."""

from __future__ import annotations

import logging
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from sharebatch import audit
from tests import secretsguard

REGION = "eu-west-1"
ACCESS_KEY = "AKIATESTTESTTESTTEST"
SECRET_KEY = "test/secret+key/that-must-never-be-logged"
secretsguard.KNOWN_SECRETS.add(SECRET_KEY)


def seal_aws_env(monkeypatch: pytest.MonkeyPatch, empty: Path) -> None:
    """Strip AWS_* variables, point AWS config files at empty ones, never probe IMDS."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    (empty / "config").write_text("")
    (empty / "credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    # Without this, a missing credential makes botocore probe the EC2 metadata address.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def use_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture(autouse=True)
def sealed_aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test can reach a real account: AWS_* variables gone, config files empty, no IMDS."""
    seal_aws_env(monkeypatch, tmp_path_factory.mktemp("aws-config"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "secrets_on_stdout: the command's data on stdout is links (stderr still guarded)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """The secrets guard, part 1: fail a test whose captured output shows a secret."""
    report = yield
    allow = item.get_closest_marker("secrets_on_stdout") is not None
    # Sections accumulate over setup, call and teardown: each phase checks its own only.
    own = [(title, text) for title, text in report.sections if title.endswith(report.when)]
    leaks = secretsguard.scan_report(own, allow) if report.passed else []
    if leaks:
        report.outcome = "failed"
        report.longrepr = "secret in captured output (see tests/secretsguard.py):\n" + "\n".join(
            leaks
        )
    return report


@pytest.fixture(autouse=True)
def secrets_guard(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The secrets guard, part 2: CLI and subprocess output, audit logs and summaries."""
    # Asked for now, so that it is torn down after this check, not before.
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    recorder = secretsguard.Recorder(
        allow_stdout=request.node.get_closest_marker("secrets_on_stdout") is not None
    )
    invoke, communicate = CliRunner.invoke, subprocess.Popen.communicate

    def recorded_invoke(self: CliRunner, *args: Any, **kwargs: Any) -> Any:
        result = invoke(self, *args, **kwargs)
        recorder.add("CliRunner stdout", result.stdout, stdout=True)
        recorder.add("CliRunner stderr", result.stderr)
        recorder.add_exception("CliRunner exception", result.exc_info)
        return result

    def recorded_communicate(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> Any:
        out, err = communicate(self, *args, **kwargs)
        recorder.add(f"{self.args} stdout", out, stdout=True)
        recorder.add(f"{self.args} stderr", err)
        return out, err

    monkeypatch.setattr(CliRunner, "invoke", recorded_invoke)
    monkeypatch.setattr(subprocess.Popen, "communicate", recorded_communicate)
    yield
    leaks = recorder.problems(root)
    if leaks:
        pytest.fail("secret leaked (see tests/secretsguard.py):\n" + "\n".join(leaks))


@pytest.fixture(autouse=True)
def reset_audit() -> Iterator[None]:
    """Each test starts with no log sinks, whatever the previous one configured."""
    audit.reset()
    yield
    audit.reset()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static fake credentials in the environment, as cron would provide real ones."""
    use_test_credentials(monkeypatch)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto S3 server per test session, on a random port of 127.0.0.1."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class S3:
    """The test's handle on the moto server: endpoint plus a plain boto3 client for seeding."""

    endpoint: str
    client: Any

    def bucket(self, name: str, files: dict[str, bytes], region: str = REGION) -> None:
        if region == "us-east-1":  # the one region that refuses an explicit constraint
            east = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=region,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
            )
            east.create_bucket(Bucket=name)
            east.close()
        else:
            self.client.create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": region}
            )
        for key, body in files.items():
            self.client.put_object(Bucket=name, Key=key, Body=body)


@contextmanager
def fresh_s3(endpoint: str) -> Iterator[S3]:
    """Reset moto (its reset API) and hand out a seeding client."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    try:
        yield S3(endpoint, client)
    finally:
        client.close()


@pytest.fixture
def s3(moto_endpoint: str, credentials: None) -> Iterator[S3]:
    """A freshly reset S3 with the test's credentials."""
    with fresh_s3(moto_endpoint) as handle:
        yield handle


def write_manifest(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def fetch(url: str) -> bytes:
    """Download a link as a recipient would: a plain HTTP GET with no AWS credentials."""
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body
