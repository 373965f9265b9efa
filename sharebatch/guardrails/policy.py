"""The bucket-policy statements that make S3 itself enforce what a manifest intends.

For one bucket of a manifest, as of one moment, ``intent`` gathers the facts (the longest
lifetime any presigned request of the manifest has there, the prefixes whose presigned GETs
must come from given networks, the prefixes each CloudFront distribution reads through Origin
Access Control) and ``statements`` turns them into policy statements, each with a fixed ``Sid``
starting ``sharebatch-`` so a later run replaces exactly ours (``document.merged``).

What each statement says, and why it is written so:

- ``sharebatch-max-signature-age``: deny presigned requests (``s3:authType`` REST-QUERY-STRING,
  and POST: AWS documents ``s3:signatureAge`` for presigned POST forms too, which is how open
  upload slots are issued) whose ``s3:signatureAge`` (milliseconds since the signature's
  ``X-Amz-Date``) exceeds the longest lifetime plus ``SLACK_SECONDS``. S3 measures the age and
  a link's own expiry from the same ``X-Amz-Date``, so no clock skew needs absorbing; the
  slack covers lifetimes rounded to whole seconds and ``expires_at`` grants signed a little
  before the moment the policy was computed for.
- ``sharebatch-sigv4-only``: deny requests signed with anything but SigV4. Signature Version 2
  reports an ``s3:signatureAge`` of 0 and carries its own ``Expires``, so without this the age
  limit would not hold. ``StringNotEquals`` is true when the key is missing, which would deny
  anonymous requests too (a public website prefix, the doctor's unsigned region probe); the
  ``Null: false`` condition limits the deny to signed requests. CloudFront's Origin Access
  Control signs with SigV4, so it passes.
- ``sharebatch-https-only``: deny requests without TLS (``aws:SecureTransport`` false). A link
  is a bearer secret; over plain HTTP anyone on the path can copy it.
- ``sharebatch-ip-<hash>``: per prefix of a ``link: s3`` grant with ``allow_ips``, deny
  presigned GETs from outside the networks (``NotIpAddress aws:SourceIp``). A deny covers every
  key under the prefix, so every ``link: s3`` grant whose prefixes (or recipient pages) overlap
  it must work from the networks too: when all of them restrict, the statement allows the
  union of their networks; when any of them does not, the prefix is left out and the caller
  is told (``Intent.left_out``). ``link: cloudfront`` grants are not affected: CloudFront's
  requests are header-signed, not presigned.
- ``sharebatch-oac-<hash>``: per CloudFront distribution, allow its Origin Access Control
  (service principal ``cloudfront.amazonaws.com``, ``AWS:SourceArn`` the distribution's ARN)
  to GET the prefixes of the grants it serves.

ARNs use the partition of the bucket's region (``aws-cn`` for ``cn-*``, ``aws-us-gov`` for
``us-gov-*``, ``aws-iso``/``aws-iso-b`` for ``us-iso-``/``us-isob-``, else ``aws``; no region
configured: ``aws``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sharebatch.errors import UsageError
from sharebatch.manifest.load import Grant, Manifest
from sharebatch.models import MAX_EXPIRES_IN

POLICY_VERSION = "2012-10-17"
SID_PREFIX = "sharebatch-"
SLACK_SECONDS = 60
PRESIGNED_AUTH_TYPES = ("REST-QUERY-STRING", "POST")
SIGV4 = "AWS4-HMAC-SHA256"
CLOUDFRONT_SERVICE = "cloudfront.amazonaws.com"

SID_AGE = SID_PREFIX + "max-signature-age"
SID_SIGV4 = SID_PREFIX + "sigv4-only"
SID_HTTPS = SID_PREFIX + "https-only"
SID_IP = SID_PREFIX + "ip-"
SID_OAC = SID_PREFIX + "oac-"

_PARTITIONS = (("us-isob-", "aws-iso-b"), ("us-iso-", "aws-iso"), ("us-gov-", "aws-us-gov"))


@dataclass(frozen=True, slots=True)
class Longest:
    """The longest lifetime (seconds) of a presigned request issued in a bucket, and what
    issues it (``job/recipient: links``)."""

    seconds: int
    source: str


@dataclass(frozen=True, slots=True)
class IpRule:
    """Presigned GETs under ``prefix`` must come from ``networks``; ``recipients`` are every
    ``job/recipient`` whose links read there."""

    prefix: str
    networks: tuple[str, ...]
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A restricted prefix no IP deny can be written for: ``open_to`` read it from anywhere."""

    prefix: str
    restricted: tuple[str, ...]
    open_to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OacRule:
    """A distribution's Origin Access Control reads ``prefixes``; ``arn`` is None when no grant
    serving them names ``cloudfront.distribution_arn`` (``grants`` says which)."""

    arn: str | None
    domain: str
    prefixes: tuple[str, ...]
    grants: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Intent:
    """What the manifest intends for one bucket, as of one moment."""

    manifest: str
    bucket: str
    partition: str
    longest: Longest | None  # None: nothing presigned is issued in this bucket
    ip_rules: tuple[IpRule, ...]
    left_out: tuple[LeftOut, ...]
    oac: tuple[OacRule, ...]

    @property
    def limit_seconds(self) -> int | None:
        """The signature age the policy allows: the longest lifetime plus the slack."""
        return None if self.longest is None else self.longest.seconds + SLACK_SECONDS

    def arn(self, resource: str = "", *, under: str | None = None) -> str:
        """The bucket's ARN; an object ARN pattern with ``resource`` (IAM wildcards) or
        ``under`` (every key under a literal prefix)."""
        if under is not None:
            resource = literal(under) + "*"
        tail = f"/{resource}" if resource else ""
        return f"arn:{self.partition}:s3:::{self.bucket}{tail}"


def literal(text: str) -> str:
    """``text`` as literal characters of an ARN pattern: ``$`` becomes ``${$}`` (IAM's escape in
    2012-10-17 policies), so a prefix holding ``${aws:username}`` is not a policy variable.
    The manifest refuses ``*``, ``?`` and ``[`` in prefixes; they are escaped all the same."""
    escapes = {"$": "${$}", "*": "${*}", "?": "${?}"}
    return "".join(escapes.get(c, c) for c in text)


def buckets(manifest: Manifest) -> list[str]:
    """Every bucket the manifest names, in manifest order."""
    return list(dict.fromkeys(g.bucket for job in manifest.jobs for g in job.grants))


def partition_of(region: str | None) -> str:
    """The ARN partition a region belongs to (``aws`` when unknown or not configured)."""
    if region is None:
        return "aws"
    if region.startswith("cn-"):
        return "aws-cn"
    for start, partition in _PARTITIONS:
        if region.startswith(start):
            return partition
    return "aws"


def who(grant: Grant) -> str:
    return f"{grant.job}/{grant.recipient.id}"


def _link_seconds(grant: Grant, now: datetime) -> int:
    if grant.expiry.seconds is not None:
        return grant.expiry.seconds
    # A fixed end (the loader holds exactly one of the two): a link signed at ``now`` lives
    # what is left; later runs sign shorter ones.
    at = grant.expiry.at or now
    return max(0, math.ceil((at - now).total_seconds()))


def presigned_lifetimes(grant: Grant, now: datetime) -> list[tuple[int, str]]:
    """Each presigned request kind ``grant`` issues in its bucket, with its longest lifetime.

    ``link: s3`` links; upload slots (PUT URLs and POST forms, whatever the link kind); a
    recipient page's link, which ends with the page's earliest link or slot, so never outlives
    them, and for ``link: cloudfront`` is still a SigV4 link, so at most 7 days.
    """
    found: list[tuple[int, str]] = []
    links = _link_seconds(grant, now)
    if grant.link == "s3":
        found.append((links, f"{who(grant)}: links"))
    elif grant.notify is not None and grant.notify.delivery == "page":
        found.append((min(links, MAX_EXPIRES_IN), f"{who(grant)}: recipient page"))
    if grant.upload is not None:
        found.append((grant.upload.expires_in, f"{who(grant)}: upload slots"))
    return found


def _overlap(one: str, other: str) -> bool:
    return one.startswith(other) or other.startswith(one)


def _read_prefixes(grant: Grant) -> tuple[str, ...]:
    """Where ``grant``'s presigned GETs read: its prefixes and, with pages, the pages prefix."""
    pages = grant.notify is not None and grant.notify.delivery == "page"
    return (
        (*grant.prefixes, grant.notify.pages_prefix) if pages and grant.notify else grant.prefixes
    )


def _ip_rules(grants: list[Grant]) -> tuple[tuple[IpRule, ...], tuple[LeftOut, ...]]:
    presigned = [g for g in grants if g.link == "s3"]
    restricted = [g for g in presigned if g.allow_ips]
    wanted = list(dict.fromkeys(p for g in restricted for p in g.prefixes))
    rules: list[IpRule] = []
    left_out: list[LeftOut] = []
    for prefix in wanted:
        sharers = [g for g in presigned if any(_overlap(prefix, p) for p in _read_prefixes(g))]
        open_to = [who(g) for g in sharers if not g.allow_ips]
        mine = tuple(who(g) for g in sharers if g.allow_ips)
        if open_to:
            left_out.append(LeftOut(prefix, mine, tuple(dict.fromkeys(open_to))))
            continue
        networks = tuple(dict.fromkeys(n for g in sharers for n in g.allow_ips))
        rules.append(IpRule(prefix, networks, tuple(dict.fromkeys(mine))))
    return tuple(rules), tuple(left_out)


def _oac_rules(grants: list[Grant]) -> tuple[OacRule, ...]:
    # Grouped by ARN when given, else by domain: one distribution, one statement.
    groups: dict[str, tuple[str | None, str, list[str], list[str]]] = {}
    for grant in grants:
        cloudfront = grant.cloudfront
        if grant.link != "cloudfront" or cloudfront is None:
            continue
        arn = cloudfront.distribution_arn
        group = groups.setdefault(
            arn or f"domain:{cloudfront.domain}", (arn, cloudfront.domain, [], [])
        )
        group[2].extend(p for p in grant.prefixes if p not in group[2])
        group[3].append(who(grant))
    return tuple(
        OacRule(arn, domain, tuple(prefixes), tuple(names))
        for arn, domain, prefixes, names in groups.values()
    )


def intent(manifest: Manifest, bucket: str, *, now: datetime) -> Intent:
    """What ``manifest`` intends for ``bucket``, with ``expires_at`` lifetimes counted from
    ``now``. ``UsageError`` when the manifest does not name the bucket."""
    grants = [g for job in manifest.jobs for g in job.grants if g.bucket == bucket]
    if not grants:
        named = ", ".join(buckets(manifest))
        raise UsageError(f"{manifest.path}: no job uses bucket {bucket} (it names {named})")
    lifetimes = [found for g in grants for found in presigned_lifetimes(g, now)]
    longest = max(lifetimes, key=lambda item: item[0], default=None)
    rules, left_out = _ip_rules(grants)
    return Intent(
        manifest=manifest.path,
        bucket=bucket,
        partition=partition_of(next((g.region for g in grants if g.region), None)),
        longest=Longest(*longest) if longest else None,
        ip_rules=rules,
        left_out=left_out,
        oac=_oac_rules(grants),
    )


def _located(grant: str) -> str:
    job, recipient = grant.split("/", 1)
    return f"job {job}, recipient {recipient}"


def short_hash(text: str) -> str:
    """A stable Sid suffix for outsiders' text (a prefix, an ARN): 12 hex digits of SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _everything(intent: Intent) -> list[str]:
    return [intent.arn(), intent.arn("*")]


def age_statement(intent: Intent) -> dict[str, Any] | None:
    limit = intent.limit_seconds
    if limit is None:
        return None
    return {
        "Sid": SID_AGE,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": _everything(intent),
        "Condition": {
            "StringEquals": {"s3:authType": list(PRESIGNED_AUTH_TYPES)},
            "NumericGreaterThan": {"s3:signatureAge": limit * 1000},
        },
    }


def sigv4_statement(intent: Intent) -> dict[str, Any]:
    return {
        "Sid": SID_SIGV4,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": _everything(intent),
        "Condition": {
            "StringNotEquals": {"s3:signatureversion": SIGV4},
            "Null": {"s3:signatureversion": "false"},
        },
    }


def https_statement(intent: Intent) -> dict[str, Any]:
    return {
        "Sid": SID_HTTPS,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": _everything(intent),
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def ip_statement(intent: Intent, rule: IpRule) -> dict[str, Any]:
    return {
        "Sid": SID_IP + short_hash(rule.prefix),
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": intent.arn(under=rule.prefix),
        "Condition": {
            "StringEquals": {"s3:authType": "REST-QUERY-STRING"},
            "NotIpAddress": {"aws:SourceIp": list(rule.networks)},
        },
    }


def oac_statement(intent: Intent, rule: OacRule) -> dict[str, Any]:
    if rule.arn is None:
        raise UsageError(
            f"{intent.manifest}: {', '.join(_located(g) for g in rule.grants)}:"
            " cloudfront.distribution_arn is required by sharebatch"
            f" policy (the Origin Access Control statement's AWS:SourceArn for {rule.domain});"
            " set it in the cloudfront: block, e.g."
            " arn:aws:cloudfront::111122223333:distribution/EDFDVBD6EXAMPLE"
        )
    return {
        "Sid": SID_OAC + short_hash(rule.arn),
        "Effect": "Allow",
        "Principal": {"Service": CLOUDFRONT_SERVICE},
        "Action": "s3:GetObject",
        "Resource": [intent.arn(under=p) for p in rule.prefixes],
        "Condition": {"StringEquals": {"AWS:SourceArn": rule.arn}},
    }


def statements(intent: Intent) -> list[dict[str, Any]]:
    """Our statements for the bucket, in a fixed order; ``UsageError`` naming the grants when
    a CloudFront distribution has no ``distribution_arn``."""
    found: Iterable[dict[str, Any] | None] = (
        age_statement(intent),
        sigv4_statement(intent),
        https_statement(intent),
        *(ip_statement(intent, rule) for rule in intent.ip_rules),
        *(oac_statement(intent, rule) for rule in intent.oac),
    )
    return [s for s in found if s is not None]
