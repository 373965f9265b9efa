"""``scan_objects`` when S3 fails partway: a fault proxy in front of moto breaks or refuses
one kind of request (the object's body, the quarantine copy, the slot's delete, the tagging).

Fail closed and say so: a body that breaks off is never clean, an infected upload that cannot
be moved stays where it is, tagged and reported, and every refusal is named in the verdict
and the audit events, never swallowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest

from sharebatch import audit
from sharebatch.models import BucketTarget, Connection, ScanSetting
from sharebatch.s3.gateway import S3Gateway
from sharebatch.scanning.scan import CHUNK, Judged, Upload, quarantine_key, scan_objects
from sharebatch.scanning.verdicts import TAG_ETAG, TAG_VERDICT
from tests.support.fake_clamd import Mode, fake_clamd
from tests.support.faultproxy import FaultProxy, fault_proxy
from tests.support.s3 import REGION, S3

BUCKET = "scan-faults"
KEY = "inbox/globex/report.pdf"
OBJECT = f"/{BUCKET}/{KEY}"
QUARANTINE = "quarantine/"


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every log event of the test."""
    with audit.capture() as found:
        yield found


def etag_of(s3: S3, key: str = KEY) -> str:
    """The object's ETag as S3 holds it now."""
    return str(s3.client.head_object(Bucket=BUCKET, Key=key)["ETag"]).strip('"')


def tags(s3: S3, key: str = KEY) -> dict[str, str]:
    """The object's tags, read straight from moto (not through the proxy)."""
    found = s3.client.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in found}


def quarantined(s3: S3) -> list[str]:
    """The keys under the quarantine prefix."""
    listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix=QUARANTINE)
    return [o["Key"] for o in listed.get("Contents", [])]


async def judge_through(proxy: FaultProxy, s3: S3, clamd: str) -> Judged:
    """Scan ``KEY`` as listed, with S3 reached through ``proxy``, infected ones quarantined."""
    head = s3.client.head_object(Bucket=BUCKET, Key=KEY)
    upload = Upload(
        "q3",
        "globex",
        BucketTarget(BUCKET, REGION, proxy.url),
        KEY,
        str(head["ETag"]).strip('"'),
        int(head["ContentLength"]),
        ScanSetting("clamd", clamd, QUARANTINE),
    )
    async with S3Gateway(Connection(endpoint_url=proxy.url)) as gateway:
        [judged] = await scan_objects(gateway, [upload], step_timeout=5)
    return judged


@pytest.mark.asyncio
async def test_a_body_broken_off_mid_object_is_a_scan_error_and_never_tagged_clean(
    s3: S3,
) -> None:
    """The connection resets halfway through the object's body (several chunks in), every
    attempt: the verdict is scan_error naming the break, clamd never got the stream's end
    (so it could not say OK), and the object is tagged error at its ETag, never clean."""
    body = bytes(range(256)) * (CHUNK * 4 // 256)
    s3.bucket(BUCKET, {KEY: body})
    async with fake_clamd("ok") as fake:
        with fault_proxy(s3.endpoint) as proxy:
            # If-Match singles out the body's GET; the tags' GET on the same path passes.
            proxy.add("reset", path=OBJECT, method="GET", header="if-match", times=None)
            judged = await judge_through(proxy, s3, fake.url)
            broken = [s for s in proxy.seen if s.fault == "reset"]
    assert judged.verdict.status == "scan_error"
    assert judged.verdict.detail is not None
    assert "reading the object broke off" in judged.verdict.detail
    assert broken, "the proxy never broke the body: the test proved nothing"
    assert fake.connections >= 1 and fake.largest_piece > 0  # clamd got part of the bytes
    assert fake.streamed == []  # ... but never the zero-length end
    recorded = tags(s3)
    assert (recorded[TAG_VERDICT], recorded[TAG_ETAG]) == ("error", etag_of(s3))
    assert judged.quarantined_to is None and quarantined(s3) == []


@pytest.mark.asyncio
async def test_a_refused_quarantine_copy_leaves_the_upload_in_the_slot_tagged_infected(
    s3: S3, events: list[dict[str, Any]]
) -> None:
    """CopyObject to the quarantine answered 403 AccessDenied: the verdict stays infected,
    its detail says it was not quarantined and why, the upload is still in the slot with its
    bytes and its infected tag, nothing reached the quarantine, and nothing was deleted."""
    s3.bucket(BUCKET, {KEY: b"infected bytes"})
    moved_to = quarantine_key(QUARANTINE, KEY, etag_of(s3))
    async with fake_clamd("found") as fake:
        with fault_proxy(s3.endpoint) as proxy:
            proxy.add("denied", method="PUT", header="x-amz-copy-source", times=None)
            judged = await judge_through(proxy, s3, fake.url)
            denied = [s for s in proxy.seen if s.fault == "denied"]
            deletes = [s for s in proxy.seen if s.method == "DELETE"]
    assert judged.verdict.status == "infected"
    assert judged.verdict.signature == fake.signature
    assert judged.verdict.detail == "not quarantined (AccessDenied)"
    assert judged.quarantined_to is None
    assert [unquote(s.path) for s in denied] == [f"/{BUCKET}/{moved_to}"]
    assert deletes == []
    assert s3.client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"infected bytes"
    assert tags(s3)[TAG_VERDICT] == "infected"
    assert quarantined(s3) == []
    (failed,) = [e for e in events if e["event"] == "quarantine_failed"]
    assert (failed["key"], failed["error"]) == (KEY, "AccessDenied")
    assert not [e for e in events if e["event"] == "upload_quarantined"]


@pytest.mark.asyncio
async def test_a_refused_delete_after_the_copy_is_reported_and_audited(
    s3: S3, events: list[dict[str, Any]]
) -> None:
    """The quarantine copy succeeds, DeleteObject is refused (403): the verdict is infected,
    says "copied to quarantine, but still in the slot" with the refusal, names the copy; both
    objects exist with the same bytes and infected tags; the audit's upload_quarantined says
    the delete did not happen."""
    s3.bucket(BUCKET, {KEY: b"infected bytes"})
    etag = etag_of(s3)
    moved_to = quarantine_key(QUARANTINE, KEY, etag)
    async with fake_clamd("found") as fake:
        with fault_proxy(s3.endpoint) as proxy:
            proxy.add("denied", path=OBJECT, method="DELETE", times=None)
            judged = await judge_through(proxy, s3, fake.url)
            denied = [s for s in proxy.seen if s.fault == "denied"]
    assert judged.verdict.status == "infected"
    assert judged.verdict.detail == "copied to quarantine, but still in the slot (AccessDenied)"
    assert judged.quarantined_to == moved_to
    assert [(s.method, s.path) for s in denied] == [("DELETE", OBJECT)]
    for key in (KEY, moved_to):
        assert s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"infected bytes"
        assert tags(s3, key)[TAG_VERDICT] == "infected"
    (moved,) = [e for e in events if e["event"] == "upload_quarantined"]
    assert (moved["key"], moved["quarantine_key"], moved["etag"]) == (KEY, moved_to, etag)
    assert moved["deleted"] is False


@pytest.mark.asyncio
@pytest.mark.parametrize(("mode", "status"), [("ok", "clean"), ("found", "infected")])
async def test_refused_tagging_still_reports_the_verdict_and_names_the_failure(
    s3: S3, events: list[dict[str, Any]], mode: Mode, status: str
) -> None:
    """PutObjectTagging answered 403: the verdict is still the scan's (clean or infected),
    its detail names the tagging refusal, the object (where it ends up: the slot, or the
    quarantine when infected) carries no verdict tag of ours (never silently tagged clean),
    and the audit's scan_tags_failed names the error."""
    s3.bucket(BUCKET, {KEY: b"some upload"})
    async with fake_clamd(mode) as fake:
        with fault_proxy(s3.endpoint) as proxy:
            proxy.add("denied", path=OBJECT, method="PUT", query="tagging", times=None)
            judged = await judge_through(proxy, s3, fake.url)
            denied = [s for s in proxy.seen if s.fault == "denied"]
    assert judged.verdict.status == status
    assert judged.verdict.detail is not None
    assert "verdict not tagged (AccessDenied)" in judged.verdict.detail
    assert [(s.method, s.path) for s in denied] == [("PUT", OBJECT)]
    assert TAG_VERDICT not in tags(s3, judged.quarantined_to or KEY)
    (failed,) = [e for e in events if e["event"] == "scan_tags_failed"]
    assert (failed["key"], failed["error"]) == (KEY, "AccessDenied")
