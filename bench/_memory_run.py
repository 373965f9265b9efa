"""One run of N links through the real runner, with a synthetic lister standing in for S3.

Used by ``bench_run.py`` in a fresh process per size, so each peak RSS is that run's own.
Everything but the listing is real: manifest, plan, select, the fast signer, part files,
bundle joining, audit log and summary. Prints one JSON line.

With ``--signer``, the fast signer alone is timed first in the same process (URLs/s of
``SigV4Presigner.get_many`` in chunks of 250, and of one call per URL), so the run's links/s
can be given as a ratio to it, which a busy machine disturbs less than either rate.
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

from sharebatch.models import LINK_ID_PARAM, BucketTarget, Credentials, ObjectRef  # noqa: E402
from sharebatch.run import pool, runner  # noqa: E402
from sharebatch.run.link_ids import new_link_id  # noqa: E402
from sharebatch.s3 import gateway as gateway_module  # noqa: E402
from sharebatch.s3.gateway import Level, S3Gateway  # noqa: E402
from sharebatch.s3.sigv4 import SigV4Presigner  # noqa: E402

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
        for start in range(0, self.per_prefix, PAGE):
            stop = min(start + PAGE, self.per_prefix)
            async with slot or contextlib.nullcontext():  # the request, as S3Gateway holds it
                await asyncio.sleep(0)
                page = self.page(target.bucket, prefix, start, stop)
            yield page

    def page(self, bucket: str, prefix: str, start: int, stop: int) -> list[ObjectRef]:
        when = datetime(2026, 9, 30, tzinfo=UTC)
        return [
            ObjectRef(bucket, f"{prefix}file-{i:09d}.csv", 1024 + i, "0" * 32, when)
            for i in range(start, stop)
        ]


class SyntheticGateway(S3Gateway):
    """The real gateway (its signers sign for the manifest's region, no request sent) with
    made-up credentials and the synthetic listing in place of S3's."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.listing = SyntheticListing()  # type: ignore[assignment]

    async def credentials(self) -> Credentials:
        return Credentials("AKIABENCHBENCHBENCH0", "bench-secret")


def signer_only(urls: int = 100_000) -> dict[str, float]:
    """URLs/s of the fast signer alone: in batches (as a run signs) and one call per URL, by
    the clock and by CPU time (which other work on a shared machine disturbs far less).

    The same keys, download names and link ids as the run's, signed for the same region.
    """
    presign = SigV4Presigner(
        Credentials("AKIABENCHBENCHBENCH0", "bench-secret"),
        region="eu-west-1",
        endpoint_url=None,
        addressing_style="auto",
        environ={},
    )
    chunk = [
        (
            key,
            {
                "ResponseContentDisposition": f'attachment; filename="{key.rpartition("/")[2]}"',
                LINK_ID_PARAM: new_link_id(),
            },
        )
        for key in (f"data/p000/file-{i:09d}.csv" for i in range(250))
    ]
    rounds = urls // len(chunk)
    signed = rounds * len(chunk)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        presign.get_many("bench-bucket", 604_800, chunk)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    found = {"signer_urls_per_s": signed / wall, "signer_cpu_urls_per_s": signed / cpu}
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for key, params in chunk:
            presign("GET", "bench-bucket", key, 604_800, params)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    found |= {
        "signer_single_urls_per_s": signed / wall,
        "signer_single_cpu_urls_per_s": signed / cpu,
    }
    return found


def main() -> None:
    links = int(sys.argv[1])
    signer = signer_only() if "--signer" in sys.argv[2:] else None
    # The number of signing workers (1: the run's own process); none given: the run's default.
    counts = [arg for arg in sys.argv[2:] if arg.isdigit()]
    workers = int(counts[0]) if counts else None
    SyntheticListing.per_prefix = links // PREFIXES
    # The runner imports the gateway class from its module as it opens one.
    gateway_module.S3Gateway = SyntheticGateway  # type: ignore[misc]
    with tempfile.TemporaryDirectory(prefix="sharebatch-bench-") as tmp:
        manifest = Path(tmp) / "m.yml"
        prefixes = "".join(f"      - data/p{i:03d}/\n" for i in range(PREFIXES))
        manifest.write_text(
            "version: 1\njobs:\n  - name: bulk\n    bucket: bench-bucket\n    region: eu-west-1\n"
            f"    expires_in: 7d\n    prefixes:\n{prefixes}    recipients: [{{id: r}}]\n"
        )
        started, cpu = time.perf_counter(), time.process_time()
        summary = asyncio.run(
            runner.run_manifest_async(manifest, out=Path(tmp) / "out", workers=workers)
        )
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        rows = summary.report["totals"]["links"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped by now
    own = usage.ru_maxrss / 1024  # KiB on Linux
    # Workers live at the same time as the run: their peaks add up.
    peak = own + sum(pool.WORKER_PEAKS_KIB) / 1024
    result: dict[str, Any] = {
        "links": rows,
        "peak_rss_mb": round(peak, 1),
        "run_rss_mb": round(own, 1),
        "worker_rss_mb": [round(kib / 1024, 1) for kib in pool.WORKER_PEAKS_KIB],
        "seconds": round(seconds, 2),
        "links_per_s": round(rows / seconds),
        # CPU seconds, which a busy machine disturbs less than the wall clock.
        "cpu_run_s": round(usage.ru_utime + usage.ru_stime, 2),
        "cpu_workers_s": round(children.ru_utime + children.ru_stime, 2),
        "cpu_seconds": cpu,
    }
    print(json.dumps(result | (signer or {})))


if __name__ == "__main__":
    main()
