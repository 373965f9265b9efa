"""Tests for sharebatch.periods: reporting periods, moments and durations."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sharebatch.manifest import load as manifest
from sharebatch.manifest.periods import (
    PERIOD_KINDS,
    VARIABLES,
    Period,
    PeriodKind,
    parse_duration,
    parse_moment,
    previous_period,
    variables,
)
from sharebatch.models import MAX_EXPIRES_IN

# --- periods --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("as_of", "kind", "expected"),
    [
        (date(2026, 11, 28), "quarter", ("2026-Q3", date(2026, 7, 1), date(2026, 9, 30))),
        (date(2026, 11, 28), "month", ("2026-10", date(2026, 10, 1), date(2026, 10, 31))),
        (date(2026, 11, 28), "year", ("2025", date(2025, 1, 1), date(2025, 12, 31))),
        (date(2026, 1, 1), "quarter", ("2025-Q4", date(2025, 10, 1), date(2025, 12, 31))),
        (date(2026, 1, 15), "month", ("2025-12", date(2025, 12, 1), date(2025, 12, 31))),
        (date(2026, 10, 1), "quarter", ("2026-Q3", date(2026, 7, 1), date(2026, 9, 30))),
        (date(2026, 9, 30), "quarter", ("2026-Q2", date(2026, 4, 1), date(2026, 6, 30))),
        (date(2024, 3, 1), "month", ("2024-02", date(2024, 2, 1), date(2024, 2, 29))),
        (date(2023, 3, 31), "month", ("2023-02", date(2023, 2, 1), date(2023, 2, 28))),
        (date(2024, 4, 1), "quarter", ("2024-Q1", date(2024, 1, 1), date(2024, 3, 31))),
    ],
)
def test_previous_period_examples(
    as_of: date, kind: PeriodKind, expected: tuple[str, date, date]
) -> None:
    """The last complete period before as_of; on a period's first day, the one just ended."""
    period = previous_period(as_of, kind)
    assert (period.label, period.start, period.end) == expected
    assert period.kind == kind


def test_period_fields_for_a_quarter() -> None:
    """A quarter period carries its year, quarter number and first month."""
    assert previous_period(date(2026, 11, 28), "quarter") == Period(
        kind="quarter",
        year=2026,
        quarter=3,
        month=7,
        start=date(2026, 7, 1),
        end=date(2026, 9, 30),
        label="2026-Q3",
    )


def _current_start(day: date, kind: PeriodKind) -> date:
    """The first day of the period containing ``day`` (the reference for the property test)."""
    if kind == "year":
        return date(day.year, 1, 1)
    if kind == "quarter":
        return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    return date(day.year, day.month, 1)


@given(st.dates(min_value=date(1001, 1, 1)), st.sampled_from(PERIOD_KINDS))
def test_previous_period_properties(as_of: date, kind: PeriodKind) -> None:
    """For any date: start <= end < as_of, and the day after end starts as_of's own period."""
    period = previous_period(as_of, kind)
    assert period.start <= period.end < as_of
    assert period.end + timedelta(days=1) == _current_start(as_of, kind) <= as_of
    assert period.start.day == 1
    assert period.end.day == calendar.monthrange(period.end.year, period.end.month)[1]
    assert (period.year, period.month) == (period.start.year, period.start.month)
    assert period.quarter == (period.month - 1) // 3 + 1
    if kind == "quarter":
        assert period.month in (1, 4, 7, 10)
        assert period.label == f"{period.year}-Q{period.quarter}"
    if as_of.month == 1 and kind != "year":
        assert period.year == as_of.year - 1  # January looks back into the previous year


@given(st.integers(1001, 9999))
def test_february_ends_on_the_29th_in_leap_years(year: int) -> None:
    """A month period for February ends on the 29th exactly in leap years."""
    period = previous_period(date(year, 3, 1), "month")
    assert period.end == date(year, 2, 29 if calendar.isleap(year) else 28)


def test_variables_for_2026_11_28() -> None:
    """period.* and as_of.* are text, zero-padded where the reference says so."""
    as_of = date(2026, 11, 28)
    assert variables(previous_period(as_of, "quarter"), as_of) == {
        "period.year": "2026",
        "period.quarter": "3",
        "period.month": "07",
        "period.start": "2026-07-01",
        "period.end": "2026-09-30",
        "period.next_start": "2026-10-01",
        "period.label": "2026-Q3",
        "period.kind": "quarter",
        "as_of.date": "2026-11-28",
        "as_of.year": "2026",
        "as_of.month": "11",
        "as_of.day": "28",
    }
    month = variables(previous_period(as_of, "month"), as_of)
    assert (month["period.label"], month["period.month"], month["period.quarter"]) == (
        "2026-10",
        "10",
        "4",
    )
    year = variables(previous_period(as_of, "year"), as_of)
    assert (year["period.label"], year["period.month"], year["period.end"]) == (
        "2025",
        "01",
        "2025-12-31",
    )
    assert year["period.next_start"] == "2026-01-01"  # the year wraps
    assert tuple(year) == VARIABLES


# --- moments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-01", datetime(2026, 10, 1, tzinfo=UTC)),
        (date(2026, 10, 1), datetime(2026, 10, 1, tzinfo=UTC)),
        ("2026-10-01T00:00:00Z", datetime(2026, 10, 1, tzinfo=UTC)),
        ("2026-10-01T09:30:00+02:00", datetime(2026, 10, 1, 7, 30, tzinfo=UTC)),
        (
            datetime(2026, 10, 1, 1, tzinfo=timezone(timedelta(hours=1))),
            datetime(2026, 10, 1, tzinfo=UTC),
        ),
        (" 2026-10-01 ", datetime(2026, 10, 1, tzinfo=UTC)),
    ],
)
def test_parse_moment_gives_aware_utc(value: date | str, expected: datetime) -> None:
    """A date is midnight UTC; a moment with a zone is converted to UTC."""
    moment = parse_moment(value)
    assert moment == expected
    assert moment.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-10-01T12:00:00", "has no time zone; add Z for UTC"),
        (datetime(2026, 10, 1, 12), "2026-10-01T12:00:00 has no time zone"),
        ("2026-02-30", "'2026-02-30' is not a date (day is out of range for month)"),
        ("next tuesday", "'next tuesday' is not a date; use YYYY-MM-DD"),
        ("", "is not a date"),
    ],
)
def test_parse_moment_rejects_with_a_human_message(value: date | str, message: str) -> None:
    """Unreadable text and times without a zone raise ValueError saying what to write."""
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_moment(value)


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90),
        ("30m", 1_800),
        ("72h", 259_200),
        ("7d", 604_800),
        ("1w", 604_800),
        ("1d12h", 129_600),
        ("1h30m15s", 5_415),
        ("3600", 3_600),
        (" 45m ", 2_700),
        (3600, 3_600),
        ("P7D", 604_800),
        ("PT12H", 43_200),
        ("P1DT2H30M", 95_400),
        ("PT90S", 90),
        ("P1W", 604_800),
        ("pt5m", 300),
    ],
)
def test_parse_duration_accepts_supported_forms(value: str | int, seconds: int) -> None:
    """Compact units, plain seconds and ISO 8601 durations all convert to seconds."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9d", "9d is longer than the 7-day limit for presigned URLs"),
        (604_801, "longer than the 7-day limit"),
        ("0", "must be positive"),
        (0, "must be positive"),
        (-5, "must be positive"),
        ("-5m", "must be positive"),
        ("PT0S", "must be positive"),
        ("tomorrow", "'tomorrow' is not a duration; use e.g. 30m, 72h, 7d or P7D"),
        ("", "is not a duration"),
        ("5 m", "is not a duration"),
        ("1h1d", "is not a duration"),
        ("P", "is not a duration"),
        ("PT", "is not a duration"),
        ("P1DT", "is not a duration"),
        ("P1M", "months or years"),
        ("P1Y2D", "months or years"),
        ("P1MT2H", "months or years"),
        ("Python", "is not a duration"),
        ("PT1.5S", "is not a duration"),
        ("1" * 5000, "is not a duration"),
        ("٣s", "is not a duration"),
        (True, "true is not a duration"),
    ],
)
def test_parse_duration_rejects_with_a_human_message(value: str | int, message: str) -> None:
    """Out-of-range and unreadable durations raise ValueError explaining what to write."""
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(value)


@st.composite
def duration_parts(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """Days, hours, minutes, seconds (each unbounded by the others) totalling at most 7 days."""
    days = draw(st.integers(0, 7))
    left = MAX_EXPIRES_IN - days * 86_400
    hours = draw(st.integers(0, left // 3_600))
    left -= hours * 3_600
    minutes = draw(st.integers(0, left // 60))
    left -= minutes * 60
    seconds = draw(st.integers(0, left))
    return days, hours, minutes, seconds


@given(duration_parts())
def test_compact_and_iso_durations_agree(parts: tuple[int, int, int, int]) -> None:
    """For any d, h, m, s totalling 1..604800 s, `XdYhZmWs` and ISO `PXDTYHZMWS` both parse."""
    d, h, m, s = parts
    total = d * 86_400 + h * 3_600 + m * 60 + s
    assume(total > 0)
    compact = "".join(f"{n}{unit}" for n, unit in zip(parts, "dhms", strict=True) if n)
    assert parse_duration(compact) == total
    assert parse_duration(f"P{d}DT{h}H{m}M{s}S") == total
    assert parse_duration(str(total)) == parse_duration(total) == total


def test_manifest_reexports_the_duration_parser() -> None:
    """sharebatch.manifest.load.parse_duration is this parser, capped at the one 7-day limit."""
    assert manifest.parse_duration is parse_duration
    assert MAX_EXPIRES_IN == 604_800
    assert parse_duration(MAX_EXPIRES_IN) == MAX_EXPIRES_IN
    with pytest.raises(ValueError, match="7-day limit"):
        parse_duration(MAX_EXPIRES_IN + 1)
