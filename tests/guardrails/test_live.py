"""Which guardrails a live bucket policy holds, judged by meaning: our own statements are all
present; equivalent statements written otherwise count too; weaker, too strict or narrowed
ones do not pass as present."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from sharebatch.guardrails.document import bucket_policy
from sharebatch.guardrails.live import findings
from sharebatch.guardrails.policy import SLACK_SECONDS, intent
from tests.support.grants import BUCKET, DISTRIBUTION, grant, manifest

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
DAY = 86400
GRANTS = (
    grant("globex", ("partners/globex/",), allow_ips=("203.0.113.0/24",)),
    grant("initech", ("cf/",), cloudfront="d1.cloudfront.net"),
)


def judged(policy: dict[str, Any] | None) -> dict[str, str]:
    wanted = intent(manifest(*GRANTS), BUCKET, now=NOW)
    return {f.guardrail: f.state for f in findings(policy, wanted)}


def printed() -> dict[str, Any]:
    return bucket_policy(manifest(*GRANTS), None, now=NOW).document


def test_our_own_policy_holds_every_guardrail() -> None:
    """The printed policy: every guardrail present."""
    assert judged(printed()) == {
        "signature-age": "present",
        "sigv4": "present",
        "https": "present",
        "ip": "present",
        "oac": "present",
    }


def test_no_policy_misses_every_guardrail() -> None:
    """No bucket policy: each guardrail missing."""
    assert set(judged(None).values()) == {"missing"}


def test_equivalent_statements_count_whatever_their_sid() -> None:
    """Other Sids, lower-case condition keys, a boolean instead of "false", StringEquals AWS
    for the signature version, a whole-bucket wildcard and {"AWS": "*"}: all present."""
    document = printed()
    for statement in document["Statement"]:
        statement["Sid"] = "Custom" + str(id(statement))
    age, sigv4, https = document["Statement"][:3]
    age["Condition"] = {"NumericGreaterThan": {"s3:signatureage": 3 * DAY * 1000}}
    sigv4["Condition"] = {"StringEquals": {"s3:signatureversion": "AWS"}}
    https["Condition"] = {"Bool": {"aws:SecureTransport": False}}
    https["Principal"] = {"AWS": "*"}
    https["Resource"] = f"arn:aws:s3:::{BUCKET}*"
    assert set(judged(document).values()) == {"present"}


def test_age_limit_weaker_or_too_strict() -> None:
    """An age limit above the manifest's longest plus slack is weaker; one below the longest
    would cut the manifest's links short."""
    document = printed()
    condition = document["Statement"][0]["Condition"]["NumericGreaterThan"]
    condition["s3:signatureAge"] = (3 * DAY + SLACK_SECONDS + 1) * 1000
    assert judged(document)["signature-age"] == "weaker"
    condition["s3:signatureAge"] = (3 * DAY - 1) * 1000
    assert judged(document)["signature-age"] == "too-strict"


def test_narrowing_conditions_and_not_action_do_not_count() -> None:
    """A deny narrowed by another condition, or written with NotAction, is not counted."""
    document = printed()
    https = document["Statement"][2]
    narrowed = copy.deepcopy(https)
    narrowed["Condition"]["StringEquals"] = {"aws:PrincipalAccount": "1"}
    document["Statement"][2] = narrowed
    assert judged(document)["https"] == "missing"
    other = {**https, "NotAction": "s3:DeleteBucket"}
    del other["Action"]
    document["Statement"][2] = other
    assert judged(document)["https"] == "missing"


def test_ip_networks_compared_as_networks() -> None:
    """Narrower networks than the manifest's refuse some of its recipients (too strict);
    wider ones allow more (weaker); the same network written as a host range counts."""
    document = printed()
    ip = document["Statement"][3]["Condition"]["NotIpAddress"]
    ip["aws:SourceIp"] = ["203.0.113.0/25"]
    assert judged(document)["ip"] == "too-strict"
    ip["aws:SourceIp"] = ["203.0.0.0/16"]
    assert judged(document)["ip"] == "weaker"
    ip["aws:SourceIp"] = "203.0.113.9/24"
    assert judged(document)["ip"] == "present"


def test_oac_for_another_distribution_or_prefix_is_missing() -> None:
    """OAC bound to another distribution, or not covering the prefix, is missing."""
    document = printed()
    oac = document["Statement"][4]
    assert oac["Condition"]["StringEquals"]["AWS:SourceArn"] == DISTRIBUTION
    oac["Condition"]["StringEquals"]["AWS:SourceArn"] = DISTRIBUTION + "X"
    assert judged(document)["oac"] == "missing"
    oac["Condition"] = {"ArnLike": {"AWS:SourceArn": "arn:aws:cloudfront::111122223333:*"}}
    assert judged(document)["oac"] == "present"
    oac["Resource"] = f"arn:aws:s3:::{BUCKET}/other/*"
    assert judged(document)["oac"] == "missing"


def test_escaped_prefix_round_trips() -> None:
    """A prefix written with ``${$}`` in the printed ARN is recognised as that same literal
    prefix in the live policy (and not as any other key)."""
    odd = (grant("globex", ("x/${aws:username}/",), allow_ips=("10.0.0.0/8",)),)
    wanted = intent(manifest(*odd), BUCKET, now=NOW)
    document = bucket_policy(manifest(*odd), None, now=NOW).document
    assert {f.guardrail: f.state for f in findings(document, wanted)}["ip"] == "present"
    document["Statement"][3]["Resource"] = f"arn:aws:s3:::{BUCKET}/x/${{aws:username}}/*"
    assert {f.guardrail: f.state for f in findings(document, wanted)}["ip"] == "missing"
