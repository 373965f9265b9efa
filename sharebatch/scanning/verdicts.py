"""Scan statuses, the object tags that record them, and GuardDuty's tags read as statuses.

An upload's status is one of ``STATUSES``. Only ``clean`` means "scanned to the end and
nothing found"; everything else makes ``inbox --scan`` exit 1. sharebatch records its own
verdicts on the object as tags (``TAG_*``), with the ETag that was scanned: a tag whose ETag
is not the object's current one says nothing about the object (it was replaced since).

GuardDuty Malware Protection for S3, with tagging on, tags each object it scans
``GuardDutyMalwareScanStatus`` = ``NO_THREATS_FOUND``, ``THREATS_FOUND``, ``UNSUPPORTED``,
``ACCESS_DENIED`` or ``FAILED`` (AWS GuardDuty user guide, "Monitoring S3 object scans with
GuardDuty managed tags"). An object is tagged afresh when it is uploaded again (a PUT replaces
an object's tags), so that tag always speaks of the current object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sharebatch.times import iso

Status = Literal["clean", "infected", "unscanned", "scan_error", "too_large_to_scan"]
STATUSES: tuple[Status, ...] = ("clean", "infected", "unscanned", "scan_error", "too_large_to_scan")

TAG_VERDICT = "sharebatch-scan"
TAG_SIGNATURE = "sharebatch-scan-signature"
TAG_TIME = "sharebatch-scan-time"
TAG_ETAG = "sharebatch-scan-etag"
OUR_TAGS = (TAG_VERDICT, TAG_SIGNATURE, TAG_TIME, TAG_ETAG)

TAG_VALUES: dict[Status, str] = {
    "clean": "clean",
    "infected": "infected",
    "scan_error": "error",
    "too_large_to_scan": "too-large",
}
"""The value of ``sharebatch-scan`` for each status a scan can end in."""
_FROM_TAG = {value: status for status, value in TAG_VALUES.items()}

GUARDDUTY_TAG = "GuardDutyMalwareScanStatus"
GUARDDUTY: dict[str, Status] = {
    "NO_THREATS_FOUND": "clean",
    "THREATS_FOUND": "infected",
    "UNSUPPORTED": "scan_error",
    "ACCESS_DENIED": "scan_error",
    "FAILED": "scan_error",
}

# S3 tag values: letters, digits, spaces and + - = . _ : / @, at most 256 characters.
_TAG_UNSAFE = re.compile(r"[^\w +\-=.:/@]", re.ASCII)
MAX_TAG_VALUE = 256


@dataclass(frozen=True, slots=True)
class Verdict:
    """One upload's scan status; ``signature`` when infected, ``detail`` says why not clean.

    ``seconds`` is how long this scan took (None when it was read from tags); ``fresh`` is
    True when the object was scanned by this call, False when its tags already said.
    """

    status: Status
    signature: str | None = None
    detail: str | None = None
    seconds: float | None = None
    fresh: bool = False


def tag_value(text: str) -> str:
    """``text`` as an S3 tag value may hold it: other characters become ``_``, cut to 256."""
    return _TAG_UNSAFE.sub("_", text)[:MAX_TAG_VALUE]


def verdict_tags(verdict: Verdict, etag: str, when: datetime) -> dict[str, str]:
    """Our tags for ``verdict`` on the object of ``etag``, scanned at ``when``."""
    tags = {
        TAG_VERDICT: TAG_VALUES.get(verdict.status, "error"),
        TAG_TIME: iso(when),
        TAG_ETAG: tag_value(etag),
    }
    if verdict.signature:
        tags[TAG_SIGNATURE] = tag_value(verdict.signature)
    return tags


def merged_tags(existing: Mapping[str, object], ours: Mapping[str, str]) -> dict[str, str]:
    """The object's tags with ours replaced: PutObjectTagging sets the whole set, and other
    tags (GuardDuty's, an owner's) must survive."""
    kept = {str(k): str(v) for k, v in existing.items() if k not in OUR_TAGS}
    return kept | dict(ours)


def recorded(tags: Mapping[str, object], etag: str) -> Verdict | None:
    """Our verdict from an object's tags, when one was recorded for its current ``etag``."""
    value, tagged_etag = tags.get(TAG_VERDICT), tags.get(TAG_ETAG)
    if not isinstance(value, str) or tagged_etag != tag_value(etag):
        return None
    status = _FROM_TAG.get(value)
    if status is None:
        return None
    signature = tags.get(TAG_SIGNATURE)
    return Verdict(status, signature if isinstance(signature, str) else None)


def guardduty(tags: Mapping[str, object]) -> Verdict:
    """GuardDuty's verdict from an object's tags: untagged is ``unscanned``; an unknown value
    is a ``scan_error`` (fail closed), never clean."""
    value = tags.get(GUARDDUTY_TAG)
    if not isinstance(value, str):
        return Verdict("unscanned", detail="no GuardDutyMalwareScanStatus tag (yet)")
    status = GUARDDUTY.get(value, "scan_error")
    if status == "clean":
        return Verdict("clean")
    if status == "infected":
        return Verdict("infected", detail=f"GuardDuty: {value}")
    return Verdict(status, detail=f"GuardDuty: {value}")
