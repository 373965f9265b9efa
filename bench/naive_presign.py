"""The naive way, for comparison: one boto3 client, prefix after prefix, one URL at a time.

This is what a careful ops script looks like without sharebatch: paginate each prefix,
presign each object with botocore, write a CSV. Usable on its own:

    python bench/naive_presign.py ENDPOINT BUCKET OUT.csv PREFIX...
"""

from __future__ import annotations

import csv
import sys

import boto3
from botocore.config import Config


def naive_presign(endpoint: str, bucket: str, prefixes: list[str], out: str) -> int:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        config=Config(signature_version="s3v4"),
    )
    rows = 0
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["bucket", "key", "size", "etag", "last_modified", "url"])
        for prefix in prefixes:
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            ):
                for item in page.get("Contents", []):
                    url = client.generate_presigned_url(
                        "get_object", Params={"Bucket": bucket, "Key": item["Key"]}, ExpiresIn=3600
                    )
                    writer.writerow(
                        [bucket, item["Key"], item["Size"], item["ETag"], item["LastModified"], url]
                    )
                    rows += 1
    client.close()
    return rows


if __name__ == "__main__":
    print(naive_presign(sys.argv[1], sys.argv[2], sys.argv[4:], sys.argv[3]))
