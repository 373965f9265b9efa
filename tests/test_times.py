"""Tests for sharebatch.times: the one way moments are written and read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharebatch.times import iso, parse_iso

PARIS_SUMMER = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 10, 1, 9, 30, tzinfo=UTC), "2026-10-01T09:30:00Z"),
        (datetime(2026, 10, 1, 9, 30, 5, 999_999, tzinfo=UTC), "2026-10-01T09:30:05Z"),
        (datetime(2026, 10, 1, 11, 30, tzinfo=PARIS_SUMMER), "2026-10-01T09:30:00Z"),
        (datetime(2026, 10, 1, 9, 30), "2026-10-01T09:30:00Z"),
        (datetime(5, 1, 1, tzinfo=UTC), "0005-01-01T00:00:00Z"),
    ],
    ids=["utc", "fraction-dropped", "other-zone", "naive-is-utc", "early-year"],
)
def test_iso_writes_utc_to_the_second(moment: datetime, expected: str) -> None:
    """A moment in any zone is written in UTC, to the second, with a four-digit year and Z."""
    assert iso(moment) == expected


def test_iso_is_the_same_text_for_the_same_instant_in_any_zone() -> None:
    """The cache keys equal instants alike; each zone's moment still gets the UTC text."""
    utc = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)
    assert iso(utc.astimezone(PARIS_SUMMER)) == iso(utc) == "2026-10-01T09:30:00Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-01T09:30:00Z", datetime(2026, 10, 1, 9, 30, tzinfo=UTC)),
        ("2026-10-01T11:30:00+02:00", datetime(2026, 10, 1, 9, 30, tzinfo=UTC)),
        ("2026-10-01T09:30:00.250Z", datetime(2026, 10, 1, 9, 30, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_parse_iso_gives_aware_utc(text: str, expected: datetime) -> None:
    """A moment with a zone is read as an aware UTC datetime."""
    parsed = parse_iso(text)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", "'soon' is not a moment"),
        ("2026-10-01T09:30:00", "'2026-10-01T09:30:00' has no time zone"),
        ("2026-10-01", "'2026-10-01' has no time zone"),
    ],
)
def test_parse_iso_refuses_text_without_a_zone(text: str, message: str) -> None:
    """Text that is not a moment, or a moment without a zone, is a ValueError saying which."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        parse_iso(text)


@given(st.datetimes(timezones=st.just(UTC)).map(lambda m: m.replace(microsecond=0)))
def test_parse_iso_reads_back_what_iso_writes(moment: datetime) -> None:
    """Every moment iso writes reads back as the same instant."""
    assert parse_iso(iso(moment)) == moment
