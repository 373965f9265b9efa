"""Signatures: our presigning configuration against independently produced vectors and botocore."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.auth
import pytest

from sharebatch.models import BucketTarget, Credentials, ObjectRef
from sharebatch.s3 import S3Gateway
from sharebatch.signing import MAX_EXPIRES_IN, Signer, SigningError, signed_window

VECTORS = json.loads((Path(__file__).parent / "data" / "sigv4-presign.json").read_text())
SIGNING_TIME = datetime.strptime(VECTORS["signing_time"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _label(case: dict[str, Any]) -> str:
    i = case["input"]
    return f"{i['method']}-{i['style']}-{i['region']}-{i['key']!r}"[:80]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """botocore reads the signing time through botocore.auth.get_current_datetime."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: SIGNING_TIME)
    return SIGNING_TIME


def _presign(case: dict[str, Any]) -> str:
    i = case["input"]
    target = BucketTarget(
        bucket=i["bucket"],
        region=i["region"],
        endpoint_url=i.get("endpoint"),
        addressing_style=i["style"],
    )
    creds = Credentials(
        access_key_id=VECTORS["access_key_id"],
        secret_access_key=VECTORS["secret_access_key"],
        session_token=i.get("sessionToken"),
    )
    params = {}
    if "responseContentDisposition" in i:
        params["ResponseContentDisposition"] = i["responseContentDisposition"]
    if "responseContentType" in i:
        params["ResponseContentType"] = i["responseContentType"]

    async def make() -> str:
        async with S3Gateway() as gateway:
            presign = await gateway.presigner(target, creds)
            return presign(i["method"], i["bucket"], i["key"], i["expires"], params)

    return asyncio.run(make())


@pytest.mark.parametrize("case", VECTORS["cases"], ids=_label)
def test_presigned_url_matches_vector(
    case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our client configuration yields, byte for byte, the URL botocore and the JS SDK agree on."""
    # Most vectors share the file's signing time; the AWS documentation example has its own.
    stamp = parse_qs(urlsplit(case["url"]).query)["X-Amz-Date"][0]
    at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at)
    assert _presign(case) == case["url"]


def test_signed_window_reads_the_url() -> None:
    """expires_at is read back from X-Amz-Date + X-Amz-Expires of the URL itself."""
    case = next(c for c in VECTORS["cases"] if c["input"]["expires"] == 604800)
    signed_at, expires_at = signed_window(case["url"])
    assert signed_at == SIGNING_TIME
    assert (expires_at - signed_at).total_seconds() == 604800


def test_sigv2_urls_are_refused() -> None:
    """A URL without SigV4 parameters (SigV2 style) is never accepted into a bundle."""
    sigv2 = "https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIA&Signature=abc%3D&Expires=1700000000"
    with pytest.raises(SigningError, match="SigV4"):
        signed_window(sigv2)


@pytest.mark.parametrize("expires_in", [0, -1, MAX_EXPIRES_IN + 1])
def test_signer_enforces_the_seven_day_limit(expires_in: int) -> None:
    """The 7-day SigV4 limit is checked when signing, not only when loading a manifest."""
    with pytest.raises(SigningError, match="604800"):
        Signer(lambda *a: "", job="j", expires_in=expires_in)


def test_signer_builds_links_with_real_expiry(frozen_clock: datetime) -> None:
    """Each link carries the object, GET, and the moment its signature stops working."""
    case = VECTORS["cases"][0]
    obj = ObjectRef("my-bucket", "plain.txt", 3, "etag", frozen_clock)
    signer = Signer(lambda *a: case["url"], job="j", expires_in=3600)
    [link] = signer.sign_get("alice", [obj])
    assert (link.method, link.recipient, link.obj) == ("GET", "alice", obj)
    assert link.expires_at == datetime(2024, 1, 15, 13, 34, 56, tzinfo=UTC)
    assert "X-Amz-Signature" not in repr(link)
