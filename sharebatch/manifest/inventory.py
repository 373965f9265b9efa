"""The ``source:`` setting: where a job's objects come from when not from a listing.

``source: {inventory: s3://bucket/prefix/, max_age: 8d, verify_sample: 20}`` names an S3
Inventory report (its destination prefix up to the config ID, or one ``manifest.json``); the
newest one under the prefix is read instead of listing the bucket (``sharebatch/inventory``).
Written on a job, in defaults or on a recipient; the most specific level's block wins as a
whole (its fields do not mix with another level's: they describe one report).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from sharebatch.manifest.fields import check_prefix, hidden_character
from sharebatch.manifest.periods import DURATION_HINT, parse_duration
from sharebatch.manifest.source import describe, show

MAX_AGE_LIMIT = 366 * 86_400
"""The longest ``max_age``: a report older than a year is not a picture of the bucket."""
MAX_VERIFY_SAMPLE = 100_000
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def _inventory_uri(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an s3:// URI, got {describe(value)}")
    hidden = hidden_character(value)
    if hidden is not None:
        raise ValueError(f"{show(value)} contains {hidden}")
    if not value.startswith("s3://"):
        raise ValueError(
            f"{show(value)} is not an s3:// URI; write s3://bucket/prefix/ (the inventory's"
            " destination up to its config ID) or s3://bucket/.../manifest.json"
        )
    bucket, _, key = value[5:].partition("/")
    if not 3 <= len(bucket) <= 63 or not set(bucket) <= _BUCKET_CHARS:
        raise ValueError(f"{show(value)}: {show(bucket)} is not a bucket name")
    if key and not key.endswith("/") and not key.endswith("manifest.json"):
        raise ValueError(
            f"{show(value)} must end with '/' (a prefix holding the reports) or name a"
            " manifest.json"
        )
    if key:
        check_prefix(key)
    return value


def _max_age(value: object) -> int:
    if isinstance(value, float):
        raise ValueError(f"{value} is not a duration: use whole seconds, or {DURATION_HINT[4:]}")
    if not isinstance(value, int | str):
        raise ValueError(f"expected a duration, got {describe(value)}; {DURATION_HINT}")
    return parse_duration(value, MAX_AGE_LIMIT)


def _verify_sample(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_VERIFY_SAMPLE:
        return value
    shown = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
    raise ValueError(
        f"verify_sample must be a whole number from 0 to {MAX_VERIFY_SAMPLE},"
        f" got {shown or describe(value)}"
    )


InventoryUri = Annotated[
    str,
    PlainValidator(_inventory_uri),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^s3://",
            "examples": ["s3://inventory-bucket/source-bucket/config-id/"],
        }
    ),
]
MaxAge = Annotated[
    int,
    PlainValidator(_max_age),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["8d", "36h", "P8D"]}),
]
VerifySample = Annotated[
    int,
    PlainValidator(_verify_sample),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_VERIFY_SAMPLE}),
]


class InventorySource(BaseModel):
    """An S3 Inventory report as a job's source of objects (instead of listing the bucket)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="Source")

    inventory: InventoryUri = Field(
        description="s3://bucket/prefix/ holding the inventory's dated reports (the newest"
        " <timestamp>/manifest.json under it is read), or one manifest.json's URI."
    )
    max_age: MaxAge | None = Field(
        None,
        description="Refuse a report older than this (its creationTimestamp): 8d, 36h, P8D."
        " The job fails; the others go on. Default: any age.",
    )
    verify_sample: VerifySample = Field(
        0,
        description="HEAD this many objects of the report, picked at random, and report"
        " those gone or changed since (drift). Default 0.",
    )

    @property
    def bucket(self) -> str:
        """The inventory's destination bucket."""
        return self.inventory[5:].partition("/")[0]

    @property
    def key(self) -> str:
        """The prefix (ending in '/', or empty) or the manifest.json key."""
        return self.inventory[5:].partition("/")[2]
