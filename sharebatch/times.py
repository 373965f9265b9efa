"""Moments as sharebatch writes and reads them: UTC, to the second, ``2026-10-01T09:30:00Z``.

Bundles, the summary, the audit log, messages and the lock file all write moments through
``iso``, so the same instant is the same text everywhere, whatever zone it was computed in.
``parse_iso`` reads such text back (and any ISO 8601 moment that names its zone).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime


@functools.lru_cache(maxsize=1024)
def iso(moment: datetime) -> str:
    """``moment`` in UTC, second precision (fractions dropped), ``Z`` suffix.

    A moment in another zone is converted; a naive one is taken to be UTC already (S3,
    botocore and the manifest's parser only ever give aware ones).
    """
    # Cached: a batch of links shares its expiry, and objects written together their time.
    # Equal instants hash alike in any zone, and they have one UTC text, so the cache is sound.
    if moment.utcoffset() is not None:
        moment = moment.astimezone(UTC)
    # isoformat, not strftime: %Y does not pad years before 1000 to four digits.
    return moment.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def parse_iso(text: str) -> datetime:
    """An ISO 8601 moment with a zone (``...Z`` or ``+02:00``) as an aware UTC ``datetime``.

    ``ValueError`` for text that is not a moment, or a moment without a zone.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a moment") from None
    if moment.utcoffset() is None:
        raise ValueError(f"{text!r} has no time zone")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-14:00 is past datetime.max in UTC
        raise ValueError(f"{text!r} is not a moment datetime can hold in UTC") from None
