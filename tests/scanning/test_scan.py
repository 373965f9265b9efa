"""``scan_objects`` on moto with the fake clamd: what it takes for a verdict to name bytes.

A verdict is about the bytes of one ETag: the object must be listed with one, streamed at
exactly its listed size, still be that ETag after it was tagged, and only that ETag may be
moved to the quarantine and deleted from the slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

import pytest

from sharebatch.models import BucketTarget, Connection, ScanSetting
from sharebatch.s3.gateway import S3Gateway
from sharebatch.s3.objects import Objects
from sharebatch.scanning.clamd import Clamd, ClamdVerdict
from sharebatch.scanning.scan import Judged, Upload, quarantine_key, scan_objects
from tests.support.fake_clamd import fake_clamd
from tests.support.s3 import REGION, S3

BUCKET = "scan-objects"
KEY = "inbox/globex/report.pdf"


def listed(s3: S3, key: str = KEY) -> tuple[str, int]:
    """(ETag, size) as a listing would give them."""
    head = s3.client.head_object(Bucket=BUCKET, Key=key)
    return head["ETag"].strip('"'), head["ContentLength"]


async def judge(
    s3: S3,
    clamd: str,
    *,
    etag: str | None = None,
    size: int | None = None,
    quarantine: str | None = None,
) -> Judged:
    """Scan ``KEY`` as listed (or with the ETag/size given) through ``clamd``."""
    real_etag, real_size = listed(s3)
    upload = Upload(
        "q3",
        "globex",
        BucketTarget(BUCKET, REGION, s3.endpoint),
        KEY,
        real_etag if etag is None else etag,
        real_size if size is None else size,
        ScanSetting("clamd", clamd, quarantine),
    )
    async with S3Gateway(Connection(endpoint_url=s3.endpoint)) as gateway:
        [judged] = await scan_objects(gateway, [upload], step_timeout=5)
    return judged


@pytest.mark.asyncio
@pytest.mark.parametrize("off_by", [1, -1])
async def test_more_or_fewer_bytes_than_listed_are_a_scan_error_and_clamd_never_gets_the_end(
    s3: S3, off_by: int
) -> None:
    """The listed size one more (a short read) or one less (a long read) than what S3
    streams: scan_error, and clamd never sees the stream's end, so it cannot say OK."""
    s3.bucket(BUCKET, {KEY: b"%PDF-1.7 quarterly"})
    async with fake_clamd("ok") as fake:
        judged = await judge(s3, fake.url, size=len(b"%PDF-1.7 quarterly") + off_by)
    assert judged.verdict.status == "scan_error"
    assert judged.verdict.detail is not None and "not the listed bytes" in judged.verdict.detail
    assert fake.streamed == []


@pytest.mark.asyncio
async def test_an_object_without_an_etag_is_a_scan_error_without_asking_clamd(s3: S3) -> None:
    """Listed with an empty ETag (the inbox passes a missing one as ""): no verdict could
    name its bytes, so scan_error, and clamd is not asked."""
    s3.bucket(BUCKET, {KEY: b"data"})
    async with fake_clamd("ok") as fake:
        judged = await judge(s3, fake.url, etag="")
    assert judged.verdict.status == "scan_error"
    assert judged.verdict.detail is not None and "ETag" in judged.verdict.detail
    assert fake.connections == 0


@pytest.mark.asyncio
async def test_an_object_replaced_while_it_was_scanned_is_a_scan_error_and_is_not_moved(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new upload lands while clamd judges the old bytes (infected): the HEAD after tagging
    sees another ETag, so the verdict is scan_error "replaced while scanning", nothing is
    quarantined and the new upload stays in the slot."""
    s3.bucket(BUCKET, {KEY: b"old bytes"})
    real = Clamd.instream

    async def replaced_meanwhile(self: Clamd, chunks: AsyncIterable[bytes]) -> ClamdVerdict:
        verdict = await real(self, chunks)
        s3.client.put_object(Bucket=BUCKET, Key=KEY, Body=b"new bytes, fresh upload")
        return verdict

    monkeypatch.setattr(Clamd, "instream", replaced_meanwhile)
    async with fake_clamd("found") as fake:
        judged = await judge(s3, fake.url, quarantine="quarantine/")
    assert judged.verdict.status == "scan_error" and judged.quarantined_to is None
    assert judged.verdict.detail is not None and "replaced while scanning" in judged.verdict.detail
    body = s3.client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    assert body == b"new bytes, fresh upload"
    assert s3.client.list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")["KeyCount"] == 0


@pytest.mark.asyncio
async def test_two_infected_versions_of_one_key_both_stay_in_the_quarantine(s3: S3) -> None:
    """The quarantine key is <prefix><key>@<etag>: a second infected upload of the same key
    does not overwrite the first one's copy; each copy holds its own bytes."""
    s3.bucket(BUCKET, {KEY: b"first infected"})
    first_etag, _ = listed(s3)
    async with fake_clamd("found") as fake:
        first = await judge(s3, fake.url, quarantine="quarantine/")
        s3.client.put_object(Bucket=BUCKET, Key=KEY, Body=b"second infected")
        second_etag, _ = listed(s3)
        second = await judge(s3, fake.url, quarantine="quarantine/")
    assert first.quarantined_to == f"quarantine/{KEY}@{first_etag}"
    assert second.quarantined_to == quarantine_key("quarantine/", KEY, second_etag)
    assert first.quarantined_to != second.quarantined_to
    for judged, body in ((first, b"first infected"), (second, b"second infected")):
        assert judged.quarantined_to is not None
        got = s3.client.get_object(Bucket=BUCKET, Key=judged.quarantined_to)["Body"].read()
        assert got == body
    assert s3.client.list_objects_v2(Bucket=BUCKET, Prefix="inbox/")["KeyCount"] == 0


@pytest.mark.asyncio
async def test_a_fresh_upload_landing_after_the_quarantine_copy_is_not_deleted(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The infected object is copied to the quarantine, then a clean upload replaces it
    before the delete: the delete is conditional (If-Match the scanned ETag), so the fresh
    upload stays in the slot and the verdict says so."""
    s3.bucket(BUCKET, {KEY: b"infected"})
    etag, _ = listed(s3)
    copy = Objects.copy

    async def copy_then_replaced(self: Objects, *args: Any, **kwargs: Any) -> Any:
        answer = await copy(self, *args, **kwargs)
        s3.client.put_object(Bucket=BUCKET, Key=KEY, Body=b"clean replacement")
        return answer

    monkeypatch.setattr(Objects, "copy", copy_then_replaced)
    async with fake_clamd("found") as fake:
        judged = await judge(s3, fake.url, quarantine="quarantine/")
    assert judged.quarantined_to == f"quarantine/{KEY}@{etag}"
    assert judged.verdict.detail is not None and "newer upload" in judged.verdict.detail
    body = s3.client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    assert body == b"clean replacement"
