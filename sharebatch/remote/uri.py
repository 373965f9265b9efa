"""``s3://bucket/prefix/`` as an OUT value: parsed once, checked, never guessed at.

A value starting with ``s3:`` (any case) is meant for S3 and must be a well-formed URI; any
other value is a local path, as before. The prefix is a folder: it ends with ``/`` (added when
missing), and its segments are neither empty, ``.`` nor ``..``, so the keys written under it are
the ones a person reading the URI expects (and a fetched copy maps them onto folders one to
one).
"""

from __future__ import annotations

from dataclasses import dataclass

from sharebatch.errors import UsageError
from sharebatch.manifest.fields import check_bucket, check_text
from sharebatch.models import BucketTarget
from sharebatch.visible import visible

SCHEME = "s3://"
# The longest prefix left room for: S3 keys are at most 1,024 bytes, and a run folder adds
# `<run-id>/shards/<K>-of-<N>/<job>/<recipient>/<file>` (each name at most 128 characters).
MAX_PREFIX_BYTES = 256


@dataclass(frozen=True)
class S3Uri:
    """A folder on S3: ``prefix`` is empty (the bucket's top) or ends with ``/``."""

    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}"

    def key(self, relative: str) -> str:
        """The key of ``relative`` (a ``/``-separated path) inside this folder."""
        return self.prefix + relative

    def child(self, name: str) -> S3Uri:
        """The sub-folder ``name`` (one or more segments, checked like the prefix)."""
        return S3Uri(self.bucket, _checked_prefix(self.prefix + name.strip("/") + "/", name))

    def target(self) -> BucketTarget:
        """The bucket as a target: region and endpoint from the command line or AWS's chain."""
        return BucketTarget(bucket=self.bucket, region=None, endpoint_url=None)


def is_remote(value: str | object) -> bool:
    """Whether an OUT value is meant for S3 (``s3:...``), well-formed or not."""
    return isinstance(value, str) and value[:3].lower() == "s3:"


def parse_uri(value: str, what: str = "--out") -> S3Uri:
    """``s3://bucket/prefix/`` as an ``S3Uri``; ``UsageError`` (exit 2) saying what is wrong."""
    shown = visible(value)
    if not value.startswith(SCHEME):
        raise UsageError(f"{what} {shown} is not an s3:// URI; write s3://bucket/prefix/")
    rest = value[len(SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    try:
        check_bucket(bucket)
    except ValueError as exc:
        raise UsageError(f"{what} {shown}: {exc}") from None
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3Uri(bucket, _checked_prefix(prefix, value, what))


def _checked_prefix(prefix: str, value: str, what: str = "--out") -> str:
    shown = visible(value)
    if not prefix:
        return ""
    try:
        check_text(prefix, "prefix")
    except ValueError as exc:
        raise UsageError(f"{what} {shown}: {exc}") from None
    if "\\" in prefix:
        raise UsageError(f"{what} {shown}: the prefix must not contain a backslash")
    segments = prefix[:-1].split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise UsageError(
            f"{what} {shown}: the prefix must not have an empty, '.' or '..' segment"
            " (a leading '/', '//', '/./' or '/../')"
        )
    if len(prefix.encode("utf-8", "surrogatepass")) > MAX_PREFIX_BYTES:
        raise UsageError(f"{what} {shown}: the prefix is over {MAX_PREFIX_BYTES} bytes")
    return prefix
