"""The select stage: glob semantics and every filter condition."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from sharebatch.models import Filters, ObjectRef
from sharebatch.run.select import Selector, glob_to_regex, linkable, unlinkable

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _obj(key: str, size: int = 10, modified: datetime = T0) -> ObjectRef:
    return ObjectRef("bkt", key, size, "etag", modified)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("*.pdf", "a.pdf", True),
        ("*.pdf", "dir/a.pdf", False),  # '*' stays within one segment
        ("**/*.pdf", "a.pdf", True),  # '**/' may match no folder
        ("**/*.pdf", "x/y/z/a.pdf", True),
        ("**/*.pdf", "x/y/a.pdfx", False),
        ("reports/**", "reports/a/b/c.txt", True),
        ("reports/**", "other/reports/a", False),
        ("reports/*/summary.*", "reports/q3/summary.pdf", True),
        ("reports/*/summary.*", "reports/q3/x/summary.pdf", False),
        ("file-?.csv", "file-1.csv", True),
        ("file-?.csv", "file-10.csv", False),
        ("file-?.csv", "file-/.csv", False),
        ("[ab]*.txt", "b-notes.txt", True),
        ("[!ab]*.txt", "b-notes.txt", False),
        ("[!ab]*.txt", "c-notes.txt", True),
        ("a+b (1).txt", "a+b (1).txt", True),  # regex metacharacters are literal
        ("a+b (1).txt", "aab (1).txt", False),
        ("**/draft-*", "q3/draft-v2.docx", True),
        ("**/draft-*", "q3/final/draft/x.docx", False),
    ],
)
def test_glob_semantics(pattern: str, key: str, matches: bool) -> None:
    """'**' crosses '/', '*' and '?' do not; everything else is literal."""
    assert bool(re.fullmatch(glob_to_regex(pattern), key)) is matches


def test_no_filters_select_everything() -> None:
    """A route without filters passes each page through untouched."""
    page = [_obj("a"), _obj("b/c")]
    assert Selector(Filters()).select(page) is page


def test_include_and_exclude_combine() -> None:
    """A key must match some include pattern and no exclude pattern."""
    selector = Selector(Filters(include=("**/*.pdf", "*.csv"), exclude=("**/draft-*",)))
    keys = ["a.csv", "x/a.csv", "x/r.pdf", "x/draft-r.pdf", "r.txt"]
    assert [o.key for o in selector.select([_obj(k) for k in keys])] == ["a.csv", "x/r.pdf"]


def test_modified_range_is_half_open() -> None:
    """modified_after is inclusive and modified_before exclusive, so periods tile exactly."""
    end = datetime(2026, 10, 1, tzinfo=UTC)
    selector = Selector(Filters(modified_after=T0, modified_before=end))
    times = {"before": datetime(2026, 6, 30, 23, 59, tzinfo=UTC), "start": T0, "end": end}
    picked = [o.key for o in selector.select([_obj(k, modified=t) for k, t in times.items()])]
    assert picked == ["start"]


def test_size_bounds_are_inclusive() -> None:
    """min_size and max_size both admit objects of exactly that size."""
    selector = Selector(Filters(min_size=10, max_size=20))
    sizes = [9, 10, 20, 21]
    assert [o.size for o in selector.select([_obj(str(s), size=s) for s in sizes])] == [10, 20]


@pytest.mark.parametrize(
    "keys",
    [
        ["a/b.pdf", "c.txt", "d/e/f"],
        ["a/./b", "ok", "../up", "x/..", ".", "..", ".hidden", "a/.b", "a/b."],
        ["a/", "/", "", "a//b", "./", "a/.../b"],
    ],
)
def test_a_pages_unlinkable_objects_are_those_linkable_refuses(keys: list[str]) -> None:
    """unlinkable's one pass over a page gives exactly the objects linkable refuses, in order
    (a key starting with a dot right after another key included)."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    page = [ObjectRef("b", key, 1, "e", when) for key in keys]
    assert unlinkable(page) == [o for o in page if not linkable(o.key)]
