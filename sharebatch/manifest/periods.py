"""Time in a manifest: reporting periods, moments and durations.

A scheduled distribution runs after a period ends and shares that period's files, so every
``{period.*}`` template variable describes the last *complete* period before the run date
(``as_of``): a run on 2026-11-28 is about 2026 Q3, October 2026, or the year 2025.

Moments (filter bounds, ``expires_at``) are read by ``parse_moment``: a date means midnight UTC,
a date and time must say its zone, and the result is always an aware UTC ``datetime``.
Durations (``expires_in``) are read by ``parse_duration``, capped at the 7 days a SigV4
presigned URL can live.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args

from sharebatch.manifest.source import show
from sharebatch.models import MAX_EXPIRES_IN

PeriodKind = Literal["quarter", "month", "year"]
PERIOD_KINDS: tuple[PeriodKind, ...] = get_args(PeriodKind)

VARIABLES: tuple[str, ...] = (
    "period.year",
    "period.quarter",
    "period.month",
    "period.start",
    "period.end",
    "period.next_start",
    "period.label",
    "period.kind",
    "as_of.date",
    "as_of.year",
    "as_of.month",
    "as_of.day",
)
"""The names ``variables`` returns, in the order messages list them."""

DURATION_HINT = "use e.g. 30m, 72h, 7d or P7D"
_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_COMPACT_RE = re.compile(r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_ISO_RE = re.compile(
    r"P(?:([0-9]+)W)?(?:([0-9]+)D)?(?:T(?=[0-9])(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?",
    re.IGNORECASE,
)
_ISO_DATE_PART_RE = re.compile(r"P(?:[0-9]+[YMWD])+")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MOMENT_HINT = "use YYYY-MM-DD (midnight UTC) or a moment with a zone, e.g. 2026-10-01T00:00:00Z"


@dataclass(frozen=True)
class Period:
    """One complete period. ``month`` is its first month; ``end`` is its last day (inclusive).

    ``quarter`` is the quarter holding the first month (1 for a year period).
    """

    kind: PeriodKind
    year: int
    quarter: int
    month: int
    start: date
    end: date
    label: str


def _period(kind: PeriodKind, year: int, month: int) -> Period:
    length = {"quarter": 3, "month": 1, "year": 12}[kind]
    last_month = month + length - 1
    end = date(year, last_month, calendar.monthrange(year, last_month)[1])
    label = {
        "quarter": f"{year:04d}-Q{(month - 1) // 3 + 1}",
        "month": f"{year:04d}-{month:02d}",
        "year": f"{year:04d}",
    }[kind]
    return Period(kind, year, (month - 1) // 3 + 1, month, date(year, month, 1), end, label)


def previous_period(as_of: date, kind: PeriodKind) -> Period:
    """The last complete period of ``kind`` before ``as_of``.

    A period still running on ``as_of`` is never chosen, and neither is one that would end on
    ``as_of``: on the first day of a quarter the previous quarter has just ended and is chosen.
    """
    if kind == "year":
        return _period(kind, as_of.year - 1, 1)
    length = 3 if kind == "quarter" else 1
    # Months since year 0 of the current period's first month, minus one period.
    index = as_of.year * 12 + (as_of.month - 1) // length * length - length
    return _period(kind, index // 12, index % 12 + 1)


def variables(period: Period, as_of: date) -> dict[str, str]:
    """The ``period.*`` and ``as_of.*`` template variables, as text."""
    return {
        "period.year": f"{period.year:04d}",
        "period.quarter": str(period.quarter),
        "period.month": f"{period.month:02d}",
        "period.start": period.start.isoformat(),
        "period.end": period.end.isoformat(),
        # The exclusive end, for modified_before: the range [after, before) is half-open.
        "period.next_start": (period.end + timedelta(days=1)).isoformat(),
        "period.label": period.label,
        "period.kind": period.kind,
        "as_of.date": as_of.isoformat(),
        "as_of.year": f"{as_of.year:04d}",
        "as_of.month": f"{as_of.month:02d}",
        "as_of.day": f"{as_of.day:02d}",
    }


def parse_moment(value: date | str) -> datetime:
    """A date (midnight UTC) or a date and time with a zone, as an aware UTC ``datetime``.

    Text is ISO 8601 (``2026-10-01``, ``2026-10-01T09:30:00+02:00``, ``...Z``); anything
    unreadable, and a time without a zone, raises ``ValueError`` with a message for people.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (
                date.fromisoformat(text)
                if DATE_RE.fullmatch(text)
                else datetime.fromisoformat(text)
            )
        except ValueError as exc:
            reason = f" ({exc})" if DATE_RE.match(text) else ""
            raise ValueError(f"{show(text)} is not a date{reason}; {_MOMENT_HINT}") from None
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.utcoffset() is None:
        raise ValueError(
            f"{value.isoformat()} has no time zone; add Z for UTC or an offset like +02:00"
        )
    return value.astimezone(UTC)


def parse_duration(value: str | int, maximum: int = MAX_EXPIRES_IN) -> int:
    """Seconds in ``value``: ``90``, ``"90"``, ``30m``, ``1d12h``, ``1w``, ``P7D``, ``PT12H``.

    The result is between 1 and ``maximum`` (a link's lifetime unless said otherwise); anything
    else raises ``ValueError`` whose message can be shown to the person who wrote the value.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        raise ValueError(f"{shown} is not a duration; {DURATION_HINT}")
    if isinstance(value, int):
        shown, seconds = f"{value} seconds", value
    else:
        shown, text = value.strip(), value.strip()
        negative = text.startswith("-")
        seconds = _parse_duration_text(text[1:] if negative else text, value)
        if negative and seconds > 0:
            raise ValueError(f"{show(value)} must be positive")
    if seconds <= 0:
        raise ValueError(f"{shown} must be positive")
    if seconds > maximum:
        limit = "the 7-day limit for presigned URLs"
        raise ValueError(
            f"{shown} is longer than "
            + (limit if maximum == MAX_EXPIRES_IN else f"{maximum // 86400} days")
        )
    return seconds


def _parse_duration_text(text: str, original: str) -> int:
    # Length cap first: int() refuses very long digit strings with an unrelated message.
    if 0 < len(text) <= 40:
        if text.isascii() and text.isdigit():
            return int(text)
        for pattern in (_COMPACT_RE, _ISO_RE):
            match = pattern.fullmatch(text)
            if match and any(match.groups()):
                units = zip(match.groups(), _UNITS.values(), strict=True)
                return sum(int(n) * unit for n, unit in units if n)
        date_part = text.upper().partition("T")[0]
        if _ISO_DATE_PART_RE.fullmatch(date_part) and ("Y" in date_part or "M" in date_part):
            raise ValueError(
                f"{show(original)} uses months or years, whose length varies;"
                " use days or weeks instead, e.g. P7D"
            )
    raise ValueError(f"{show(original)} is not a duration; {DURATION_HINT}")
