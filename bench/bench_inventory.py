"""S3 Inventory as the source vs the synthetic lister: ``make bench`` runs this.

A report of 1,000,000 objects in 10 CSV.gz files (rows shuffled, as S3 writes them in no
order) is put on moto, which runs in its own process; each round runs the same manifest
twice, each run in a fresh process: once fed by the synthetic lister (``_memory_run.py``,
no S3 at all) and once reading the report from moto (``_inventory_run.py``). The ratio is
synthetic seconds / inventory seconds per round (the same links either way): reading the
inventory, checking it and sorting it must not be the bottleneck. Target >= 0.8, median of
the rounds, with min and max; exit 1 below it.

    python bench/bench_inventory.py [--links 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _sealed_env import seal

seal(AWS_ACCESS_KEY_ID="AKIABENCHBENCHBENCH0", AWS_SECRET_ACCESS_KEY="bench-secret")
sys.path.insert(0, str(Path(__file__).parent))

import boto3  # noqa: E402
from _servers import moto_process  # noqa: E402

HERE = Path(__file__).parent
PREFIXES = 100
FILES = 10
DEST = "inventory-dest"
TARGET = 0.8


def _data_files(links: int) -> list[bytes]:
    """The synthetic lister's objects as inventory rows, shuffled over ``FILES`` CSV.gz."""
    per_prefix = links // PREFIXES
    keys = [(p, i) for p in range(PREFIXES) for i in range(per_prefix)]
    random.Random(17).shuffle(keys)  # noqa: S311 - an order, not a secret
    files = []
    for index in range(FILES):
        text = io.StringIO()
        out = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
        out.writerows(
            [
                "bench-bucket",
                f"data/p{p:03d}/file-{i:09d}.csv",
                "",
                "true",
                "false",
                str(1024 + i),
                "2026-09-30T00:00:00.000Z",
                "0" * 32,
                "STANDARD",
            ]
            for p, i in keys[index::FILES]
        )
        files.append(gzip.compress(text.getvalue().encode(), compresslevel=6, mtime=0))
    return files


def put_report(endpoint: str, links: int) -> str:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="AKIABENCHBENCHBENCH0",
        aws_secret_access_key="bench-secret",
    )
    prefix = "inventory/bench-bucket/daily/"
    entries = []
    for index, body in enumerate(_data_files(links)):
        key = f"{prefix}data/part-{index:02d}.csv.gz"
        client.put_object(Bucket=DEST, Key=key, Body=body)
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        entries.append({"key": key, "size": len(body), "MD5checksum": md5})
    manifest = json.dumps(
        {
            "sourceBucket": "bench-bucket",
            "destinationBucket": f"arn:aws:s3:::{DEST}",
            "version": "2016-11-30",
            "creationTimestamp": str(int(time.time() * 1000)),
            "fileFormat": "CSV",
            "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size,"
            " LastModifiedDate, ETag, StorageClass",
            "files": entries,
        }
    ).encode()
    stamp = time.strftime("%Y-%m-%dT%H-%MZ", time.gmtime())
    client.put_object(Bucket=DEST, Key=f"{prefix}{stamp}/manifest.json", Body=manifest)
    checksum = hashlib.md5(manifest, usedforsecurity=False).hexdigest().encode()
    client.put_object(Bucket=DEST, Key=f"{prefix}{stamp}/manifest.checksum", Body=checksum)
    client.close()
    return f"s3://{DEST}/{prefix}"


def _child(*args: str) -> dict[str, object]:
    found = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, cwd=HERE
    )
    result: dict[str, object] = json.loads(found.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    ratios = []
    with moto_process({DEST: [], "bench-bucket": []}) as endpoint:
        started = time.perf_counter()
        uri = put_report(endpoint, options.links)
        print(
            f"report of {options.links:,} objects in {FILES} CSV.gz files put on moto"
            f" in {time.perf_counter() - started:.1f} s"
        )
        for round_ in range(options.rounds):
            synthetic = _child(str(HERE / "_memory_run.py"), str(options.links))
            inventory = _child(str(HERE / "_inventory_run.py"), endpoint, uri)
            if inventory["links"] != synthetic["links"] or inventory["status"] != "read":
                print(f"round {round_ + 1}: the runs differ: {synthetic} {inventory}")
                return 1
            ratio = float(synthetic["seconds"]) / float(inventory["seconds"])  # type: ignore[arg-type]
            ratios.append(ratio)
            print(
                f"round {round_ + 1}: synthetic {synthetic['seconds']} s"
                f" ({synthetic['peak_rss_mb']} MB), inventory {inventory['seconds']} s"
                f" (report read and sorted in {inventory['read_seconds']} s;"
                f" {inventory['peak_rss_mb']} MB): {ratio:.2f}"
            )
    median = statistics.median(ratios)
    verdict = "ok" if median >= TARGET else "MISSED"
    print(
        f"inventory vs synthetic lister, {options.links:,} links: {median:.2f}x"
        f" [{min(ratios):.2f}..{max(ratios):.2f}] (target >= {TARGET}) {verdict}"
    )
    return 0 if median >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
