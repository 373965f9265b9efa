"""Turning listed objects into presigned links, with the expiry rules enforced at signing time.

The URL bytes come from a ``Presigner`` (today botocore's, built by ``s3``); this module owns
the policy around it: only SigV4, at most 7 days, and an ``expires_at`` read back from the
signed URL itself so a bundle states the real moment each link stops working.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from .errors import SharebatchError
from .models import Link, ObjectRef, Presigner

MAX_EXPIRES_IN = 604_800
"""SigV4 refuses presigned URLs valid for longer than 7 days."""

_NO_PARAMS: Mapping[str, str] = {}


class SigningError(SharebatchError):
    """A link could not be signed within the rules; never carries the URL."""


def _query_value(url: str, name: str) -> str | None:
    # Cheaper than a full parse per link, and the names searched never occur in an encoded key.
    start = url.find(f"{name}=", url.find("?"))
    if start < 0:
        return None
    start += len(name) + 1
    end = url.find("&", start)
    return url[start:] if end < 0 else url[start:end]


def signed_window(url: str) -> tuple[datetime, datetime]:
    """(signed_at, expires_at) of a SigV4 presigned URL; SigV2 URLs are refused."""
    stamp = _query_value(url, "X-Amz-Date")
    expires = _query_value(url, "X-Amz-Expires")
    if stamp is None or expires is None:
        raise SigningError("the signer produced a URL without SigV4 parameters; refusing it")
    signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return signed_at, signed_at + timedelta(seconds=int(expires))


class Signer:
    """Signs links for one job and one target with a fixed validity."""

    def __init__(self, presign: Presigner, *, job: str, expires_in: int) -> None:
        if not 0 < expires_in <= MAX_EXPIRES_IN:
            raise SigningError(
                f"job {job}: expiry of {expires_in}s is outside 1..{MAX_EXPIRES_IN}s "
                "(the SigV4 limit for presigned URLs)"
            )
        self._presign = presign
        self._job = job
        self._expires_in = expires_in

    def sign_get(self, recipient: str, objects: Iterable[ObjectRef]) -> list[Link]:
        """One GET link per object for ``recipient``."""
        links = []
        for obj in objects:
            url = self._presign("GET", obj.bucket, obj.key, self._expires_in, _NO_PARAMS)
            signed_at, expires_at = signed_window(url)
            links.append(
                Link(
                    job=self._job,
                    recipient=recipient,
                    obj=obj,
                    method="GET",
                    signed_at=signed_at,
                    expires_at=expires_at,
                    url=url,
                )
            )
        return links
