"""Which of a manifest's guardrails a live bucket policy holds, judged by meaning, not by Sid.

A statement counts for a guardrail when it has the guardrail's effect for everyone
(``Principal`` ``*``), covers the guardrail's action and resources (IAM wildcards read as IAM
reads them), and carries the guardrail's condition with no other condition that would narrow
it. ``NotAction``/``NotResource`` statements and policy variables in resources are never
counted: judging them needs the request, and a guardrail counted wrongly is worse than a
warning. Each finding is ``present``, ``missing``, ``weaker`` (in place but allows more than
the manifest needs), ``too-strict`` (would refuse links the manifest issues) or
``unenforceable`` (the manifest itself leaves no statement possible; see ``policy``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sharebatch.guardrails.policy import (
    CLOUDFRONT_SERVICE,
    SIGV4,
    Intent,
    IpRule,
    OacRule,
)

State = Literal["present", "missing", "weaker", "too-strict", "unenforceable"]

# A key no literal resource names: only wildcards can match it.
_PROBE = "\x00sharebatch-probe"


@dataclass(frozen=True, slots=True)
class Finding:
    """One guardrail in one bucket: ``guardrail`` is signature-age, sigv4, https, ip or oac."""

    guardrail: str
    state: State
    text: str


def _values(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in items]


def _pattern(text: str, *, fold: bool = False) -> re.Pattern[str]:
    """An IAM wildcard pattern (``*``, ``?``, the escapes ``${*}``, ``${?}``, ``${$}``) as a
    regular expression; any other policy variable matches nothing."""
    parts: list[str] = []
    wild = {"*": ".*", "?": "."}
    for piece in re.split(r"(\$\{[^}]*\}|\*|\?)", text):
        if piece in wild:
            parts.append(wild[piece])
        elif piece in ("${*}", "${?}", "${$}"):
            parts.append(re.escape(piece[2]))
        elif piece.startswith("${"):
            parts.append("(?!)")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if fold else 0))


def _covers(statement: Mapping[str, Any], action: str, resource: str) -> bool:
    if "NotAction" in statement or "NotResource" in statement:
        return False
    actions = _values(statement.get("Action", []))
    resources = _values(statement.get("Resource", []))
    return any(_pattern(a, fold=True).fullmatch(action) for a in actions) and any(
        _pattern(r).fullmatch(resource) for r in resources
    )


def _everyone(statement: Mapping[str, Any]) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    return (
        isinstance(principal, Mapping)
        and set(principal) == {"AWS"}
        and (_values(principal["AWS"]) == ["*"])
    )


def _conditions(statement: Mapping[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(operator, lowercased key) -> values; condition keys are case-insensitive in IAM."""
    found: dict[tuple[str, str], list[str]] = {}
    condition = statement.get("Condition", {})
    if not isinstance(condition, Mapping):
        return {("?", "?"): []}
    for operator, pairs in condition.items():
        if not isinstance(pairs, Mapping):
            return {("?", "?"): []}
        for key, value in pairs.items():
            found[(str(operator), str(key).lower())] = _values(value)
    return found


def _statements(policy: Mapping[str, Any] | None, effect: str) -> list[Mapping[str, Any]]:
    if policy is None:
        return []
    found = policy.get("Statement", [])
    found = [found] if isinstance(found, Mapping) else found
    return [s for s in found if isinstance(s, Mapping) and s.get("Effect") == effect]


def _presigned_only(conditions: dict[tuple[str, str], list[str]]) -> bool:
    """A condition on ``s3:authType`` that leaves presigned URLs in, or none."""
    for (operator, key), values in conditions.items():
        if key == "s3:authtype" and (
            operator not in ("StringEquals", "StringEqualsIgnoreCase")
            or "REST-QUERY-STRING" not in [v.upper() for v in values]
        ):
            return False
    return True


def _duration(seconds: float) -> str:
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts[:2]) or "0s"


def _age(policy: Mapping[str, Any] | None, intent: Intent) -> Finding | None:
    if intent.longest is None or intent.limit_seconds is None:
        return None
    limits: list[int] = []
    for statement in _statements(policy, "Deny"):
        if not (_everyone(statement) and _covers(statement, "s3:GetObject", intent.arn(_PROBE))):
            continue
        conditions = _conditions(statement)
        ages = [
            (op, v)
            for (op, key), v in conditions.items()
            if key == "s3:signatureage" and op in ("NumericGreaterThan", "NumericGreaterThanEquals")
        ]
        others = {k for k in conditions if k[1] not in ("s3:signatureage", "s3:authtype")}
        if len(ages) != 1 or others or not _presigned_only(conditions):
            continue
        operator, values = ages[0]
        try:
            limit = min(int(v) for v in values)
        except ValueError:
            continue
        limits.append(limit if operator == "NumericGreaterThan" else limit - 1)
    longest = intent.longest
    need = _duration(longest.seconds)
    if not limits:
        text = (
            f"no statement denies presigned requests by s3:signatureAge; the manifest's"
            f" longest is {need} ({longest.source})"
        )
        return Finding("signature-age", "missing", text)
    live = min(limits)
    shown = f"presigned requests older than {_duration(live / 1000)} ({live} ms) are denied"
    if live < longest.seconds * 1000:
        text = f"{shown}, but {longest.source} live up to {need}: they stop working early"
        return Finding("signature-age", "too-strict", text)
    if live > intent.limit_seconds * 1000:
        slack = _duration(intent.limit_seconds - longest.seconds)
        text = f"{shown}: the manifest needs at most {need} (+{slack} slack)"
        return Finding("signature-age", "weaker", text)
    return Finding("signature-age", "present", f"{shown}; the manifest's longest is {need}")


def _sigv4(policy: Mapping[str, Any] | None, intent: Intent) -> Finding:
    for statement in _statements(policy, "Deny"):
        if not (_everyone(statement) and _covers(statement, "s3:GetObject", intent.arn(_PROBE))):
            continue
        conditions = _conditions(statement)
        rest = {k: v for k, v in conditions.items() if k != ("Null", "s3:signatureversion")}
        if rest in (
            {("StringNotEquals", "s3:signatureversion"): [SIGV4]},
            {("StringEquals", "s3:signatureversion"): ["AWS"]},
        ):
            return Finding("sigv4", "present", "requests signed with anything but SigV4 denied")
    return Finding("sigv4", "missing", "Signature Version 2 requests are not denied")


def _https(policy: Mapping[str, Any] | None, intent: Intent) -> Finding:
    for statement in _statements(policy, "Deny"):
        if not (_everyone(statement) and _covers(statement, "s3:GetObject", intent.arn(_PROBE))):
            continue
        if _conditions(statement) == {("Bool", "aws:securetransport"): ["false"]}:
            return Finding("https", "present", "requests without TLS denied")
    return Finding("https", "missing", "requests without TLS (aws:SecureTransport) not denied")


def _networks(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    try:
        return [ipaddress.ip_network(v, strict=False) for v in values]
    except ValueError:
        return None


def _within(
    inner: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    outer: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> bool:
    return all(
        any(n.version == o.version and n.subnet_of(o) for o in outer)  # type: ignore[arg-type]
        for n in inner
    )


def _ip(policy: Mapping[str, Any] | None, intent: Intent, rule: IpRule) -> Finding:
    wanted = _networks(list(rule.networks)) or []
    probe = intent.arn(rule.prefix + _PROBE)
    shown = ", ".join(rule.networks)
    judged: list[State] = []
    for statement in _statements(policy, "Deny"):
        if not (_everyone(statement) and _covers(statement, "s3:GetObject", probe)):
            continue
        conditions = _conditions(statement)
        others = {k for k in conditions if k[1] not in ("aws:sourceip", "s3:authtype")}
        live = _networks(conditions.get(("NotIpAddress", "aws:sourceip"), []))
        if others or not live or not _presigned_only(conditions):
            continue
        stricter, looser = _within(live, wanted), _within(wanted, live)
        judged.append("present" if stricter and looser else "too-strict" if stricter else "weaker")
    about = f"presigned GETs of {rule.prefix} ({', '.join(rule.recipients)})"
    if "present" in judged:
        return Finding("ip", "present", f"{about} denied from outside {shown}")
    if "too-strict" in judged:
        text = f"{about} denied from some of {shown}: those recipients' links fail there"
        return Finding("ip", "too-strict", text)
    if "weaker" in judged:
        return Finding("ip", "weaker", f"{about} allowed from networks beyond {shown}")
    return Finding("ip", "missing", f"{about} not denied from outside {shown}")


def _oac(policy: Mapping[str, Any] | None, intent: Intent, rule: OacRule) -> Finding:
    if rule.arn is None:
        text = (
            f"cannot check Origin Access Control for {rule.domain}: no"
            f" cloudfront.distribution_arn for {', '.join(rule.grants)}"
        )
        return Finding("oac", "unenforceable", text)
    allowed: list[str] = []
    for prefix in rule.prefixes:
        probe = intent.arn(prefix + _PROBE)
        for statement in _statements(policy, "Allow"):
            principal = statement.get("Principal")
            service = principal.get("Service") if isinstance(principal, Mapping) else None
            if CLOUDFRONT_SERVICE not in _values(service or []):
                continue
            if not _covers(statement, "s3:GetObject", probe):
                continue
            conditions = _conditions(statement)
            arns = [
                v
                for (op, key), values in conditions.items()
                if key == "aws:sourcearn" and op in ("StringEquals", "ArnEquals", "ArnLike")
                for v in values
            ]
            if len(conditions) == 1 and any(_pattern(a).fullmatch(rule.arn) for a in arns):
                allowed.append(prefix)
                break
    missing = [p for p in rule.prefixes if p not in allowed]
    if missing:
        text = f"{rule.arn} may not read {', '.join(missing)} through Origin Access Control"
        return Finding("oac", "missing", text)
    return Finding("oac", "present", f"{rule.arn} reads {', '.join(rule.prefixes)} through OAC")


def findings(policy: Mapping[str, Any] | None, intent: Intent) -> list[Finding]:
    """Each guardrail ``intent`` calls for, judged against ``policy`` (None: the bucket has
    no policy), in the order ``policy.statements`` writes them."""
    found: list[Finding | None] = [
        _age(policy, intent),
        _sigv4(policy, intent),
        _https(policy, intent),
        *(_ip(policy, intent, rule) for rule in intent.ip_rules),
        *(
            Finding(
                "ip",
                "unenforceable",
                f"{left.prefix}: {', '.join(left.restricted)} restricted, but"
                f" {', '.join(left.open_to)} read it from anywhere: no IP deny possible",
            )
            for left in intent.left_out
        ),
        *(_oac(policy, intent, rule) for rule in intent.oac),
    ]
    return [f for f in found if f is not None]
