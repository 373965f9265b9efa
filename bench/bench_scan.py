"""Scanning uploads through clamd (issue 19): concurrency 4 vs 1, and memory flat in file size.

Run with ``make bench`` (needs Debian's clamd and sigtool; skipped, saying so, without them).
A real clamd is started as the tests start it (``tests/support/clamd.py``: a database of one
EICAR hash signature, so clamd's own work per file is hashing and file typing, not a full
signature set), with StreamMaxLength 128 MiB. moto runs in its own process; each measurement
is ``_scan_run.py`` in a fresh process.

- Speed: 200 objects of 1 MB, scanned at --concurrency 1 and 4 (their tags cleared before each
  round, or the second round would skip them all as already clean). Target: 4 at least 2x 1.
  Measured twice: moto answering at once, and behind the benchmarks' delaying proxy adding
  30 ms to every request (S3's round trip from a nearby machine; each file costs three:
  its tags, its bytes, its verdict).
- Memory: one object of 1 MB, then one of 100 MB, each scanned alone. Target: peak RSS within
  10 MB of each other (the object is streamed in 64 KiB pieces, never held).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _sealed_env import seal

seal(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="eu-west-1")

import boto3  # noqa: E402
from _servers import moto_process  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.support.clamd import clamd_server, find_tools  # noqa: E402

BUCKET = "bench-scan"
FILES, SIZE = 200, 1_000_000
ROUNDS = 3


def scan(endpoint: str, prefix: str, concurrency: int, clamd: str) -> dict[str, float]:
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "_scan_run.py"),
            endpoint,
            BUCKET,
            prefix,
            str(concurrency),
            clamd,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def clear_tags(client: object, prefix: str) -> None:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
    for page in pages:
        for found in page.get("Contents", []):
            client.delete_object_tagging(Bucket=BUCKET, Key=found["Key"])  # type: ignore[attr-defined]


def speed(endpoint: str, client: object, clamd: str, title: str, missed: list[str]) -> None:
    """Rounds of 200 x 1 MB at concurrency 1 and 4, side by side; the speed-up's target."""
    seconds: dict[int, list[float]] = {1: [], 4: []}
    for _ in range(ROUNDS):
        for concurrency in (1, 4):
            clear_tags(client, "many/")
            result = scan(endpoint, "many/", concurrency, clamd)
            assert result["files"] == FILES, result
            assert result["fresh"] == FILES, result
            assert result["statuses"] == ["clean"], result
            seconds[concurrency].append(result["seconds"])
    ratios = [a / b for a, b in zip(seconds[1], seconds[4], strict=True)]
    print(f"scan {FILES} x 1 MB through clamd, {title} ({ROUNDS} rounds, median [min..max])")
    for c in (1, 4):
        median = statistics.median(seconds[c])
        spread = f"[{min(seconds[c]):.2f}..{max(seconds[c]):.2f}]"
        rate = FILES * SIZE / 1e6 / median
        print(f"  concurrency {c}: {median:.2f} s {spread}  = {rate:.0f} MB/s")
    ratio = statistics.median(ratios)
    print(f"  speed-up 4 vs 1: {ratio:.2f}x [{min(ratios):.2f}..{max(ratios):.2f}]   target >= 2")
    if ratio < 2:
        missed.append(f"speed-up ({title})")


def seed(client: object) -> None:
    client.create_bucket(  # type: ignore[attr-defined]
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    for i in range(FILES):
        body = os.urandom(SIZE)
        client.put_object(Bucket=BUCKET, Key=f"many/file-{i:03d}.bin", Body=body)  # type: ignore[attr-defined]


def main() -> int:
    tools = find_tools()
    if tools is None:
        print("bench_scan: clamd or sigtool is not installed; apt-get install clamav-daemon clamav")
        return 0
    missed: list[str] = []
    with clamd_server(*tools, stream_max=128 << 20, threads=8) as clamd:
        with moto_process({}) as endpoint:
            client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
            seed(client)
            speed(endpoint, client, clamd.unix_url, "moto answering at once", missed)
            client.put_object(Bucket=BUCKET, Key="small/one.bin", Body=os.urandom(1_000_000))
            client.put_object(Bucket=BUCKET, Key="large/one.bin", Body=os.urandom(100_000_000))
            peaks: dict[str, list[float]] = {"small": [], "large": []}
            for _ in range(ROUNDS):
                for name in ("small", "large"):
                    clear_tags(client, f"{name}/")
                    result = scan(endpoint, f"{name}/", 1, clamd.unix_url)
                    assert result["statuses"] == ["clean"], result
                    peaks[name].append(result["peak_rss_mb"])
            small, large = statistics.median(peaks["small"]), statistics.median(peaks["large"])
            print("peak RSS of one scan (MB, median)")
            print(f"  1 MB object:   {small:.1f}")
            print(
                f"  100 MB object: {large:.1f}   difference {large - small:+.1f}   target within 10"
            )
            if abs(large - small) > 10:
                missed.append("memory")
        with moto_process({}, delay=0.03) as endpoint:
            client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
            seed(client)
            speed(endpoint, client, clamd.unix_url, "30 ms per S3 request", missed)
    if missed:
        print("missed: " + ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
