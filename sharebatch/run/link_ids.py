"""Link ids: the one source of the ``x-sharebatch-id`` every issued link carries, signed.

An id is 16 lowercase hex characters: 64 bits from ``secrets``, so two links of any number of
runs never share one in practice, and nobody can guess another recipient's. S3 ignores query
parameters named ``x-...`` but writes them into its server access log's Request-URI, and a
signed one cannot be removed or changed without breaking the signature: each download in the
logs names the very link it came through.

Reading the system's random source costs a system call per draw (about 0.7 us for 8 bytes,
0.2 us per id when 512 are drawn at once), and a run issues tens of thousands of links a
second, so ids are drawn in batches and handed out from a pool. A forked child starts with an
empty pool: it must never hand out the ids its parent still holds.

``random_bits`` is the one place randomness enters; the golden run replaces it with a
deterministic source, as libfaketime freezes its clock.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlsplit

from sharebatch.models import LINK_ID_PARAM

__all__ = [
    "LINK_ID_PARAM",
    "LINK_ID_PATTERN",
    "draw",
    "given",
    "link_id_of",
    "new_link_id",
    "random_bits",
]

LINK_ID_PATTERN = re.compile(r"[0-9a-f]{16}")
"""What ``new_link_id`` returns."""

_BYTES = 8
_BATCH = 512  # ids per draw: 4 KiB of randomness, one system call
_pool: list[str] = []
_handed: list[list[str]] = []  # ids a signing worker was given (see ``given``)


def random_bits(size: int) -> bytes:
    """``size`` random bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(size)


def _refill() -> None:
    text = random_bits(_BYTES * _BATCH).hex()
    step = 2 * _BYTES
    _pool.extend([text[i : i + step] for i in range(0, len(text), step)])


def new_link_id() -> str:
    """A fresh link id: 16 lowercase hex characters (64 random bits), never handed out twice.

    Safe from several threads: ``list.pop`` is atomic, so an id leaves the pool once; two
    threads refilling at once only add more fresh ids.
    """
    if _handed:
        try:
            return _handed[-1].pop()
        except IndexError:
            raise RuntimeError("a signing worker needed more link ids than it was given") from None
    try:
        return _pool.pop()
    except IndexError:
        _refill()
        return _pool.pop()


def draw(count: int) -> list[str]:
    """``count`` ids in the order ``new_link_id`` hands them out (the parent of signing
    workers draws each page's ids in the order a one-process run would)."""
    if _handed:
        return [new_link_id() for _ in range(count)]
    # new_link_id pops from the pool's end: the same ids, taken a slice at a time.
    found: list[str] = []
    while len(found) < count:
        if not _pool:
            _refill()
        taken = _pool[-(count - len(found)) :]
        del _pool[-len(taken) :]
        taken.reverse()
        found += taken
    return found


@contextmanager
def given(ids: list[str]) -> Iterator[None]:
    """In a signing worker: ``new_link_id`` hands out exactly ``ids``, in order, and nothing
    else while the block runs; the worker never draws ids of its own."""
    stack = list(reversed(ids))
    _handed.append(stack)
    try:
        yield
    finally:
        _handed.pop()
    if stack:
        raise RuntimeError(f"a signing worker was given {len(stack)} link ids too many")


def link_id_of(url: str) -> str | None:
    """The ``x-sharebatch-id`` of a URL as signed (decoded), or None when it carries none."""
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name == LINK_ID_PARAM:
            return value
    return None


os.register_at_fork(after_in_child=_pool.clear)
