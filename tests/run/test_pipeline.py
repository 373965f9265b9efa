"""The listing stage's scheduling: bounded concurrency, one listing per shared prefix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharebatch.manifest.load import load_manifest
from sharebatch.models import BucketTarget, Credentials, ObjectRef, Presigner
from sharebatch.run.folder import RunFolder
from sharebatch.run.pipeline import _in_key_order, stage
from sharebatch.run.plan import build_plan
from sharebatch.s3.gateway import Level

CREDS = Credentials("AKIAFAKE", "secret")


class StubGateway:
    """Stands in for S3Gateway and records how many requests and listings run at once."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.listings = 0
        self.peak_listings = 0
        self.listed: list[str] = []
        # The gateway's parts, played by the stub itself.
        self.listing = self.signers = self

    def effective(self, target: BucketTarget) -> BucketTarget:
        return target

    async def presigner(self, target: BucketTarget, credentials: Credentials) -> Presigner:
        def presign(
            method: str, bucket: str, key: str, expires: int, params: Mapping[str, str]
        ) -> str:
            return f"https://s3/{bucket}/{key}?X-Amz-Date=20261128T000000Z&X-Amz-Expires={expires}"

        return presign

    async def probe_level(
        self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
    ) -> Level:
        # "Incomplete" sends every prefix to the flat listing, which these tests measure.
        return Level(objects=[], folders=[], complete=False)

    async def list_pages(
        self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
    ) -> AsyncIterator[list[ObjectRef]]:
        assert slot is not None
        self.listings += 1
        self.peak_listings = max(self.peak_listings, self.listings)
        self.listed.append(prefix)
        async with slot:  # the request, as S3Gateway holds it
            self.active += 1
            self.peak = max(self.peak, self.active)
            for _ in range(5):  # hand the loop to other tasks, as a network wait would
                await asyncio.sleep(0)
            self.active -= 1
        # The answer is read after the slot is given back; the listing still holds its page.
        await asyncio.sleep(0)
        yield [ObjectRef(target.bucket, f"{prefix}file", 1, "e", datetime(2026, 1, 1, tzinfo=UTC))]
        self.listings -= 1


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
    """No more than --concurrency requests are in flight at once, and the bound is used
    fully; listings holding a page are bounded by twice that (the memory bound)."""
    plan = build_plan(load_manifest(_manifest(tmp_path, 20)))
    gateway = StubGateway()
    staged = asyncio.run(
        stage(plan, gateway=gateway, credentials=CREDS, folder=None, concurrency=concurrency)  # type: ignore[arg-type]
    )
    assert gateway.peak == concurrency
    assert concurrency <= gateway.peak_listings <= 2 * concurrency
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


def _ref(key: str) -> ObjectRef:
    return ObjectRef("bkt", key, 1, "e", datetime(2026, 1, 1, tzinfo=UTC))


@given(
    st.lists(
        st.lists(
            st.sampled_from(["a", "b", "b.txt", "b0", "é", "z", "-", "~"]), min_size=1, max_size=3
        ),
        max_size=30,
        unique_by=tuple,
    )
)
def test_split_segments_keep_flat_listing_order(paths: list[list[str]]) -> None:
    """Objects of a level and its sub-folders, placed by name, give the flat listing's order."""
    keys = {"p/" + "/".join(parts) for parts in paths}
    direct = sorted((k for k in keys if "/" not in k[2:]), key=str.encode)
    folders = sorted({k[: k.index("/", 2) + 1] for k in keys if "/" in k[2:]}, key=str.encode)
    flattened: list[str] = []
    for segment in _in_key_order([_ref(k) for k in direct], folders):
        if isinstance(segment, str):
            flattened += sorted((k for k in keys if k.startswith(segment)), key=str.encode)
        else:
            flattened += [o.key for o in segment]
    assert flattened == sorted(keys, key=str.encode)


class OnePageGateway(StubGateway):
    """A prefix whose whole level (1,000 objects) arrives in one probe, and counts signatures."""

    signed = 0

    async def presigner(self, target: BucketTarget, credentials: Credentials) -> Presigner:
        def presign(
            method: str, bucket: str, key: str, expires: int, params: Mapping[str, str]
        ) -> str:
            OnePageGateway.signed += 1
            return f"https://s3/{key}?X-Amz-Date=20261128T000000Z&X-Amz-Expires={expires}"

        return presign

    async def probe_level(
        self, target: BucketTarget, prefix: str, *, slot: asyncio.Semaphore | None = None
    ) -> Level:
        return Level(
            objects=[_ref(f"{prefix}{i:04d}") for i in range(1000)], folders=[], complete=True
        )


def test_signing_a_page_hands_the_loop_back_between_batches(tmp_path: Path) -> None:
    """The event loop runs while a 1,000-object page is being signed, not only after it."""
    plan = build_plan(load_manifest(_manifest(tmp_path, 1)))
    gateway = OnePageGateway()
    seen: list[int] = []

    async def main() -> None:
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                seen.append(OnePageGateway.signed)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        folder = RunFolder.create(tmp_path / "out", "run")
        await stage(plan, gateway=gateway, credentials=CREDS, folder=folder, concurrency=4)  # type: ignore[arg-type]
        done.set()
        await watcher

    asyncio.run(main())
    total = OnePageGateway.signed
    # p00/ feeds alice, bob and carol; carol's extra/ is a second 1,000-object level.
    assert total == 4 * 1000
    assert any(0 < n < total for n in seen), "the loop never ran mid-signing"
