"""Data files parsed by child processes (``inventory/parsing``): the same pages as one process,
private runs, copies removed, and a failure or a dead child named."""

from __future__ import annotations

import os
import random
import signal
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sharebatch.errors import InventoryError, RunCrashed
from sharebatch.inventory.parsing import Parsers, parse_file
from sharebatch.inventory.rows import Columns
from sharebatch.inventory.sort import KeySorter
from sharebatch.models import ObjectRef
from tests.support.inventory import COLUMNS, csv_gz
from tests.support.inventory import Row as InventoryRow

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
PREFIXES = ["a/", "b/", "b/deep/"]


def _files(folder: Path, count: int, per_file: int) -> list[Path]:
    """``count`` CSV.gz data files of shuffled keys under the prefixes and outside them."""
    keys = [f"{p}{n:04d} {p[0]}+%.txt" for p in (*PREFIXES, "c/") for n in range(per_file)]
    random.Random(7).shuffle(keys)  # noqa: S311 - an order, not a secret
    paths = []
    for index in range(count):
        rows = [InventoryRow(k, len(k), f"e{len(k)}", WHEN) for k in keys[index::count]]
        path = folder / f"data-{index}"
        path.write_bytes(csv_gz("bucket", rows))
        paths.append(path)
    return paths


def _one_process(folder: Path, files: list[Path]) -> dict[str, list[ObjectRef]]:
    sorter = KeySorter(folder, "bucket", PREFIXES, bound=5)
    columns = Columns.of(list(COLUMNS), "t")
    for path in files:
        parse_file(path, columns, sorter.keep, str(path))
    return {p: [o for page in sorter.pages(p) for o in page] for p in PREFIXES}


@pytest.mark.asyncio
async def test_children_give_the_pages_one_process_gives(tmp_path: Path) -> None:
    """Four data files parsed by two children with a bound of 3 rows each (runs spilled and
    compacted past 16) give each prefix the pages of one process; the copies the children
    were given are gone, their runs are 0600 in 0700 folders, and ``remove`` takes them."""
    here, apart = tmp_path / "here", tmp_path / "apart"
    here.mkdir()
    apart.mkdir(mode=0o700)
    expected = _one_process(here, _files(here, 4, 40))
    given = _files(apart, 4, 40)
    sorter = KeySorter(apart, "bucket", PREFIXES, bound=6)
    parsers = await Parsers.start(2, apart, PREFIXES, 6, Columns.of(list(COLUMNS), "t"), (0, ""))
    try:
        for path in given:
            await parsers.parse(path, f"s3://dest/{path.name}")
        parsed = await parsers.finish()
    finally:
        await parsers.close()
    assert (parsed.rows, parsed.kept) == (160, 120)  # "b/deep/" is under "b/" too: kept once
    assert not any(path.exists() for path in given)
    sorter.adopt(parsed.runs)
    assert {p: [o for page in sorter.pages(p) for o in page] for p in PREFIXES} == expected
    assert len(expected["b/"]) == 80
    runs = [path for paths in parsed.runs.values() for path in paths]
    assert runs
    assert {stat.S_IMODE(p.stat().st_mode) for p in runs} == {0o600}
    assert {stat.S_IMODE(p.parent.stat().st_mode) for p in runs} == {0o700}
    sorter.remove()
    assert not any(p.exists() for p in runs)


@pytest.mark.asyncio
async def test_a_bad_file_in_a_child_is_named(tmp_path: Path) -> None:
    """A data file cut short fails the read with ``TruncatedFile`` naming the file, the
    same error one process raises."""
    [good, bad] = _files(tmp_path, 2, 10)
    bad.write_bytes(bad.read_bytes()[:40])
    kept = tmp_path / "bad-kept"
    kept.write_bytes(bad.read_bytes())  # the child removes what it is given
    parsers = await Parsers.start(
        2, tmp_path, PREFIXES, 100, Columns.of(list(COLUMNS), "t"), (0, "")
    )
    try:
        await parsers.parse(good, "s3://dest/good.csv.gz")
        await parsers.parse(bad, "s3://dest/bad.csv.gz")
        with pytest.raises(InventoryError) as failed:
            await parsers.finish()
    finally:
        await parsers.close()
    assert failed.value.code == "TruncatedFile"
    assert "s3://dest/bad.csv.gz" in str(failed.value)
    with pytest.raises(InventoryError) as alone:
        parse_file(kept, Columns.of(list(COLUMNS), "t"), lambda rows: None, "s3://dest/bad.csv.gz")
    assert str(alone.value) == str(failed.value)


@pytest.mark.asyncio
async def test_a_child_that_dies_fails_the_read(tmp_path: Path) -> None:
    """A parser killed with SIGKILL: the next hand-over or the finish raises ``RunCrashed``
    naming the signal; ``close`` leaves no child running."""
    [path] = _files(tmp_path, 1, 10)
    parsers = await Parsers.start(
        2, tmp_path, PREFIXES, 100, Columns.of(list(COLUMNS), "t"), (0, "")
    )
    try:

        async def hand_over_and_finish() -> None:
            # Either child may be given the file first: the dead one's pipe refuses it, or
            # the finish finds it gone.
            await parsers.parse(path, "s3://dest/one.csv.gz")
            await parsers.parse(path, "s3://dest/one.csv.gz")
            await parsers.finish()

        os.kill(parsers.pids()[0], signal.SIGKILL)
        with pytest.raises(RunCrashed, match="SIGKILL"):
            await hand_over_and_finish()
    finally:
        await parsers.close()
    for pid in parsers.pids():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
