"""One run of N links through the real runner, with a synthetic lister standing in for S3.

Used by ``bench_run.py`` in a fresh process per size, so each peak RSS is that run's own.
Everything but the listing is real: manifest, plan, select, the fast signer, part files,
bundle joining, audit log and summary. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _sealed_env import seal

seal()

from sharebatch.models import BucketTarget, Credentials, ObjectRef  # noqa: E402
from sharebatch.run import pool, runner  # noqa: E402
from sharebatch.s3.gateway import Level, S3Gateway  # noqa: E402

PREFIXES = 100
PAGE = 1000


class SyntheticListing:
    """Pages of made-up objects, as fast as the pipeline takes them."""

    per_prefix = 0

    async def aclose(self) -> None:
        pass

    async def probe_level(
        self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
    ) -> Level:
        return Level(objects=[], folders=[], complete=False)

    async def list_pages(
        self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
    ) -> AsyncIterator[list[ObjectRef]]:
        when = datetime(2026, 9, 30, tzinfo=UTC)
        for start in range(0, self.per_prefix, PAGE):
            stop = min(start + PAGE, self.per_prefix)
            async with slot or contextlib.nullcontext():  # the request, as S3Gateway holds it
                await asyncio.sleep(0)
                page = [
                    ObjectRef(target.bucket, f"{prefix}file-{i:09d}.csv", 1024 + i, "0" * 32, when)
                    for i in range(start, stop)
                ]
            yield page


class SyntheticGateway(S3Gateway):
    """The real gateway (its signers sign for the manifest's region, no request sent) with
    made-up credentials and the synthetic listing in place of S3's."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.listing = SyntheticListing()  # type: ignore[assignment]

    async def credentials(self) -> Credentials:
        return Credentials("AKIABENCHBENCHBENCH0", "bench-secret")


def main() -> None:
    links = int(sys.argv[1])
    # The number of signing workers (1: the run's own process); none given: the run's default.
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else None
    SyntheticListing.per_prefix = links // PREFIXES
    runner.S3Gateway = SyntheticGateway  # type: ignore[misc]
    with tempfile.TemporaryDirectory(prefix="sharebatch-bench-") as tmp:
        manifest = Path(tmp) / "m.yml"
        prefixes = "".join(f"      - data/p{i:03d}/\n" for i in range(PREFIXES))
        manifest.write_text(
            "version: 1\njobs:\n  - name: bulk\n    bucket: bench-bucket\n    region: eu-west-1\n"
            f"    expires_in: 7d\n    prefixes:\n{prefixes}    recipients: [{{id: r}}]\n"
        )
        started = time.perf_counter()
        summary = asyncio.run(
            runner.run_manifest_async(manifest, out=Path(tmp) / "out", workers=workers)
        )
        seconds = time.perf_counter() - started
        rows = summary.report["totals"]["links"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped by now
    own = usage.ru_maxrss / 1024  # KiB on Linux
    # Workers live at the same time as the run: their peaks add up.
    peak = own + sum(pool.WORKER_PEAKS_KIB) / 1024
    print(
        json.dumps(
            {
                "links": rows,
                "peak_rss_mb": round(peak, 1),
                "run_rss_mb": round(own, 1),
                "worker_rss_mb": [round(kib / 1024, 1) for kib in pool.WORKER_PEAKS_KIB],
                "seconds": round(seconds, 2),
                "links_per_s": round(rows / seconds),
                # CPU seconds, which a busy machine disturbs less than the wall clock.
                "cpu_run_s": round(usage.ru_utime + usage.ru_stime, 2),
                "cpu_workers_s": round(children.ru_utime + children.ru_stime, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
