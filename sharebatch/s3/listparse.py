"""A fast parser for ListObjectsV2 answers, plugged into botocore's response parsing.

botocore parses every XML answer generically, walking its service model node by node, and
reads each timestamp with dateutil: about 53 ms of CPU for one 1,000-key page, several times
the network's share. Listing is the pipeline's bottleneck, so this module parses that one
answer directly with ElementTree and gives botocore the same dictionary (tests compare the
two on real and generated answers). Everything else, errors included, still goes through
botocore's own parser, as do its retries, signing and the url-decoding of keys that runs
after parsing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus
from xml.etree import ElementTree

from aiobotocore.parsers import AioResponseParserFactory, AioRestXMLParser
from botocore.utils import parse_timestamp

from sharebatch.models import ObjectRef

_OUTPUT = "ListObjectsV2Output"
_INTEGERS = frozenset({"MaxKeys", "KeyCount"})
_STRINGS = frozenset(
    {
        "Name",
        "Prefix",
        "Delimiter",
        "EncodingType",
        "ContinuationToken",
        "NextContinuationToken",
        "StartAfter",
    }
)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


@functools.lru_cache(maxsize=4096)
def _timestamp(text: str) -> datetime:
    # S3 writes "2026-11-28T12:00:00.000Z"; fromisoformat reads that at C speed, and objects
    # written together share their timestamp text.
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        # Anything unusual (no zone, odd years): botocore's own reading, whatever it makes of it.
        return parse_timestamp(text)  # type: ignore[no-any-return]
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _text(node: ElementTree.Element) -> str:
    return node.text or ""


def _object(node: ElementTree.Element) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for child in node:
        tag = _local(child.tag)
        if tag == "Size":
            item[tag] = int(_text(child))
        elif tag == "LastModified":
            item[tag] = _timestamp(_text(child))
        elif tag == "ChecksumAlgorithm":
            item.setdefault(tag, []).append(_text(child))
        elif tag == "Owner":
            item[tag] = {
                _local(c.tag): _text(c) for c in child if _local(c.tag) in ("ID", "DisplayName")
            }
        elif tag == "RestoreStatus":
            status: dict[str, Any] = {}
            for c in child:
                name = _local(c.tag)
                if name == "IsRestoreInProgress":
                    status[name] = _text(c) == "true"
                elif name == "RestoreExpiryDate":
                    status[name] = _timestamp(_text(c))
            item[tag] = status
        elif tag in ("Key", "ETag", "ChecksumType", "StorageClass"):
            item[tag] = _text(child)
    return item


def parse_list_objects_v2(body: bytes) -> dict[str, Any]:
    """The members of ListObjectsV2Output found in ``body``, typed as botocore types them."""
    parsed: dict[str, Any] = {}
    contents: list[dict[str, Any]] = []
    folders: list[dict[str, str]] = []
    for child in ElementTree.fromstring(body):  # noqa: S314 - S3's answer, over our own client
        tag = _local(child.tag)
        if tag == "Contents":
            contents.append(_object(child))
        elif tag == "CommonPrefixes":
            folders.append({_local(c.tag): _text(c) for c in child if _local(c.tag) == "Prefix"})
        elif tag == "IsTruncated":
            parsed[tag] = _text(child) == "true"
        elif tag in _INTEGERS:
            parsed[tag] = int(_text(child))
        elif tag in _STRINGS:
            parsed[tag] = _text(child)
    if contents:
        parsed["Contents"] = contents
    if folders:
        parsed["CommonPrefixes"] = folders
    return parsed


class _Parser(AioRestXMLParser):  # type: ignore[misc]
    def _parse_payload(
        self, response: dict[str, Any], shape: Any, member_shapes: Any, final_parsed: dict[str, Any]
    ) -> None:
        if shape is not None and shape.name == _OUTPUT and response.get("body"):
            final_parsed.update(parse_list_objects_v2(response["body"]))
        else:
            super()._parse_payload(response, shape, member_shapes, final_parsed)


class FastListParserFactory(AioResponseParserFactory):  # type: ignore[misc]
    """botocore's parser factory, with the fast path for ListObjectsV2 answers."""

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "rest-xml":
            return _Parser(**self._defaults)
        return super().create_parser(protocol_name)


def install(botocore_session: Any) -> None:
    """Use the fast parser for every client that ``botocore_session`` creates from now on."""
    botocore_session.register_component("response_parser_factory", FastListParserFactory())


@dataclass(frozen=True, slots=True)
class Page:
    """One ListObjectsV2 answer as the pipeline needs it: objects, sub-folders, next token."""

    objects: list[ObjectRef]
    folders: list[str]
    next_token: str | None


# S3's own layout of one object, tag for tag: what AWS and moto send. Anything else (another
# order, whitespace between tags, CDATA) is read by ElementTree instead, never guessed at.
_CONTENTS = re.compile(
    r"(<Contents><Key>([^<]*)</Key><LastModified>([^<]*)</LastModified><ETag>([^<]*)</ETag>"
    r"(?:<ChecksumAlgorithm>[^<]*</ChecksumAlgorithm>)*(?:<ChecksumType>[^<]*</ChecksumType>)?"
    r"<Size>(0|[1-9][0-9]*)</Size>"
    r"(?:<Owner>(?:<ID>[^<]*</ID>)?(?:<DisplayName>[^<]*</DisplayName>)?</Owner>)?"
    r"(?:<StorageClass>[^<]*</StorageClass>)?"
    r"(?:<Owner>(?:<ID>[^<]*</ID>)?(?:<DisplayName>[^<]*</DisplayName>)?</Owner>)?"
    r"(?:<RestoreStatus><IsRestoreInProgress>[^<]*</IsRestoreInProgress>"
    r"(?:<RestoreExpiryDate>[^<]*</RestoreExpiryDate>)?</RestoreStatus>)?"
    r"</Contents>)"
)
_FOLDER = re.compile(r"<CommonPrefixes><Prefix>([^<]*)</Prefix></CommonPrefixes>")
_HEAD = re.compile(
    r'\A(?:<\?xml version="1\.0" encoding="(?i:utf-8)"\?>)?\s*'
    r'<ListBucketResult xmlns="http://s3\.amazonaws\.com/doc/2006-03-01/">'
)
_TAIL = "</ListBucketResult>"
_REFERENCE = re.compile(r"&(?:(quot|amp|lt|gt|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
_NAMED = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "apos": "'"}


class _Unusual(Exception):
    """The answer is outside the layout the fast reading is sure of."""


def _character(found: re.Match[str]) -> str:
    name, decimal, hexadecimal = found.groups()
    if name:
        return _NAMED[name]
    code = int(decimal) if decimal else int(hexadecimal, 16)
    if not 0 < code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise _Unusual
    return chr(code)


def _unescape(text: str) -> str:
    if "&" not in text:
        return text
    result = _REFERENCE.sub(_character, text)
    if text.count("&") != len(_REFERENCE.findall(text)):
        raise _Unusual  # a bare "&": not XML, and ElementTree says so better than we can
    return result


def _field(text: str, name: str) -> str | None:
    # str.find, not a regex: it scans the ~200 KB of a full page several times faster.
    opening = f"<{name}>"
    start = text.find(opening)
    if start < 0:
        return None
    start += len(opening)
    end = text.find(f"</{name}>", start)
    value = text[start:end]
    if end < 0 or "<" in value or text.count(opening) != 1:
        raise _Unusual
    return _unescape(value)


def _url_key(text: str) -> str:
    return unquote_plus(_unescape(text))


def _etag(text: str) -> str:
    if text.startswith("&quot;") and text.endswith("&quot;") and text.count("&") == 2:
        return text[6:-6]  # AWS's own spelling of the quotes around every ETag
    return _unescape(text).strip('"')


def _fast_page(text: str, bucket: str) -> Page:
    # "<!": comments, CDATA, a DOCTYPE ("!" first: memchr is fast, "<" is everywhere).
    # "\r": XML turns line ends into "\n", and keys must come out as ElementTree reads them.
    if ("!" in text and "<!" in text) or "\r" in text or _HEAD.match(text) is None:
        raise _Unusual
    if not text.rstrip().endswith(_TAIL):
        raise _Unusual
    first = text.find("<Contents>")
    rows = _CONTENTS.findall(text)
    if rows:
        # The matched blocks must tile the stretch from the first <Contents> to the last
        # </Contents>: then nothing else hides among them, and the other elements can only
        # be in the short head and tail, which is all that is searched for them below.
        last = text.rfind("</Contents>") + len("</Contents>")
        if sum(len(row[0]) for row in rows) != last - first:
            raise _Unusual
        rest = text[:first] + text[last:]
    elif first >= 0:
        raise _Unusual
    else:
        rest = text
    folders = _FOLDER.findall(rest)
    if "<Contents>" in rest or rest.count("<CommonPrefixes>") != len(folders):
        raise _Unusual
    truncated = _field(rest, "IsTruncated")
    if truncated not in ("true", "false"):
        raise _Unusual
    url = _field(rest, "EncodingType") == "url"
    decode_key = _url_key if url else _unescape
    make = ObjectRef._make  # tuple.__new__ underneath: the cheapest way to build one
    objects = [
        make(
            (
                bucket,
                decode_key(key) if "&" in key or "%" in key or "+" in key else key,
                int(size),
                etag.strip('"') if "&" not in etag else _etag(etag),
                _timestamp(modified),
            )
        )
        for _, key, modified, etag, size in rows
    ]
    decode = unquote_plus if url else str
    objects = files_only(objects)
    return Page(
        objects=objects,
        folders=[decode(_unescape(f)) for f in folders],
        next_token=_field(rest, "NextContinuationToken") if truncated == "true" else None,
    )


def files_only(objects: list[ObjectRef]) -> list[ObjectRef]:
    """Without the console's zero-byte "folders" (keys ending in "/"): never files to share."""
    return [o for o in objects if o.size or not o.key.endswith("/")]


def objects_of(
    bucket: str, contents: Iterable[Mapping[str, Any]], decode: Callable[[str], str] = str
) -> list[ObjectRef]:
    """``Contents`` as botocore's parser types them (keys decoded by ``decode``), as files."""
    return files_only(
        [
            ObjectRef(
                bucket,
                decode(str(item["Key"])),
                int(item["Size"]),
                str(item.get("ETag", "")).strip('"'),
                item["LastModified"].astimezone(UTC),
            )
            for item in contents
        ]
    )


def read_page(body: bytes, bucket: str) -> Page | None:
    """One ListObjectsV2 answer of status 200, or None when it is not a complete one.

    A truncated or garbled body, or an ``<Error>`` sent with status 200, gives None: the
    caller asks botocore, whose retries handle exactly those. Keys are url-decoded when the
    answer says ``EncodingType`` url, as botocore decodes them.
    """
    try:
        return _fast_page(body.decode(), bucket)
    except (_Unusual, ValueError):  # UnicodeDecodeError is a ValueError too
        pass
    try:
        parsed = parse_list_objects_v2(body)
    except (ElementTree.ParseError, ValueError):
        return None
    if not body.rstrip().endswith(_TAIL.encode()) or "IsTruncated" not in parsed:
        return None
    decode = unquote_plus if parsed.get("EncodingType") == "url" else str
    try:
        objects = objects_of(bucket, parsed.get("Contents", ()), decode)
        folders = [decode(f["Prefix"]) for f in parsed.get("CommonPrefixes", ())]
    except KeyError:
        return None  # an element without its key, size, date or prefix: botocore's to judge
    return Page(
        objects=objects,
        folders=folders,
        next_token=parsed.get("NextContinuationToken") if parsed["IsTruncated"] else None,
    )
