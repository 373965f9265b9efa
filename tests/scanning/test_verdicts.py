"""Verdicts as tags: what we write, what we trust when reading back, GuardDuty's values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sharebatch.scanning.verdicts import (
    GUARDDUTY_TAG,
    TAG_ETAG,
    TAG_SIGNATURE,
    TAG_VERDICT,
    Verdict,
    guardduty,
    merged_tags,
    recorded,
    tag_value,
    verdict_tags,
)

WHEN = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_tags_record_verdict_signature_time_and_the_scanned_etag() -> None:
    """An infected verdict becomes four tags, the time in our one UTC format."""
    tags = verdict_tags(Verdict("infected", "Win.Test.EICAR"), "abc-2", WHEN)
    assert tags == {
        TAG_VERDICT: "infected",
        TAG_SIGNATURE: "Win.Test.EICAR",
        "sharebatch-scan-time": "2026-11-28T12:00:00Z",
        TAG_ETAG: "abc-2",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Win.Test.EICAR_HDB-1", "Win.Test.EICAR_HDB-1"),
        ("evil\u202ename\n<x>", "evil_name__x_"),
        ("a" * 300, "a" * 256),
    ],
)
def test_tag_values_keep_only_what_s3_accepts(text: str, expected: str) -> None:
    """A signature name from clamd is outsiders' text: characters S3 refuses in a tag value
    (and controls, bidi overrides) become _, and it is cut to S3's 256 characters."""
    assert tag_value(text) == expected


def test_a_verdict_recorded_for_another_etag_says_nothing() -> None:
    """Tags speak of the ETag they name; after a replacement they are no verdict at all."""
    tags = verdict_tags(Verdict("clean"), "old", WHEN)
    assert recorded(tags, "old") == Verdict("clean")
    assert recorded(tags, "new") is None
    assert recorded({TAG_VERDICT: "sparkling", TAG_ETAG: "old"}, "old") is None


def test_our_tags_replace_ours_and_keep_everyone_elses() -> None:
    """PutObjectTagging replaces the whole set: others' tags are carried over, ours renewed."""
    merged = merged_tags(
        {"owner": "legal", TAG_VERDICT: "error", TAG_SIGNATURE: "Old.Sig"},
        verdict_tags(Verdict("clean"), "e", WHEN),
    )
    assert merged["owner"] == "legal" and merged[TAG_VERDICT] == "clean"
    assert TAG_SIGNATURE not in merged


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("NO_THREATS_FOUND", "clean"),
        ("THREATS_FOUND", "infected"),
        ("UNSUPPORTED", "scan_error"),
        ("ACCESS_DENIED", "scan_error"),
        ("FAILED", "scan_error"),
        ("no_threats_found", "scan_error"),
    ],
)
def test_guardduty_values_map_fail_closed(value: str, status: str) -> None:
    """Each documented GuardDutyMalwareScanStatus value; anything else (even the right word
    in another case) is an error, never clean."""
    assert guardduty({GUARDDUTY_TAG: value}).status == status


def test_no_guardduty_tag_is_unscanned() -> None:
    """GuardDuty has not tagged the object (yet): unscanned."""
    assert guardduty({"owner": "legal"}).status == "unscanned"
