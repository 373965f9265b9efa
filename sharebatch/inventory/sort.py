"""Rows put in listing order in bounded memory: an external merge sort.

Inventory data files come in no order, and a listing gives keys in UTF-8 byte order. Python
orders ``str`` by code point, which is the same order as UTF-8's bytes (UTF-8 was made so),
so keys are compared as they are, without encoding them. Rows are kept per prefix in memory
until ``bound`` rows are held in all; then every prefix's rows are sorted and written to a
run file of their own (0600, in a private folder), and memory starts again. Pages come from
``heapq.merge`` of a prefix's runs and what memory still holds: each run is read a line at a
time, so a prefix of any size costs one line per run.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from urllib.parse import quote, unquote

from sharebatch.models import ObjectRef

DEFAULT_BOUND = 200_000
"""Rows held in memory before they are spilled (about 60 MB of ``ObjectRef``s)."""
PAGE = 1000  # what a ListObjectsV2 page holds

_by_key = attrgetter("key")


class KeySorter:
    """Rows per prefix, handed back in key order; spilled to ``folder`` past ``bound``."""

    def __init__(self, folder: Path, prefixes: list[str], bound: int = DEFAULT_BOUND) -> None:
        self._folder = folder
        self._bound = bound
        self._held: dict[str, list[ObjectRef]] = {p: [] for p in prefixes}
        self._runs: dict[str, list[Path]] = {p: [] for p in prefixes}
        self._count = 0
        self._spills = 0
        self.prefixes = list(prefixes)

    @property
    def spilled(self) -> int:
        """How many run files were written."""
        return self._spills

    def add(self, prefix: str, obj: ObjectRef) -> None:
        self._held[prefix].append(obj)
        self._count += 1
        if self._count >= self._bound:
            self.spill()

    def spill(self) -> None:
        """Every prefix's rows in memory, sorted, to a run file each."""
        for prefix, rows in self._held.items():
            if not rows:
                continue
            rows.sort(key=_by_key)
            path = self._folder / f"run-{self._spills:06d}.tsv"
            self._spills += 1
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with open(fd, "w", encoding="ascii", newline="\n", buffering=1 << 20) as out:
                # Key and ETag percent-encoded: no tab or line break can be in a field.
                out.writelines(
                    f"{quote(o.key, safe='/')}\t{o.size}\t{quote(o.etag, safe='')}"
                    f"\t{o.last_modified.isoformat()}\n"
                    for o in rows
                )
            self._runs[prefix].append(path)
            self._held[prefix] = []
        self._count = 0

    def pages(self, prefix: str, bucket: str, size: int = PAGE) -> Iterator[list[ObjectRef]]:
        """The prefix's rows in key order, ``size`` at a time."""
        held = self._held[prefix]
        held.sort(key=_by_key)
        sources = [_read_run(path, bucket) for path in self._runs[prefix]]
        merged = heapq.merge(*sources, held, key=_by_key) if sources else iter(held)
        page: list[ObjectRef] = []
        for obj in merged:
            page.append(obj)
            if len(page) == size:
                yield page
                page = []
        if page:
            yield page

    def remove(self) -> None:
        """Every run file (the folder is the caller's)."""
        for paths in self._runs.values():
            for path in paths:
                path.unlink(missing_ok=True)
        self._held = {p: [] for p in self._held}


def _read_run(path: Path, bucket: str) -> Iterator[ObjectRef]:
    with path.open(encoding="ascii") as lines:
        for line in lines:
            key, size, etag, modified = line.rstrip("\n").split("\t")
            yield ObjectRef(
                bucket, unquote(key), int(size), unquote(etag), datetime.fromisoformat(modified)
            )
