"""Frozen value types passed between pipeline stages.

Stages exchange these, never boto responses, so each stage can be tested with plain values.
Fields that hold secrets (presigned URLs, secret keys, tokens) are left out of ``repr`` so a
traceback or a debug print cannot leak them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

AddressingStyle = Literal["auto", "virtual", "path"]

Presigner = Callable[[str, str, str, int, Mapping[str, str]], str]
"""``presign(method, bucket, key, expires_in, params) -> url`` for one bucket target."""


@dataclass(frozen=True, slots=True)
class BucketTarget:
    """Where a bucket lives and how to address it; one S3 client serves each distinct target."""

    bucket: str
    region: str | None
    endpoint_url: str | None
    addressing_style: AddressingStyle = "auto"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One listed S3 object."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    """A frozen snapshot of the signing credentials, resolved once per run."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expiry: datetime | None = None
    method: str = "unknown"


@dataclass(frozen=True, slots=True)
class Link:
    """One presigned link issued to one recipient. ``url`` is a bearer secret."""

    job: str
    recipient: str
    obj: ObjectRef
    method: str
    signed_at: datetime
    expires_at: datetime
    url: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PrefixFailure:
    """A prefix whose listing failed; recipients entitled to it get no bundle this run."""

    bucket: str
    prefix: str
    error: str
    message: str


@dataclass(frozen=True)
class RunSummary:
    """What a run did. ``report`` is the content of ``summary.json``."""

    run_id: str
    status: Literal["ok", "partial", "failed", "denied"]
    run_dir: str | None
    report: Mapping[str, object] = field(repr=False)

    @property
    def exit_code(self) -> int:
        """0 all shared; 1 some or all prefixes failed; 3 S3 denied access to every prefix."""
        return {"ok": 0, "denied": 3}.get(self.status, 1)


@dataclass(frozen=True, slots=True)
class Filters:
    """Which listed objects a recipient receives. Every condition must hold.

    ``include``/``exclude`` are glob patterns on the whole key: ``*`` and ``?`` stay within
    one path segment, ``**`` crosses ``/``. No include pattern means every key is included.
    Datetimes are timezone-aware UTC and form a half-open range: ``modified_after`` is
    inclusive, ``modified_before`` exclusive. Sizes are bytes, both bounds inclusive.
    ``max_links`` is a guard: more matches than this fails the job rather than sharing a
    whole bucket by mistake.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    min_size: int | None = None
    max_size: int | None = None
    max_links: int | None = None


@dataclass(frozen=True, slots=True)
class Expiry:
    """How long links live: a duration from signing, or a fixed UTC moment (exactly one)."""

    seconds: int | None = None
    at: datetime | None = None
