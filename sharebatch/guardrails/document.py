"""A bucket policy document: read from a file (``--existing``), ours merged in, written out.

The file may be the policy itself or the whole answer of ``aws s3api get-bucket-policy``
(``{"Policy": "<the policy as a JSON string>"}``). A file that is neither is refused
(``UsageError``, exit 2) before anything is printed: a merge must never drop what it did not
understand. Statements whose ``Sid`` starts with ``sharebatch-`` are ours and are replaced
as a whole; every other statement is kept, in its order, byte for byte as JSON values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sharebatch.errors import UsageError
from sharebatch.guardrails.policy import POLICY_VERSION, SID_PREFIX, buckets, intent, statements
from sharebatch.manifest.load import Manifest
from sharebatch.visible import visible

MAX_POLICY_BYTES = 20 * 1024
"""S3 refuses a bucket policy larger than 20 KB."""

_VERSIONS = frozenset({"2012-10-17", "2008-10-17"})


def is_ours(statement: Mapping[str, Any]) -> bool:
    sid = statement.get("Sid")
    return isinstance(sid, str) and sid.startswith(SID_PREFIX)


def parse_policy(text: str, where: str) -> dict[str, Any]:
    """The policy document in ``text`` (``where`` names it in errors); ``UsageError`` when it
    is not one: not JSON, not an object, no ``Statement`` list of objects, an unknown
    ``Version``."""

    def refuse(why: str) -> UsageError:
        return UsageError(f"{visible(where)}: not a bucket policy: {why}")

    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise refuse(f"not JSON ({exc})") from None
    if isinstance(data, dict) and set(data) == {"Policy"} and isinstance(data["Policy"], str):
        # The whole answer of get-bucket-policy: the policy is a JSON string inside it.
        return parse_policy(data["Policy"], where)
    if not isinstance(data, dict):
        raise refuse(f"a JSON {type(data).__name__}, not an object")
    if "Statement" not in data:
        raise refuse("no Statement")
    statements = data["Statement"]
    if isinstance(statements, dict):
        # IAM accepts a single statement object; keep its meaning as a one-element list.
        statements = [statements]
    if not isinstance(statements, list) or not all(isinstance(s, dict) for s in statements):
        raise refuse("Statement is not a list of objects")
    version = data.get("Version")
    if version is not None and version not in _VERSIONS:
        raise refuse(f"unknown Version {visible(json.dumps(version))}")
    return {**data, "Statement": statements}


def read_policy(path: Path) -> dict[str, Any]:
    """``parse_policy`` of a file; an unreadable file is a ``UsageError`` too."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{visible(str(path))}: cannot read: {exc}") from None
    return parse_policy(text, str(path))


def merged(existing: Mapping[str, Any] | None, ours: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``existing`` (a parsed policy, or None) with its ``sharebatch-`` statements replaced by
    ``ours``, which follow every statement kept. A document holding statements of ours only
    (or none) gets ``Version`` 2012-10-17: the policy variables' escapes need it."""
    if existing is None:
        return {"Version": POLICY_VERSION, "Statement": [dict(s) for s in ours]}
    kept = [s for s in existing["Statement"] if not is_ours(s)]
    if existing.get("Version") != POLICY_VERSION and "${" in json.dumps(kept):
        # Our statements need 2012-10-17 (``${$}`` escapes); under it, ``${...}`` in the kept
        # statements would become policy variables: their meaning would change.
        raise UsageError(
            "the existing policy has no Version 2012-10-17 and its statements hold ${...},"
            " which 2012-10-17 reads as policy variables: upgrade it by hand first"
        )
    document = dict(existing)
    document["Version"] = POLICY_VERSION
    document["Statement"] = [*kept, *(dict(s) for s in ours)]
    return document


def dumps(document: Mapping[str, Any]) -> str:
    """The document as ``put-bucket-policy`` takes it: indented JSON, key order kept; any
    character beyond ASCII as a JSON escape, so no key or prefix can hide in a terminal."""
    return json.dumps(document, indent=2, ensure_ascii=True)


@dataclass(frozen=True)
class BucketPolicy:
    """The document for one bucket and what its author must know (``notes``, for stderr)."""

    bucket: str
    document: dict[str, Any]
    notes: tuple[str, ...]


def pick_bucket(manifest: Manifest, bucket: str | None) -> str:
    """``bucket``, or the manifest's only one; ``UsageError`` listing them when it names
    several and none was chosen."""
    named = buckets(manifest)
    if bucket is not None:
        return bucket
    if len(named) > 1:
        listed = ", ".join(visible(b) for b in named)
        raise UsageError(
            f"{manifest.path} names several buckets ({listed}): choose one with --bucket"
        )
    return named[0]


def bucket_policy(
    manifest: Manifest,
    bucket: str | None,
    *,
    now: datetime,
    existing: Mapping[str, Any] | None = None,
) -> BucketPolicy:
    """The bucket policy that enforces ``manifest``'s intent in ``bucket`` (see ``policy``),
    merged into ``existing``; ``UsageError`` for a bucket the manifest does not use or a
    CloudFront grant without ``distribution_arn``."""
    chosen = pick_bucket(manifest, bucket)
    wanted = intent(manifest, chosen, now=now)
    document = merged(existing, statements(wanted))
    notes = [
        f"prefix {visible(left.prefix)}: no IP deny written: {', '.join(left.restricted)} have"
        f" allow_ips, but {', '.join(left.open_to)} read it (link: s3) from anywhere, and a"
        " deny would break their links"
        for left in wanted.left_out
    ]
    if wanted.longest is None:
        notes.append(
            f"bucket {visible(chosen)}: the manifest issues no presigned request there, so no"
            " signature-age limit is written"
        )
    size = len(json.dumps(document, separators=(",", ":")).encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        notes.append(
            f"the policy is {size} bytes without whitespace; S3 refuses policies over"
            f" {MAX_POLICY_BYTES} bytes"
        )
    return BucketPolicy(chosen, document, tuple(notes))
