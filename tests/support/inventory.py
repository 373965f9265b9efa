"""S3 Inventory reports written as AWS lays them out, onto moto, from a bucket's real objects.

``destination-prefix/source-bucket/config-ID/YYYY-MM-DDTHH-MMZ/manifest.json`` with its
``manifest.checksum`` (MD5 hex), data files under ``.../config-ID/data/``: gzipped CSV without a
header, keys URL-encoded in the form encoding S3 uses (space as '+'), or Parquet with AWS's
column names. Rows are shuffled across the files: S3 gives them in no order either.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

from tests.support.s3 import S3

COLUMNS = (
    "Bucket",
    "Key",
    "VersionId",
    "IsLatest",
    "IsDeleteMarker",
    "Size",
    "LastModifiedDate",
    "ETag",
    "StorageClass",
)
MOMENT = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
"""When the test reports are made: an hour before the tests start, by the clock they run on.
Runs judge ``max_age`` against that clock, so a fixed date here would make a report stale on
some day and the tests that read it fail from then on (tests must not depend on the date)."""


@dataclass
class Row:
    key: str
    size: int
    etag: str
    last_modified: datetime
    latest: bool = True
    delete_marker: bool = False
    version: str = ""


@dataclass
class Written:
    """Where a report was put: its keys, for tests that then break one part of it."""

    bucket: str
    prefix: str  # destination-prefix/source-bucket/config-ID/
    manifest: str
    checksum: str
    data: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def rows_of(s3: S3, bucket: str) -> list[Row]:
    """Every object of ``bucket`` as an inventory row, as S3 lists it."""
    rows = []
    for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            rows.append(
                Row(item["Key"], item["Size"], item["ETag"].strip('"'), item["LastModified"])
            )
    return rows


def _md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def _iso(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def csv_gz(source_bucket: str, rows: list[Row], columns: tuple[str, ...] = COLUMNS) -> bytes:
    text = io.StringIO()
    out = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for row in rows:
        values = {
            "Bucket": source_bucket,
            "Key": quote_plus(row.key, safe="/"),
            "VersionId": row.version,
            "IsLatest": "true" if row.latest else "false",
            "IsDeleteMarker": "true" if row.delete_marker else "false",
            "Size": "" if row.delete_marker else str(row.size),
            "LastModifiedDate": _iso(row.last_modified),
            "ETag": "" if row.delete_marker else row.etag,
            "StorageClass": "STANDARD",
        }
        out.writerow([values[c] for c in columns])
    return gzip.compress(text.getvalue().encode(), mtime=0)


def parquet(source_bucket: str, rows: list[Row]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "bucket": [source_bucket] * len(rows),
            "key": [r.key for r in rows],
            "version_id": [r.version or None for r in rows],
            "is_latest": [r.latest for r in rows],
            "is_delete_marker": [r.delete_marker for r in rows],
            "size": [None if r.delete_marker else r.size for r in rows],
            "last_modified_date": pa.array(
                [r.last_modified for r in rows], type=pa.timestamp("ms", tz="UTC")
            ),
            "e_tag": [None if r.delete_marker else r.etag for r in rows],
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=3)
    return out.getvalue()


def write_inventory(
    s3: S3,
    *,
    bucket: str,
    source_bucket: str,
    rows: list[Row],
    config: str = "daily",
    created_at: datetime = MOMENT,
    files: int = 3,
    file_format: str = "CSV",
    columns: tuple[str, ...] = COLUMNS,
    seed: int = 7,
    create_bucket: bool = True,
) -> Written:
    """One report of ``rows`` (shuffled over ``files`` data files) in ``bucket``."""
    if create_bucket:
        s3.bucket(bucket, {})
    prefix = f"inventory/{source_bucket}/{config}/"
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)  # noqa: S311 - an order, not a secret
    stamp = created_at.strftime("%Y-%m-%dT%H-%MZ")
    written = Written(bucket, prefix, f"{prefix}{stamp}/manifest.json", "")
    written.checksum = f"{prefix}{stamp}/manifest.checksum"
    entries: list[dict[str, Any]] = []
    for index in range(files):
        part = shuffled[index::files]
        if file_format == "Parquet":
            body, name = parquet(source_bucket, part), f"{stamp}-{index}.parquet"
        else:
            body, name = csv_gz(source_bucket, part, columns), f"{stamp}-{index}.csv.gz"
        key = f"{prefix}data/{name}"
        s3.client.put_object(Bucket=bucket, Key=key, Body=body)
        written.data.append(key)
        entries.append({"key": key, "size": len(body), "MD5checksum": _md5(body)})
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{bucket}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(created_at.timestamp() * 1000)),
        "fileFormat": file_format,
        "fileSchema": ", ".join(columns)
        if file_format == "CSV"
        else "message s3.inventory { required binary bucket (STRING); ... }",
        "files": entries,
    }
    body = json.dumps(manifest, indent=2).encode()
    s3.client.put_object(Bucket=bucket, Key=written.manifest, Body=body)
    s3.client.put_object(Bucket=bucket, Key=written.checksum, Body=_md5(body).encode() + b"\n")
    return written


def rewrite_manifest(s3: S3, written: Written, change: dict[str, Any]) -> None:
    """The report's manifest.json with ``change`` applied, its checksum made to match."""
    doc = json.loads(
        s3.client.get_object(Bucket=written.bucket, Key=written.manifest)["Body"].read()
    )
    doc.update(change)
    body = json.dumps(doc).encode()
    s3.client.put_object(Bucket=written.bucket, Key=written.manifest, Body=body)
    s3.client.put_object(Bucket=written.bucket, Key=written.checksum, Body=_md5(body).encode())


def replace_data(s3: S3, written: Written, index: int, body: bytes, *, in_manifest: bool) -> None:
    """Data file ``index`` replaced by ``body``; with ``in_manifest``, its size and MD5 in the
    manifest too (a file S3 wrote that way), else the manifest still names the old one."""
    key = written.data[index]
    s3.client.put_object(Bucket=written.bucket, Key=key, Body=body)
    if not in_manifest:
        return
    doc = json.loads(
        s3.client.get_object(Bucket=written.bucket, Key=written.manifest)["Body"].read()
    )
    for entry in doc["files"]:
        if entry["key"] == key:
            entry["size"] = len(body)
            entry["MD5checksum"] = _md5(body)
    rewrite_manifest(s3, written, {"files": doc["files"]})
