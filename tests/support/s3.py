"""Test helpers for a real S3: moto on 127.0.0.1, a sealed AWS environment, downloads."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import secretsguard

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


@dataclass
class S3:
    """The test's handle on the moto server: endpoint plus a plain boto3 client for seeding."""

    endpoint: str
    client: Any

    def bucket(
        self, name: str, files: dict[str, bytes], region: str = REGION, *, over_http: bool = True
    ) -> None:
        """Create the bucket and put ``files`` in it.

        ``over_http=False`` puts the objects straight into the store of the moto server this
        process runs (same objects, ETags and listings, but no checksum a PUT would add): a
        PUT through HTTP costs ~20 ms, so a test that needs a thousand objects for a second
        listing page spent half a minute seeding, twice in CI (the clock pass runs it again).
        """
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
        if over_http:
            for key, body in files.items():
                self.client.put_object(Bucket=name, Key=key, Body=body)
            return
        store = _store_of(name)
        for key, body in files.items():
            store.put_object(name, key, body)


def _store_of(bucket: str) -> Any:
    """The in-process moto backend that holds ``bucket`` (the tests' server is threaded, in
    this process: see ``moto_endpoint`` in tests/conftest.py)."""
    from moto.s3.models import s3_backends

    for account in list(s3_backends):
        for backend in s3_backends[account].values():
            if bucket in backend.buckets:
                return backend
    raise LookupError(f"bucket {bucket!r} is not in this process's moto server")


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


def write_manifest(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def fetch(url: str) -> bytes:
    """Download a link as a recipient would: a plain HTTP GET with no AWS credentials."""
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body
