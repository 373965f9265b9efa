"""Rows put in listing order in bounded memory: an external merge sort.

Inventory data files come in no order, and a listing gives keys in UTF-8 byte order. Python
orders ``str`` by code point, which is the same order as UTF-8's bytes (UTF-8 was made so),
so keys are compared as they are, without encoding them. Rows are kept per prefix in memory
until ``bound`` rows are held in all; then every prefix's rows are sorted and written to a
run file of their own (0600, in a private folder; pickled blocks of rows), and memory starts
again; a prefix's 16 runs are merged into one. Pages come from
``heapq.merge`` of a prefix's runs and what memory still holds: each run is read a line at a
time, so a prefix of any size costs one line per run.
"""

from __future__ import annotations

import heapq
import itertools
import os
import pickle
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from sharebatch.inventory.rows import Row
from sharebatch.models import ObjectRef

DEFAULT_BOUND = 200_000
"""Rows held in memory before they are spilled (about 50 MB of rows), checked after
each batch (the rows of one 256 KiB chunk of a data file: some 20,000)."""
PAGE = 1000  # what a ListObjectsV2 page holds
_BLOCK = 4096  # rows per pickled block of a run file
# ``ObjectRef._make`` without its Python frame and length check: a page's tuple always has
# every field.
_object: Callable[[tuple[object, ...]], ObjectRef] = partial(tuple.__new__, ObjectRef)
FAN_IN = 16
"""Runs a prefix may have: past it they are merged into one, so a merge opens at most this
many files however large the report (2 x concurrency prefixes are merged at once)."""


class KeySorter:
    """Rows of ``bucket`` per prefix, handed back in key order as ``ObjectRef``s; spilled to
    ``folder`` past ``bound``."""

    def __init__(
        self, folder: Path, bucket: str, prefixes: list[str], bound: int = DEFAULT_BOUND
    ) -> None:
        self._folder = folder
        self._bucket = bucket
        self._bound = bound
        self._held: dict[str, list[Row]] = {p: [] for p in prefixes}
        self._runs: dict[str, list[Path]] = {p: [] for p in prefixes}
        self._count = 0
        self._spills = 0
        lengths: dict[int, set[str]] = {}
        for prefix in prefixes:
            lengths.setdefault(len(prefix), set()).add(prefix)
        self._lengths = sorted(lengths.items())

    @property
    def spilled(self) -> int:
        """How many run files were written."""
        return self._spills

    def keep(self, rows: list[Row]) -> list[Row]:
        """Each row under one of the prefixes, kept for each (under "a/" and "a/b/": both);
        the rows kept, once each. Spills once ``bound`` rows are held."""
        kept = []
        held = self._held
        for size, prefixes in self._lengths:
            # A row's prefix of this length is one slice and one set lookup away, however
            # many prefixes there are (a run may read one report for 1,000 of them).
            for row in rows:
                head = row[0][:size]
                if head in prefixes:
                    held[head].append(row)
                    kept.append(row)
        self._count += len(kept)
        if len(self._lengths) > 1 and kept:
            kept = list({id(o): o for o in kept}.values())
        if self._count >= self._bound:
            self.spill()
        return kept

    def spill(self) -> None:
        """Every prefix's rows in memory, sorted, to a run file each."""
        for prefix, rows in self._held.items():
            if not rows:
                continue
            rows.sort()  # by key: see ``pages``
            self._runs[prefix].append(self._write(iter(rows)))
            self._compact(prefix)
            self._held[prefix] = []
        self._count = 0

    def runs(self) -> dict[str, list[Path]]:
        """Each prefix's run files: what a parser process hands its parent (``spill``
        first, so memory holds nothing)."""
        return {prefix: list(paths) for prefix, paths in self._runs.items()}

    def adopt(self, runs: dict[str, list[Path]]) -> None:
        """Run files another sorter of the same prefixes wrote (a parser process's, in a
        private folder of its own under this one's), merged into the pages as if spilled
        here; removed with this sorter's."""
        for prefix, paths in runs.items():
            self._runs[prefix] += paths
            self._spills += len(paths)
            self._compact(prefix)

    def _compact(self, prefix: str) -> None:
        runs = self._runs[prefix]
        if len(runs) >= FAN_IN:
            # One pass over this prefix's runs into a single longer one (a log-structured
            # merge: each row is rewritten about log16(rows / bound) times in all).
            merged = self._write(heapq.merge(*(_read_run(p) for p in runs)))
            for path in runs:
                path.unlink()
            self._runs[prefix] = [merged]

    def _write(self, rows: Iterator[Row]) -> Path:
        path = self._folder / f"run-{self._spills:06d}.pickle"
        self._spills += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "wb", buffering=1 << 20) as out:
            # Blocks of rows pickled: C speed both ways, where text lines cost a quote and an
            # unquote per key. Only this process writes and reads them, in its own 0700
            # staging folder, opened without following links: nobody else's pickle is loaded.
            # Plain tuples (a named tuple pickles through a Python-level __getnewargs__).
            block = list(itertools.islice(rows, _BLOCK))
            while block:
                pickle.dump(block, out, protocol=pickle.HIGHEST_PROTOCOL)
                block = list(itertools.islice(rows, _BLOCK))
        return path

    def pages(self, prefix: str, size: int = PAGE) -> Iterator[list[ObjectRef]]:
        """The prefix's rows in key order, ``size`` at a time."""
        held = self._held[prefix]
        held.sort()
        sources = [_read_run(path) for path in self._runs[prefix]]
        # Rows compare as tuples: the key, which is unique in a report (one version of each
        # object), decides; no key function, so the merge and the sort compare in C.
        merged = heapq.merge(*sources, held) if sources else iter(held)
        bucket = (self._bucket,)
        while rows := list(itertools.islice(merged, size)):
            yield [_object(bucket + row) for row in rows]

    def remove(self) -> None:
        """Every run file (the folder is the caller's)."""
        for paths in self._runs.values():
            for path in paths:
                path.unlink(missing_ok=True)
        self._held = {p: [] for p in self._held}


def _read_run(path: Path) -> Iterator[Row]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with open(fd, "rb", buffering=1 << 20) as source:
        while True:
            try:
                block: list[Row] = pickle.load(source)  # noqa: S301 - our own file
            except EOFError:
                return
            yield from block
