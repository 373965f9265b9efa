"""A bucket policy document: read from a file (``--existing``), ours merged in, written out.

The file may be the policy itself or the whole answer of ``aws s3api get-bucket-policy``
(``{"Policy": "<the policy as a JSON string>"}``). A file that is neither is refused
(``UsageError``, exit 2) before anything is printed: a merge must never drop what it did not
understand. Statements whose ``Sid`` starts with ``sharebatch-`` are ours. Of those, this
manifest's scope (``sharebatch-<scope>-ip-...``, ``-oac-...``) is replaced as a whole; other
scopes' are kept, as another manifest on the bucket needs them; the bucket-wide ones are
rewritten, the age limit to the longer of the live one and ours (``--lower-age``: ours) so
that no other manifest's links are cut short. Every other statement is kept, in its order,
byte for byte as JSON values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sharebatch.errors import UsageError
from sharebatch.guardrails.policy import (
    BUCKET_WIDE,
    POLICY_VERSION,
    SCOPED_SID,
    SID_AGE,
    SID_PREFIX,
    buckets,
    intent,
    scope_of,
    statements,
)
from sharebatch.manifest.load import Manifest
from sharebatch.visible import visible

MAX_POLICY_BYTES = 20 * 1024
"""S3 refuses a bucket policy larger than 20 KB ("Bucket policies are limited to 20 KB in
size", S3 User Guide, "Bucket policies and user policies"). IAM says it does not count
whitespace for its own policies; S3 says nothing of the kind for bucket policies, so the size
measured is that of the document as printed (indented, for review), which is what
``put-bucket-policy --policy file://policy.json`` sends: a policy under the limit as printed
is under it however S3 counts."""

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


@dataclass(frozen=True)
class Merged:
    """A merged policy document and what its author must know about the merge (``notes``)."""

    document: dict[str, Any]
    notes: tuple[str, ...] = ()


def _age_ms(statement: Mapping[str, Any]) -> int | None:
    """The ``s3:signatureAge`` limit (milliseconds) of our age statement, None if unreadable."""
    condition = statement.get("Condition")
    numeric = condition.get("NumericGreaterThan") if isinstance(condition, Mapping) else None
    value = numeric.get("s3:signatureAge") if isinstance(numeric, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() else None


def _days(ms: int) -> str:
    seconds = ms // 1000
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"


def _with_age(
    ours: list[dict[str, Any]], live: Mapping[str, Any] | None, lower_age: bool, notes: list[str]
) -> list[dict[str, Any]]:
    """``ours`` with its age limit merged with the live one: the longer holds (another
    manifest on the bucket may issue longer links), ours with ``lower_age``."""
    if live is None:
        return ours
    live_ms = _age_ms(live)
    if live_ms is None:
        raise UsageError(
            f"the existing policy's {SID_AGE} has no s3:signatureAge limit that sharebatch can"
            " read (NumericGreaterThan, milliseconds); fix or remove it by hand first"
        )
    index = next((i for i, s in enumerate(ours) if s.get("Sid") == SID_AGE), None)
    if index is None:
        notes.append(
            f"kept the existing {SID_AGE} ({_days(live_ms)}): this manifest issues no presigned"
            " request in the bucket, another may"
        )
        return [dict(live), *ours]
    mine = ours[index]
    mine_ms = _age_ms(mine) or 0
    if live_ms <= mine_ms:
        return ours
    if lower_age:
        notes.append(
            f"{SID_AGE} lowered from {_days(live_ms)} to this manifest's {_days(mine_ms)}"
            " (--lower-age): presigned links of other manifests or tools that live longer are"
            " refused from then on"
        )
        return ours
    notes.append(
        f"kept the existing {SID_AGE} of {_days(live_ms)}, longer than this manifest's"
        f" {_days(mine_ms)}: another manifest's links may need it (--lower-age replaces it"
        " with this manifest's)"
    )
    condition = {**mine["Condition"], "NumericGreaterThan": {"s3:signatureAge": live_ms}}
    return [*ours[:index], {**mine, "Condition": condition}, *ours[index + 1 :]]


def merged(
    existing: Mapping[str, Any] | None,
    ours: Sequence[Mapping[str, Any]],
    *,
    scope: str,
    lower_age: bool = False,
) -> Merged:
    """``existing`` (a parsed policy, or None) with ``ours`` (the statements of manifest
    ``scope``) merged in: every statement not ours kept, in order, then other scopes' kept,
    then ours; the bucket-wide ones rewritten (see the module docstring). A document holding
    statements of ours only (or none) gets ``Version`` 2012-10-17: the policy variables'
    escapes need it."""
    mine = [dict(s) for s in ours]
    if existing is None:
        return Merged({"Version": POLICY_VERSION, "Statement": mine})
    notes: list[str] = []
    kept: list[Any] = []
    live_age: Mapping[str, Any] | None = None
    dropped: list[str] = []
    for statement in existing["Statement"]:
        sid = statement.get("Sid")
        if not is_ours(statement):
            kept.append(statement)
        elif sid == SID_AGE:
            live_age = statement
        elif sid in BUCKET_WIDE:
            if not any(s.get("Sid") == sid for s in mine):
                dropped.append(sid)
        elif (found := SCOPED_SID.fullmatch(sid)) and found["scope"] == scope:
            continue  # this manifest's own: replaced by ours
        else:
            if found is None:
                notes.append(
                    f"kept {visible(sid)}: a sharebatch- statement of no form this version"
                    " writes (an older sharebatch?); remove it by hand if nothing needs it"
                )
            kept.append(statement)
    if existing.get("Version") != POLICY_VERSION and "${" in json.dumps(kept):
        # Our statements need 2012-10-17 (``${$}`` escapes); under it, ``${...}`` in the kept
        # statements would become policy variables: their meaning would change.
        raise UsageError(
            "the existing policy has no Version 2012-10-17 and its statements hold ${...},"
            " which 2012-10-17 reads as policy variables: upgrade it by hand first"
        )
    mine = _with_age(mine, live_age, lower_age, notes)
    notes += [f"the existing {sid} is removed: this manifest's policy has none" for sid in dropped]
    document = dict(existing)
    document["Version"] = POLICY_VERSION
    document["Statement"] = [*kept, *mine]
    return Merged(document, tuple(dict.fromkeys(notes)))


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
    scope: str | None = None,
    lower_age: bool = False,
) -> BucketPolicy:
    """The bucket policy that enforces ``manifest``'s intent in ``bucket`` (see ``policy``),
    its own statements scoped ``scope`` (default: the manifest file's stem), merged into
    ``existing``; ``UsageError`` for a bucket the manifest does not use, a bad scope or a
    CloudFront grant without ``distribution_arn``."""
    chosen = pick_bucket(manifest, bucket)
    wanted = intent(
        manifest, chosen, now=now, scope=scope_of(manifest.path) if scope is None else scope
    )
    result = merged(existing, statements(wanted), scope=wanted.scope, lower_age=lower_age)
    document = result.document
    notes = [
        f"prefix {visible(left.prefix)}: no IP deny written: {', '.join(left.restricted)} have"
        f" allow_ips, but presigned links of {', '.join(left.open_to)} (links or recipient"
        " pages) read under it from anywhere, and a deny would break them"
        for left in wanted.left_out
    ]
    if wanted.longest is None:
        notes.append(
            f"bucket {visible(chosen)}: the manifest issues no presigned request there, so no"
            " signature-age limit is written"
        )
    if wanted.plain_http:
        notes.append(
            f"bucket {visible(chosen)}: no sharebatch-https-only: {', '.join(wanted.plain_http)}"
            " reach it over http:// (endpoint_url), and a deny of requests without TLS would"
            " refuse their links, pages and slots"
        )
    notes += result.notes
    size = len(dumps(document).encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        notes.append(
            f"the policy is {size} bytes as printed; S3 refuses bucket policies over"
            f" {MAX_POLICY_BYTES} bytes"
        )
    return BucketPolicy(chosen, document, tuple(notes))
