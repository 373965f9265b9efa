"""A big prefix with sub-folders is listed folder by folder, with the flat listing's result."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.models import BucketTarget, ObjectRef
from sharebatch.s3.listing import Listing
from tests.support.s3 import S3, fetch, write_manifest


def _files() -> dict[str, bytes]:
    files = {
        f"big/f{i:02d}/obj-{j:03d}.txt": f"{i}/{j}".encode() for i in range(20) for j in range(60)
    }
    # Direct objects that sort between folders ('.' < '/' < '0'), and a folder marker.
    files.update({"big/f05.txt": b"dot", "big/a.txt": b"a", "big/zz.txt": b"zz", "big/f07/": b""})
    return files


@pytest.mark.parametrize(
    ("concurrency", "expected"),
    [
        # Up to 4 x concurrency sub-folders are split; with concurrency 1 it would not pay.
        ("8", [f"big/f{i:02d}/" for i in range(20)]),
        ("1", ["big/"]),
    ],
)
def test_split_listing_matches_the_flat_order(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, concurrency: str, expected: list[str]
) -> None:
    """Sub-folders are listed as separate prefixes; rows come in the one-listing order."""
    files = _files()
    s3.bucket("split-bucket", files, over_http=False)
    listed: list[str] = []
    original = Listing.list_pages

    async def spy(
        self: Listing, target: BucketTarget, prefix: str, **options: Any
    ) -> AsyncIterator[list[ObjectRef]]:
        listed.append(prefix)
        async for page in original(self, target, prefix, **options):
            yield page

    monkeypatch.setattr(Listing, "list_pages", spy)
    manifest = write_manifest(
        tmp_path / "m.yml",
        "version: 1\njobs:\n  - name: j\n    bucket: split-bucket\n    region: eu-west-1\n"
        "    expires_in: 1h\n    prefixes: [big/]\n    recipients: [{id: r}]\n",
    )
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(manifest),
            "--out",
            str(tmp_path / "o"),
            "--endpoint-url",
            s3.endpoint,
            "--concurrency",
            concurrency,
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert sorted(listed) == expected
    with (Path(result.stdout.strip()) / "j" / "r" / "links.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    shared = sorted((k for k, v in files.items() if v), key=str.encode)
    assert [row["key"] for row in rows] == shared
    assert [fetch(row["url"]) for row in rows[:25]] == [files[k] for k in shared[:25]]
