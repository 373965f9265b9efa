"""Turning listed objects into presigned links, with the expiry rules enforced at signing time.

The URL bytes come from a ``Presigner`` (today botocore's, built by ``s3``); this module owns
the policy around it: only SigV4, at most 7 days, and an ``expires_at`` read back from the
signed URL itself so a bundle states the real moment each link stops working.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from .errors import SharebatchError
from .models import Expiry, Link, ObjectRef, Presigner
from .templates import render_object

MAX_EXPIRES_IN = 604_800
"""SigV4 refuses presigned URLs valid for longer than 7 days."""

# RFC 5987 attr-char: what may stand unencoded in filename*=UTF-8''...
_ATTR_CHARS = string.ascii_letters + string.digits + "!#$&+-.^_`|~"
_PLAIN_NAME = frozenset(string.ascii_letters + string.digits + " !#$%&'()*+,-.;=@[]^_`{}~")


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


def content_disposition(filename: str) -> str:
    """``attachment`` with the name in both RFC 6266 forms where it is not plain ASCII.

    Browsers that understand ``filename*`` (all current ones) take the UTF-8 name; the
    ``filename`` fallback is the same name folded to ASCII, so old clients still get a
    sensible one.
    """
    name = filename or "download"
    if all(c in _PLAIN_NAME for c in name):
        return f'attachment; filename="{name}"'
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = "".join(c if c in _PLAIN_NAME else "_" for c in folded).strip() or "download"
    encoded = quote(name, safe=_ATTR_CHARS)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Signer:
    """Signs GET links for one route: its expiry, download name and content type."""

    def __init__(
        self,
        presign: Presigner,
        *,
        job: str,
        expiry: Expiry,
        download_name: str = "{basename}",
        content_type: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if expiry.seconds is not None:
            _check_window(job, expiry.seconds)
        self._presign = presign
        self._job = job
        self._expiry = expiry
        self._download_name = download_name
        self._content_type = content_type
        self._clock = clock

    def _expires_in(self) -> int:
        seconds = self._expiry.seconds
        if seconds is None:
            if self._expiry.at is None:
                raise SigningError(f"job {self._job}: no expiry given")
            # A fixed end: each batch gets what is left, so every link dies at that moment.
            seconds = int((self._expiry.at - self._clock()).total_seconds())
        return _check_window(self._job, seconds)

    def _params(self, key: str) -> dict[str, str]:
        params = {
            "ResponseContentDisposition": content_disposition(
                render_object(self._download_name, key)
            )
        }
        if self._content_type:
            params["ResponseContentType"] = self._content_type
        return params

    def sign_get(self, recipient: str, objects: Iterable[ObjectRef]) -> list[Link]:
        """One GET link per object for ``recipient``."""
        expires_in = self._expires_in()
        links = []
        for obj in objects:
            url = self._presign("GET", obj.bucket, obj.key, expires_in, self._params(obj.key))
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


def _check_window(job: str, seconds: int) -> int:
    if not 0 < seconds <= MAX_EXPIRES_IN:
        raise SigningError(
            f"job {job}: a validity of {seconds}s is outside 1..{MAX_EXPIRES_IN}s "
            "(the SigV4 limit for presigned URLs)"
        )
    return seconds
