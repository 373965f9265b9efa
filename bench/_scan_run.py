"""One scan of every object under a prefix through ``scanning/scan.scan_objects``.

Used by ``bench_scan.py`` in a fresh process per measurement, so each peak RSS is that scan's
own. Everything is real: moto's S3 over HTTP (another process), the object streamed from it,
Debian's clamd. Prints one JSON line: wall seconds and this process's CPU seconds of the scan
alone (listing and start-up left out, as they are from the wall time), and the whole
machine's busy and idle CPU seconds in that time (other processes share the cores). With a
sixth argument, a path, the scan runs under cProfile and its statistics are written there.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import resource
import sys
import time

from _sealed_env import seal

seal(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="eu-west-1")

from sharebatch.models import BucketTarget, Connection, ScanSetting  # noqa: E402
from sharebatch.s3.gateway import S3Gateway  # noqa: E402
from sharebatch.scanning.scan import Upload, scan_objects  # noqa: E402


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine spent busy and idle so far, all cores (/proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    idle = ticks[3] + ticks[4]
    busy = sum(ticks[:8]) - idle
    hz = os.sysconf("SC_CLK_TCK")
    return busy / hz, idle / hz


async def main(
    endpoint: str, bucket: str, prefix: str, concurrency: int, clamd: str, profile: str | None
) -> None:
    setting = ScanSetting("clamd", clamd, None)
    async with S3Gateway(Connection(endpoint_url=endpoint), max_connections=concurrency) as gw:
        target = gw.effective(BucketTarget(bucket, "eu-west-1", None))
        uploads = [
            Upload("bench", "r", target, o.key, o.etag, o.size, setting)
            async for o in gw.list_objects(target, prefix)
        ]
        profiler = cProfile.Profile() if profile else None
        machine = machine_cpu()
        started, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        judged = await scan_objects(gw, uploads, concurrency=concurrency, step_timeout=120)
        if profiler is not None:
            profiler.disable()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        busy, idle = (b - a for a, b in zip(machine, machine_cpu(), strict=True))
    if profiler is not None and profile:
        profiler.dump_stats(profile)
    statuses = sorted({j.verdict.status for j in judged})
    fresh = sum(j.verdict.fresh for j in judged)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "files": len(judged),
                "fresh": fresh,
                "statuses": statuses,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "machine_busy": busy,
                "machine_idle": idle,
                "peak_rss_mb": peak,
            }
        )
    )


if __name__ == "__main__":
    endpoint, bucket, prefix, concurrency, clamd = sys.argv[1:6]
    profile = sys.argv[6] if len(sys.argv) > 6 else None
    asyncio.run(main(endpoint, bucket, prefix, int(concurrency), clamd, profile))
