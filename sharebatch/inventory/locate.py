"""Finding an S3 Inventory report and checking its ``manifest.json``.

AWS publishes each report at (Amazon S3 User Guide, "Locating your inventory list",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory-location.html)::

    destination-prefix/source-bucket/config-ID/YYYY-MM-DDTHH-MMZ/manifest.json
    destination-prefix/source-bucket/config-ID/YYYY-MM-DDTHH-MMZ/manifest.checksum
    destination-prefix/source-bucket/config-ID/data/<uuid>.csv.gz (or .parquet, .orc)

``manifest.checksum`` is the MD5 hash (hex) of ``manifest.json``'s content. The manifest
holds ``sourceBucket``, ``destinationBucket`` (an ARN), ``version``, ``creationTimestamp``
(milliseconds since the epoch, as a string), ``fileFormat`` (``CSV``, ``ORC`` or
``Parquet``), ``fileSchema`` (the column names in order) and ``files``: each data file's
``key``, ``size`` and ``MD5checksum`` (same page, "What's an inventory manifest?").

The timestamp folders sort by their names, which are UTC times of one fixed width: the newest
report is the last ``<timestamp>/manifest.json`` in key order.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sharebatch.errors import InventoryError, S3ListingError, S3ReadError
from sharebatch.models import BucketTarget

if TYPE_CHECKING:  # the AWS SDK is imported when a gateway opens, not with this module
    from sharebatch.s3.gateway import S3Gateway

MANIFEST = "manifest.json"
CHECKSUM = "manifest.checksum"
MAX_MANIFEST_BYTES = 64 << 20  # a report of ~100,000 data files; ours are a few dozen
_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}-[0-9]{2}Z")
_MD5 = re.compile(r"[0-9a-fA-F]{32}")


@dataclass(frozen=True, slots=True)
class DataFile:
    key: str
    size: int
    md5: str  # lowercase hex


@dataclass(frozen=True, slots=True)
class Report:
    """One report's ``manifest.json``, checked."""

    bucket: str  # where the report lives (the inventory's destination bucket)
    key: str  # of its manifest.json
    md5: str  # of the manifest.json: seeds the verification sample
    source_bucket: str
    created_at: datetime
    file_format: str  # CSV, Parquet or ORC as the manifest writes it
    columns: tuple[str, ...]  # fileSchema's names in order (CSV); Parquet files carry their own
    files: tuple[DataFile, ...]

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


async def newest_manifest(gateway: S3Gateway, target: BucketTarget, prefix: str) -> str:
    """The key of the newest ``<timestamp>/manifest.json`` right under ``prefix``."""
    newest: str | None = None
    try:
        async for found in gateway.list_objects(target, prefix):
            rest = found.key[len(prefix) :]
            stamp, _, name = rest.partition("/")
            if (
                name == MANIFEST
                and _STAMP.fullmatch(stamp)
                and (newest is None or found.key > newest)
            ):
                newest = found.key
    except S3ListingError as exc:
        raise InventoryError(exc.code, f"{_uri(target.bucket, prefix)}: {exc}") from None
    if newest is None:
        raise InventoryError(
            "NoInventory",
            f"no <YYYY-MM-DDTHH-MMZ>/manifest.json under {_uri(target.bucket, prefix)}",
        )
    return newest


async def read_small(gateway: S3Gateway, target: BucketTarget, key: str, limit: int) -> bytes:
    """A whole small object (a manifest or its checksum), refused past ``limit`` bytes."""
    chunks: list[bytes] = []
    held = 0
    try:
        async for chunk in gateway.read_object(target, key, chunk_size=1 << 16):
            held += len(chunk)
            if held > limit:
                raise InventoryError(
                    "TooLarge", f"{_uri(target.bucket, key)} is over {limit} bytes"
                )
            chunks.append(chunk)
    except S3ReadError as exc:
        raise InventoryError(exc.code, f"{_uri(target.bucket, key)}: {exc}") from None
    return b"".join(chunks)


async def locate(gateway: S3Gateway, target: BucketTarget, key: str) -> Report:
    """The report at ``key`` (a ``manifest.json``) or the newest under ``key`` (a prefix),
    checked against its ``manifest.checksum``."""
    if not key.endswith(MANIFEST):
        key = await newest_manifest(gateway, target, key)
    data = await read_small(gateway, target, key, MAX_MANIFEST_BYTES)
    checksum_key = key[: -len(MANIFEST)] + CHECKSUM
    expected = (await read_small(gateway, target, checksum_key, 1024)).decode("ascii", "replace")
    expected = expected.strip().lower()
    digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if not _MD5.fullmatch(expected):
        raise InventoryError(
            "BadChecksum", f"{_uri(target.bucket, checksum_key)} does not hold an MD5 (hex)"
        )
    if digest != expected:
        raise InventoryError(
            "BadChecksum",
            f"{_uri(target.bucket, key)} has MD5 {digest}, {CHECKSUM} says {expected}:"
            " the manifest is not the one S3 Inventory wrote",
        )
    return parse_manifest(data, target.bucket, key, digest)


def parse_manifest(data: bytes, bucket: str, key: str, md5: str) -> Report:
    """The fields a run needs, each checked; ``InventoryError`` naming the field otherwise."""
    where = _uri(bucket, key)
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InventoryError("BadManifest", f"{where} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InventoryError("BadManifest", f"{where} is not a JSON object")
    source = _text(doc, "sourceBucket", where)
    file_format = _text(doc, "fileFormat", where)
    stamp = _text(doc, "creationTimestamp", where)
    if not stamp.isdigit():
        raise InventoryError("BadManifest", f"{where}: creationTimestamp {stamp!r} is not epoch ms")
    created_at = datetime.fromtimestamp(int(stamp) / 1000, UTC)
    schema = _text(doc, "fileSchema", where) if file_format.upper() == "CSV" else ""
    columns = tuple(c.strip() for c in schema.split(",")) if schema else ()
    files = doc.get("files")
    if not isinstance(files, list) or not files:
        raise InventoryError("BadManifest", f"{where}: files is not a list of data files")
    found = []
    for i, item in enumerate(files):
        if not isinstance(item, dict):
            raise InventoryError("BadManifest", f"{where}: files[{i}] is not an object")
        size = item.get("size")
        md5_text = item.get("MD5checksum")
        file_key = item.get("key")
        if (
            not isinstance(file_key, str)
            or not isinstance(size, int)
            or isinstance(size, bool)
            or not isinstance(md5_text, str)
            or not _MD5.fullmatch(md5_text)
        ):
            raise InventoryError(
                "BadManifest", f"{where}: files[{i}] needs key, size and MD5checksum (hex)"
            )
        found.append(DataFile(file_key, size, md5_text.lower()))
    return Report(bucket, key, md5, source, created_at, file_format, columns, tuple(found))


def _text(doc: dict[str, Any], name: str, where: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise InventoryError("BadManifest", f"{where}: {name} is missing or not a string")
    return value
