"""The external merge sort: any bound gives the order of one sort, runs private and removed."""

from __future__ import annotations

import random
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharebatch.inventory.rows import Row
from sharebatch.inventory.sort import KeySorter
from sharebatch.models import ObjectRef

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _row(key: str, size: int = 1) -> Row:
    return (key, size, f"etag\t{key[:3]}", WHEN)


def _drain(sorter: KeySorter, prefix: str, size: int = 1000) -> list[ObjectRef]:
    return [obj for page in sorter.pages(prefix, size) for obj in page]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(
        st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12), max_size=60
    ),
    bound=st.integers(1, 9),
)
def test_any_bound_gives_utf8_byte_order(
    tmp_path_factory: pytest.TempPathFactory, keys: list[str], bound: int
) -> None:
    """Keys of any characters (tabs, newlines, '%', astral ones), spilled every ``bound``
    rows, come back whole and in UTF-8 byte order, as S3 lists them."""
    sorter = KeySorter(tmp_path_factory.mktemp("runs"), "b", [""], bound)
    sorter.keep([_row(key) for key in keys])
    got = _drain(sorter, "", 7)
    assert [o.key for o in got] == sorted(keys, key=lambda k: k.encode())
    assert got == [ObjectRef("b", *_row(o.key)) for o in got]


def test_spilled_runs_are_private_and_removed(tmp_path: Path) -> None:
    """Run files are 0600; pages are at most the page size; ``remove`` leaves none behind."""
    sorter = KeySorter(tmp_path, "b", ["a/", "b/"], bound=10)
    keys = [f"{p}{i:03d}" for p in ("a/", "b/") for i in range(45)]
    random.Random(3).shuffle(keys)  # noqa: S311 - an order, not a secret
    for key in keys:
        assert sorter.keep([_row(key), _row("c/" + key)]) == [_row(key)]
    runs = list(tmp_path.iterdir())
    assert sorter.spilled == len(runs) >= 8
    assert {stat.S_IMODE(p.stat().st_mode) for p in runs} == {0o600}
    pages = list(sorter.pages("a/", 20))
    assert [len(p) for p in pages] == [20, 20, 5]
    assert [o.key for p in pages for o in p] == [f"a/{i:03d}" for i in range(45)]
    sorter.remove()
    assert not list(tmp_path.iterdir())
