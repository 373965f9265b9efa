"""The listing stage's scheduling: bounded concurrency, one listing per shared prefix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sharebatch.bundles import RunFolder
from sharebatch.manifest import load_manifest
from sharebatch.models import BucketTarget, Credentials, ObjectRef, Presigner
from sharebatch.pipeline import stage
from sharebatch.plan import build_plan

CREDS = Credentials("AKIAFAKE", "secret")


class StubGateway:
    """Stands in for S3Gateway and records how many listings run at once."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.listed: list[str] = []

    def effective(self, target: BucketTarget) -> BucketTarget:
        return target

    async def presigner(self, target: BucketTarget, credentials: Credentials) -> Presigner:
        def presign(
            method: str, bucket: str, key: str, expires: int, params: Mapping[str, str]
        ) -> str:
            return f"https://s3/{bucket}/{key}?X-Amz-Date=20261128T000000Z&X-Amz-Expires={expires}"

        return presign

    async def list_pages(self, target: BucketTarget, prefix: str) -> AsyncIterator[list[ObjectRef]]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.listed.append(prefix)
        for _ in range(5):  # hand the loop to other tasks, as a network wait would
            await asyncio.sleep(0)
        yield [ObjectRef(target.bucket, f"{prefix}file", 1, "e", datetime(2026, 1, 1, tzinfo=UTC))]
        self.active -= 1


def _manifest(tmp_path: Path, prefixes: int) -> Path:
    lines = [f"      - p{i:02d}/" for i in range(prefixes)]
    text = "\n".join(
        [
            "version: 1",
            "defaults: {bucket: bkt-one, region: eu-west-1, expires_in: 1h}",
            "jobs:",
            "  - name: job",
            "    prefixes:",
            *lines,
            "    recipients: [{id: alice}, {id: bob}, {id: carol, prefixes: [p00/, extra/]}]",
        ]
    )
    path = tmp_path / "m.yml"
    path.write_text(text + "\n")
    return path


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_listing_concurrency_is_bounded(tmp_path: Path, concurrency: int) -> None:
    """No more than --concurrency prefixes are listed at once, and the bound is used fully."""
    plan = build_plan(load_manifest(_manifest(tmp_path, 20)))
    gateway = StubGateway()
    staged = asyncio.run(
        stage(plan, gateway=gateway, credentials=CREDS, folder=None, concurrency=concurrency)  # type: ignore[arg-type]
    )
    assert gateway.peak == concurrency
    assert sum(t.objects for t in staged.prefixes) == 21


def test_shared_prefixes_are_listed_once(tmp_path: Path) -> None:
    """Three recipients share twenty prefixes: each distinct prefix is listed exactly once."""
    plan = build_plan(load_manifest(_manifest(tmp_path, 20)))
    gateway = StubGateway()
    folder = RunFolder.create(tmp_path / "out", "run")
    staged = asyncio.run(
        stage(plan, gateway=gateway, credentials=CREDS, folder=folder, concurrency=8)  # type: ignore[arg-type]
    )
    assert sorted(gateway.listed) == sorted([f"p{i:02d}/" for i in range(20)] + ["extra/"])
    rows = {r.recipient: sum(p.rows for p in staged.routes[r.index].parts) for r in plan.routes}
    assert rows == {"alice": 20, "bob": 20, "carol": 21}


def test_covered_prefixes_are_not_given_twice(tmp_path: Path) -> None:
    """A recipient entitled to 'a/' and 'a/b/' gets each object under a/b/ once."""
    path = tmp_path / "m.yml"
    path.write_text(
        "version: 1\njobs:\n  - name: j\n    bucket: bkt-one\n    expires_in: 1h\n"
        "    prefixes: [a/b/, a/]\n    recipients: [{id: r}]\n"
    )
    [route] = build_plan(load_manifest(path)).routes
    assert route.prefixes == ("a/",)
