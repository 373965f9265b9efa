"""CloudFront policy statements: the exact bytes that are signed, and reading them back.

CloudFront checks a signature over the policy's bytes, so the JSON must be written exactly as
CloudFront (and every SDK) writes it, not merely be equivalent JSON:

* No whitespace at all, members in this order: ``{"Statement":[{"Resource":...,"Condition":
  {"DateLessThan":{"AWS:EpochTime":N}}}]}``. For a canned policy the order is significant:
  CloudFront never sees that policy, it rebuilds it from the URL (the base URL and
  ``Expires``) and checks the signature over its own rebuild, so one byte of difference is a
  refused link. ("Create a signed URL using a canned policy", policy statement section:
  https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-creating-signed-url-canned-policy.html;
  botocore's ``CloudFrontSigner.build_policy`` in botocore/signers.py writes the same bytes,
  which tests/cloudfront/test_sign.py checks byte for byte.)
* A custom policy travels in the URL (``Policy=``), so CloudFront reads the member order as
  sent; we still write botocore's order (``DateLessThan``, ``IpAddress``,
  ``DateGreaterThan``) so that our custom policies are byte-identical to botocore's as well.
  ("Create a signed URL using a custom policy":
  https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-creating-signed-url-custom-policy.html)
* ``AWS:EpochTime`` is whole seconds since 1970 UTC, a JSON number, not a string.
* ``Resource`` is the URL exactly as the viewer requests it, scheme, host, percent-encoded path
  and the caller's own query string included, but without the signing parameters; it must
  therefore be plain ASCII (the AWS CLI's ``cloudfront sign`` refuses anything else, and
  refuses ``"``, ``\\`` and control characters that would need JSON escapes; we do the same,
  so ``json.dumps`` never escapes anything and the bytes stay predictable).
* ``AWS:SourceIp`` holds ONE IPv4 address or CIDR range: the policy takes a single value, and
  CloudFront matches IPv4 viewers only (the AWS CLI's ``cloudfront sign`` refuses IPv6 with
  "CloudFront only supports IPv4 addresses and ranges"; aws-cli
  awscli/customizations/cloudfront/sign.py). A bare address means ``/32``, as in botocore.
  A distribution serving such links should have IPv6 off: "if you're using a custom policy
  that includes the IpAddress parameter ... don't enable IPv6", else a viewer reaching it over
  IPv6 is refused (API reference, DistributionConfig ``IsIPV6Enabled``:
  https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_DistributionConfig.html).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["PolicyFacts", "canned_policy", "custom_policy", "parse_policy", "source_ip_cidr"]

# Printable ASCII minus '"' and '\\': what a Resource may hold so that JSON needs no escapes.
_RESOURCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# CloudFront's epoch times are 32-bit in its own examples; the cap only guards against
# nonsense (a millisecond timestamp) being signed as a date thousands of years away.
_MAX_EPOCH = 2**32
_CONDITIONS = {"DateLessThan", "DateGreaterThan", "IpAddress"}


@dataclass(frozen=True, slots=True)
class PolicyFacts:
    """What a policy says: the resource it covers and its conditions (epoch seconds)."""

    resource: str
    expires: int
    not_before: int | None = None
    source_ip: str | None = None


def source_ip_cidr(value: str) -> str:
    """``value`` as the one IPv4 CIDR range a custom policy can hold (``/32`` if bare).

    Raises ``ValueError`` for anything else: an IPv6 network, host bits set, a list.
    """
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"not an IPv4 address or CIDR range: {text!r}") from exc
    if network.version != 4:
        raise ValueError("CloudFront's AWS:SourceIp matches IPv4 only; an IPv6 range never will")
    return network.with_prefixlen


def _check_resource(resource: str) -> None:
    if not _RESOURCE.fullmatch(resource):
        raise ValueError(
            "a policy's Resource must be printable ASCII without spaces, quotes or "
            "backslashes (percent-encode the URL first)"
        )


def _check_epoch(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < _MAX_EPOCH:
        raise ValueError(f"{name} must be whole seconds since 1970 (got {value!r})")


def _dump(resource: str, condition: dict[str, Any]) -> bytes:
    statement = {"Statement": [{"Resource": resource, "Condition": condition}]}
    return json.dumps(statement, separators=(",", ":")).encode("ascii")


def canned_policy(resource: str, expires: int) -> bytes:
    """The canned policy CloudFront rebuilds for ``resource`` and ``Expires=expires``."""
    _check_resource(resource)
    _check_epoch("expires", expires)
    return _dump(resource, {"DateLessThan": {"AWS:EpochTime": expires}})


def custom_policy(
    resource: str, expires: int, *, not_before: int | None, source_ip: str | None
) -> bytes:
    """A custom policy: ``resource`` until ``expires``, optionally after ``not_before`` and
    only from ``source_ip`` (one IPv4 address or CIDR range)."""
    _check_resource(resource)
    _check_epoch("expires", expires)
    condition: dict[str, Any] = {"DateLessThan": {"AWS:EpochTime": expires}}
    if source_ip is not None:
        condition["IpAddress"] = {"AWS:SourceIp": source_ip_cidr(source_ip)}
    if not_before is not None:
        _check_epoch("not_before", not_before)
        if not_before >= expires:
            raise ValueError("not_before must come before expires")
        condition["DateGreaterThan"] = {"AWS:EpochTime": not_before}
    return _dump(resource, condition)


def _epoch(condition: dict[str, Any], name: str) -> int | None:
    block = condition.get(name)
    if block is None:
        return None
    if not isinstance(block, dict) or set(block) != {"AWS:EpochTime"}:
        raise ValueError(f"{name} must hold AWS:EpochTime only")
    value = block["AWS:EpochTime"]
    _check_epoch(name, value)
    return int(value)


def parse_policy(raw: bytes) -> PolicyFacts:
    """Read a policy statement back (a custom policy from a URL, or one of ours).

    Strict: one statement, a string ``Resource``, ``DateLessThan`` required, nothing CloudFront
    would not understand. Raises ``ValueError`` with a message that never quotes the policy.
    """
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("the policy is not JSON") from exc
    if not isinstance(document, dict) or set(document) != {"Statement"}:
        raise ValueError("the policy must be an object with Statement only")
    statements = document["Statement"]
    if not isinstance(statements, list) or len(statements) != 1:
        raise ValueError("the policy must hold exactly one statement")
    statement = statements[0]
    if not isinstance(statement, dict) or set(statement) != {"Resource", "Condition"}:
        raise ValueError("the statement must hold Resource and Condition only")
    resource, condition = statement["Resource"], statement["Condition"]
    if not isinstance(resource, str) or not _RESOURCE.fullmatch(resource):
        raise ValueError("the statement's Resource is not a URL CloudFront could match")
    if not isinstance(condition, dict) or not set(condition) <= _CONDITIONS:
        raise ValueError("the Condition holds something other than dates and an IP range")
    expires = _epoch(condition, "DateLessThan")
    if expires is None:
        raise ValueError("the Condition has no DateLessThan")
    source_ip = None
    if "IpAddress" in condition:
        block = condition["IpAddress"]
        if not isinstance(block, dict) or set(block) != {"AWS:SourceIp"}:
            raise ValueError("IpAddress must hold AWS:SourceIp only")
        if not isinstance(block["AWS:SourceIp"], str):
            raise ValueError("AWS:SourceIp must be one IPv4 CIDR range")
        source_ip = source_ip_cidr(block["AWS:SourceIp"])
    return PolicyFacts(resource, expires, _epoch(condition, "DateGreaterThan"), source_ip)
