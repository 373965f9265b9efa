"""``verify_sample``'s choice of rows: uniform, reproducible, and the same however the rows
arrive (data files are read concurrently, and by more than one process)."""

from __future__ import annotations

import hashlib
import heapq

from sharebatch.inventory.rows import Row
from sharebatch.models import ObjectRef


class Sample:
    """The ``size`` rows whose keys hash lowest under ``seed``: a uniform random sample that
    does not depend on the order rows arrive in, nor on how they were split: the samples of
    parts, offered to one ``Sample``, give the sample of the whole."""

    def __init__(self, size: int, seed: str) -> None:
        self._size = size
        self._seed = seed.encode()[:64]
        self._heap: list[tuple[int, str, Row]] = []  # max-heap by negated hash

    def offer(self, row: Row) -> None:
        if not self._size:
            return
        key = row[0]
        mark = -int.from_bytes(
            hashlib.blake2b(key.encode(), key=self._seed, digest_size=8).digest(), "big"
        )
        item = (mark, key, row)
        if len(self._heap) < self._size:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    def rows(self) -> list[Row]:
        """The rows chosen so far, in no order."""
        return [row for _, _, row in self._heap]

    def chosen(self, bucket: str) -> list[ObjectRef]:
        return sorted(ObjectRef(bucket, *row) for row in self.rows())
