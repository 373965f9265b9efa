"""A whole run fed by a synthetic lister (pages of random sizes), for the signing workers.

Run as a script, under libfaketime when two runs are compared byte for byte::

    faketime -f '2026-11-28 12:00:00' python -m tests.support.synthetic_run OUT N SEED [--three]

Everything but the listing is real: manifest, plan, selection, the fast signer, part files,
bundles, audit log, summary, and with N > 1 workers the signing workers. The lister makes the
same objects for every seed, in pages whose sizes come from the seed. Listings run one at a
time (a listing waits for the one before it to end), so the order link ids are drawn in is a
property of the run, not of the scheduler. ``--fail PREFIX`` breaks that listing off after
three pages. With ``--hold N`` the first listing prints
``held`` on stdout after N pages and waits forever: a test then signals the run or kills one
of its workers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RUN_ID = "synthetic-run"
ACCESS_KEY = "AKIASYNTHETICSYNTHET"
SECRET_KEY = "synthetic/secret+key/that-must-never-be-logged"
SESSION_TOKEN = "synthetic-session-token-never-logged"
BUCKET = "synthetic-reports"

MANIFEST = """\
version: 1
defaults:
  bucket: {bucket}
  region: eu-west-1
  expires_in: 72h
  on_short_credentials: clamp
jobs:
  - name: everyone
    prefixes: {everyone}
    recipients:
      - id: all
      - id: csv-only
        formats: [csv]
        filters: {{include: ["**/*.csv"]}}
      - id: no-ids
        formats: [json]
        link_ids: false
        download_name: "copy-{{basename}}"
  - name: capped
    prefixes: {capped}
    filters: {{max_links: 150}}
    recipients: [{{id: few}}]
  - name: big-files
    prefixes: [data/]
    filters: {{min_size: 3000}}
    recipients: [{{id: large}}]
"""

OBJECTS = {"data/": 1300, "more/": 420, "last/": 9}
"""Objects per prefix; ``data/`` also holds keys a link cannot reach and odd names."""

ONE_LISTING = {"everyone": "[data/]", "capped": "[data/]"}
"""Every route from one listing: the whole audit log's order is the run's own."""
THREE_LISTINGS = {"everyone": "[data/, more/, last/]", "capped": "[more/]"}
"""Three listings, one after the other: the order of lines between two listings' is the
scheduler's (a one-process run's too), the order within each is the run's."""


def _objects(prefix: str) -> list[Any]:
    from sharebatch.models import ObjectRef

    when = datetime(2026, 9, 30, 8, 15, tzinfo=UTC)
    keys = [f"{prefix}f-{i:05d}.{'csv' if i % 3 else 'pdf'}" for i in range(OBJECTS[prefix])]
    if prefix == "data/":
        keys += [
            "data/a/../escape.pdf",
            "data/bidi-\u202egnp.exe.pdf",
            "data/=HYPERLINK(x).csv",
            "data/tab\there.csv",
            "data/./dot.csv",
        ]
    keys.sort(key=str.encode)
    return [
        ObjectRef(BUCKET, key, 1000 + (n * 37) % 4000, hashlib.md5(key.encode()).hexdigest(), when)  # noqa: S324
        for n, key in enumerate(keys)
    ]


_DRAWN = [0]


def deterministic_bits(size: int) -> bytes:
    """Stands in for ``link_ids.random_bits``, as in the golden run."""
    out = b""
    while len(out) < size:
        _DRAWN[0] += 1
        out += hashlib.sha256(f"synthetic link ids {_DRAWN[0]}".encode()).digest()
    return out[:size]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("workers", help="a number, or auto: the run's default")
    parser.add_argument("seed", type=int)
    parser.add_argument("--hold", type=int, default=None)
    parser.add_argument("--three", action="store_true", help="three listings, not one")
    parser.add_argument("--auto-after", type=int, default=None, help="pool.AUTO_AFTER")
    parser.add_argument("--fail", default=None, help="a prefix whose listing breaks off")
    parser.add_argument("--botocore", action="store_true", help="a setting only botocore reads")
    parser.add_argument("--short", action="store_true", help="credentials ending in 1 hour")
    parser.add_argument("--segment", type=int, default=None, help="pool.SPOOL_SEGMENT")
    args = parser.parse_args()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    if args.botocore:
        # It steers botocore's S3 endpoints, so the fast signer (and every worker) stands aside.
        os.environ["AWS_USE_DUALSTACK_ENDPOINT"] = "false"

    import sharebatch
    from sharebatch.errors import S3ListingError, SharebatchError
    from sharebatch.models import BucketTarget, Credentials, ObjectRef
    from sharebatch.run import link_ids, pool
    from sharebatch.s3 import gateway as gateway_module
    from sharebatch.s3.gateway import Level, S3Gateway

    link_ids.random_bits = deterministic_bits
    if args.auto_after is not None:
        pool.AUTO_AFTER = args.auto_after
    if args.segment is not None:
        pool.SPOOL_SEGMENT = args.segment
    sizes = random.Random(args.seed)  # noqa: S311 - page sizes, not secrets
    one_at_a_time = asyncio.Lock()

    class Listing:
        async def aclose(self) -> None:
            pass

        async def probe_level(
            self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
        ) -> Level:
            return Level(objects=[], folders=[], complete=False)

        async def list_pages(
            self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
        ) -> AsyncIterator[list[ObjectRef]]:
            objects = _objects(prefix)
            async with one_at_a_time:
                start = pages = 0
                while start < len(objects):
                    size = sizes.choice((1, 7, 50, 99, 250, 333, 1000))
                    await asyncio.sleep(0)
                    yield objects[start : start + size]
                    start += size
                    pages += 1
                    if pages == args.hold:
                        print("held", flush=True)
                        await asyncio.Event().wait()
                    if prefix == args.fail and pages == 3:
                        raise S3ListingError("InternalError", f"listing {prefix} broke off")

    class Gateway(S3Gateway):
        def __init__(self, *a: Any, **options: Any) -> None:
            super().__init__(*a, **options)
            self.listing = Listing()  # type: ignore[assignment]

        async def credentials(self) -> Credentials:
            # With --short, temporary credentials: every link is clamped to their end.
            expiry = datetime.now(UTC) + timedelta(hours=1) if args.short else None
            token = SESSION_TOKEN if args.short else None
            return Credentials(ACCESS_KEY, SECRET_KEY, token, expiry, method="env")

    # The runner imports the gateway class from its module as it opens one.
    gateway_module.S3Gateway = Gateway  # type: ignore[misc]
    args.out.mkdir(parents=True, exist_ok=True)
    os.chdir(args.out)
    prefixes = THREE_LISTINGS if args.three else ONE_LISTING
    manifest = MANIFEST.format(bucket=BUCKET, **prefixes)
    Path("synthetic.yml").write_text(manifest, encoding="utf-8")
    try:
        summary = sharebatch.run_manifest(
            "synthetic.yml",
            out="bundles",
            run_id=RUN_ID,
            concurrency=1,
            split_folders=False,
            workers=None if args.workers == "auto" else int(args.workers),
        )
    except SharebatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        # How many signing workers the run had (each one closed leaves its peak).
        Path("workers.txt").write_text(str(len(pool.WORKER_PEAKS_KIB)))
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
