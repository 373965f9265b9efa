"""The fast ListObjectsV2 parser gives botocore exactly the dictionary its own parser gives."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

import botocore.session
from aiobotocore.parsers import AioRestXMLParser
from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch.s3.listparse import FastListParserFactory

OUTPUT = (
    botocore.session.get_session()
    .get_service_model("s3")
    .operation_model("ListObjectsV2")
    .output_shape
)

text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
# S3 writes four-digit years in UTC with milliseconds.
stamp = st.datetimes(min_value=datetime(1970, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
)


@st.composite
def objects(draw: st.DrawFn) -> str:
    parts = [f"<Key>{escape(draw(text))}</Key>", f"<LastModified>{draw(stamp)}</LastModified>"]
    parts.append(
        f"<ETag>&quot;{draw(st.text('0123456789abcdef', min_size=32, max_size=32))}&quot;</ETag>"
    )
    for algorithm in draw(st.lists(st.sampled_from(["CRC32", "CRC64NVME", "SHA256"]), max_size=2)):
        parts.append(f"<ChecksumAlgorithm>{algorithm}</ChecksumAlgorithm>")
    if draw(st.booleans()):
        parts.append("<ChecksumType>FULL_OBJECT</ChecksumType>")
    parts.append(f"<Size>{draw(st.integers(0, 5 * 2**40))}</Size>")
    if draw(st.booleans()):
        parts.append(f"<Owner><DisplayName>{escape(draw(text))}</DisplayName><ID>id1</ID></Owner>")
    parts.append(f"<StorageClass>{draw(st.sampled_from(['STANDARD', 'GLACIER']))}</StorageClass>")
    if draw(st.booleans()):
        parts.append(
            "<RestoreStatus><IsRestoreInProgress>"
            f"{draw(st.sampled_from(['true', 'false']))}</IsRestoreInProgress>"
            f"<RestoreExpiryDate>{draw(stamp)}</RestoreExpiryDate></RestoreStatus>"
        )
    return "<Contents>" + "".join(draw(st.permutations(parts))) + "</Contents>"


@st.composite
def pages(draw: st.DrawFn) -> bytes:
    head = [f"<Name>{escape(draw(text))}</Name>", f"<Prefix>{escape(draw(text))}</Prefix>"]
    head.append(f"<KeyCount>{draw(st.integers(0, 1000))}</KeyCount><MaxKeys>1000</MaxKeys>")
    head.append(f"<IsTruncated>{draw(st.sampled_from(['true', 'false']))}</IsTruncated>")
    for name in (
        "Delimiter",
        "EncodingType",
        "ContinuationToken",
        "NextContinuationToken",
        "StartAfter",
    ):
        if draw(st.booleans()):
            head.append(f"<{name}>{escape(draw(text))}</{name}>")
    body = [draw(objects()) for _ in range(draw(st.integers(0, 5)))]
    body += [
        f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>"
        for p in draw(st.lists(text, max_size=3))
    ]
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        + "".join(head + body)
        + "</ListBucketResult>"
    )
    return xml.encode()


def _both(body: bytes, status: int = 200) -> tuple[Any, Any]:
    response = {"body": body, "headers": {"x-amz-request-id": "r1"}, "status_code": status}

    async def parse() -> tuple[Any, Any]:
        slow = await AioRestXMLParser().parse(dict(response), OUTPUT)
        fast = await FastListParserFactory().create_parser("rest-xml").parse(dict(response), OUTPUT)
        return slow, fast

    return asyncio.run(parse())


@settings(max_examples=300, deadline=None)
@given(pages())
def test_same_result_as_botocore(body: bytes) -> None:
    """Any ListObjectsV2 page parses to botocore's own result, types and values alike."""
    slow, fast = _both(body)
    assert fast == slow


def test_errors_still_go_through_botocore() -> None:
    """An error answer is parsed by botocore's parser, untouched."""
    body = b"<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>"
    slow, fast = _both(body, status=404)
    assert fast == slow
    assert fast["Error"]["Code"] == "NoSuchBucket"
