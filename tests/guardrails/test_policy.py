"""Each statement of ``sharebatch policy`` against the manifest's own numbers, on resolved
grants built directly (tests/support/grants), and the whole document through cfn-lint's IAM
policy rules (AWS's CloudFormation linter validates an ``AWS::S3::BucketPolicy``'s document)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sharebatch.errors import UsageError
from sharebatch.guardrails.document import bucket_policy
from sharebatch.guardrails.policy import (
    SLACK_SECONDS,
    intent,
    partition_of,
    statements,
)
from sharebatch.models import MAX_EXPIRES_IN, UploadSlot
from tests.support.grants import BUCKET, DISTRIBUTION, grant, manifest
from tests.support.policylint import policy_problems

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
DAY = 86400


def by_sid(*grants: Any) -> dict[str, dict[str, Any]]:
    found = statements(intent(manifest(*grants), BUCKET, now=NOW))
    return {s["Sid"]: s for s in found}


def age_limit(*grants: Any) -> int:
    return int(
        by_sid(*grants)["sharebatch-max-signature-age"]["Condition"]["NumericGreaterThan"][
            "s3:signatureAge"
        ]
    )


def test_signature_age_is_the_longest_lifetime_in_milliseconds() -> None:
    """The age limit is the longest presigned lifetime in the bucket (here an upload slot of
    5 days beside 3-day links) plus the slack, in milliseconds, for presigned URLs and POST
    forms, over the whole bucket."""
    slot = UploadSlot(prefix="inbox/initech/", max_size=1 << 20, expires_in=5 * DAY)
    found = by_sid(grant("globex"), grant("initech", upload=slot))
    age = found["sharebatch-max-signature-age"]
    assert age["Condition"]["NumericGreaterThan"] == {
        "s3:signatureAge": (5 * DAY + SLACK_SECONDS) * 1000
    }
    assert age["Condition"]["StringEquals"] == {"s3:authType": ["REST-QUERY-STRING", "POST"]}
    assert (age["Effect"], age["Principal"], age["Action"]) == ("Deny", "*", "s3:*")
    assert age["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]


def test_links_longer_than_slots_decide_the_limit() -> None:
    """7-day links beside a 1-hour slot: the limit follows the links."""
    slot = UploadSlot(prefix="inbox/a/", max_size=1, expires_in=3600)
    assert age_limit(grant("a", seconds=7 * DAY, upload=slot)) == (7 * DAY + SLACK_SECONDS) * 1000


def test_expires_at_counts_from_the_moment_given() -> None:
    """An ``expires_at`` grant lives its distance from ``now`` (rounded up to a second)."""
    at = NOW + timedelta(days=2, hours=3, seconds=0.5)
    expected = 2 * DAY + 3 * 3600 + 1
    assert age_limit(grant("a", seconds=None, at=at)) == (expected + SLACK_SECONDS) * 1000
    later = statements(intent(manifest(grant("a", seconds=None, at=at)), BUCKET, now=at))
    assert later[0]["Condition"]["NumericGreaterThan"]["s3:signatureAge"] == SLACK_SECONDS * 1000


def test_cloudfront_links_do_not_count_but_their_page_does_capped_at_seven_days() -> None:
    """A 90-day CloudFront grant issues no presigned link; its recipient page is a SigV4 link
    that ends with the links, so at most 7 days. Without a page, nothing presigned: no age
    statement at all (and the caller is told)."""
    cf = grant("a", seconds=90 * DAY, cloudfront="d111111abcdef8.cloudfront.net", pages=True)
    assert age_limit(cf) == (MAX_EXPIRES_IN + SLACK_SECONDS) * 1000
    bare = grant("a", seconds=90 * DAY, cloudfront="d111111abcdef8.cloudfront.net")
    assert "sharebatch-max-signature-age" not in by_sid(bare)
    notes = bucket_policy(manifest(bare), None, now=NOW).notes
    assert any("no signature-age limit" in n for n in notes)


def test_sigv4_only_spares_anonymous_requests() -> None:
    """Anything signed but not SigV4 is denied; the Null condition keeps the deny off
    requests with no signature at all (StringNotEquals alone is true for a missing key)."""
    sigv4 = by_sid(grant("a"))["sharebatch-sigv4-only"]
    assert sigv4["Condition"] == {
        "StringNotEquals": {"s3:signatureversion": "AWS4-HMAC-SHA256"},
        "Null": {"s3:signatureversion": "false"},
    }
    assert (sigv4["Effect"], sigv4["Action"]) == ("Deny", "s3:*")


def test_https_only() -> None:
    """Requests without TLS are denied on the bucket and every object."""
    https = by_sid(grant("a"))["sharebatch-https-only"]
    assert https["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert https["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]


def ip_statements(*grants: Any) -> list[dict[str, Any]]:
    return [s for s in by_sid(*grants).values() if s["Sid"].startswith("sharebatch-ip-")]


def test_ip_deny_covers_a_restricted_recipients_own_prefixes() -> None:
    """A link: s3 recipient with allow_ips: presigned GETs of each of its prefixes are denied
    from outside its networks; another recipient's prefix elsewhere gets nothing."""
    found = ip_statements(
        grant("globex", ("partners/globex/", "reports/q3/"), allow_ips=("203.0.113.0/24",)),
        grant("initech", ("partners/initech/",)),
    )
    assert [s["Resource"] for s in found] == [
        f"arn:aws:s3:::{BUCKET}/partners/globex/*",
        f"arn:aws:s3:::{BUCKET}/reports/q3/*",
    ]
    for statement in found:
        assert statement["Action"] == "s3:GetObject"
        assert statement["Condition"] == {
            "StringEquals": {"s3:authType": "REST-QUERY-STRING"},
            "NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24"]},
        }


def test_shared_prefix_allows_the_union_when_every_sharer_restricts() -> None:
    """Two restricted recipients of one prefix (and one nested inside it): one deny per
    prefix, allowing both networks, so neither recipient's links break."""
    found = ip_statements(
        grant("globex", ("reports/",), allow_ips=("203.0.113.0/24",)),
        grant("initech", ("reports/q3/",), allow_ips=("198.51.100.7/32", "2001:db8::/32")),
    )
    networks = ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"]
    assert {s["Resource"]: s["Condition"]["NotIpAddress"]["aws:SourceIp"] for s in found} == {
        f"arn:aws:s3:::{BUCKET}/reports/*": networks,
        f"arn:aws:s3:::{BUCKET}/reports/q3/*": networks,
    }


def test_shared_prefix_with_an_open_recipient_is_left_out_and_said() -> None:
    """A restricted prefix that an unrestricted link: s3 recipient also reads (the same, a
    nested one, or its recipient pages under it) gets no deny, and the note names both."""
    restricted = grant("globex", ("reports/", "partners/globex/"), allow_ips=("203.0.113.0/24",))
    nested = grant("initech", ("reports/q3/",))
    result = bucket_policy(manifest(restricted, nested), None, now=NOW)
    resources = [s["Resource"] for s in result.document["Statement"] if "ip-" in s["Sid"]]
    assert resources == [f"arn:aws:s3:::{BUCKET}/partners/globex/*"]
    (note,) = result.notes
    assert "prefix reports/" in note and "q3/globex" in note and "q3/initech" in note

    whole = grant("globex", ("_sharebatch/",), allow_ips=("203.0.113.0/24",))
    pages = grant("hooli", ("other/",), pages=True)
    assert ip_statements(whole, pages) == []


def test_cloudfront_sharer_does_not_block_an_ip_deny() -> None:
    """A link: cloudfront recipient of the same prefix reads through CloudFront (header-signed,
    not presigned): the deny is written."""
    found = ip_statements(
        grant("globex", allow_ips=("203.0.113.0/24",)),
        grant("initech", cloudfront="d111111abcdef8.cloudfront.net"),
    )
    assert len(found) == 1


def test_oac_statement_per_distribution() -> None:
    """link: cloudfront grants of one distribution: one Allow for CloudFront's service
    principal on their prefixes, bound to the distribution by AWS:SourceArn."""
    found = by_sid(
        grant("globex", ("a/",), cloudfront="d1.cloudfront.net"),
        grant("initech", ("b/", "a/"), cloudfront="d1.cloudfront.net"),
    )
    (oac,) = [s for s in found.values() if s["Sid"].startswith("sharebatch-oac-")]
    assert oac["Effect"] == "Allow"
    assert oac["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert oac["Action"] == "s3:GetObject"
    assert oac["Resource"] == [f"arn:aws:s3:::{BUCKET}/a/*", f"arn:aws:s3:::{BUCKET}/b/*"]
    assert oac["Condition"] == {"StringEquals": {"AWS:SourceArn": DISTRIBUTION}}


def test_cloudfront_grant_without_distribution_arn_is_a_usage_error() -> None:
    """No distribution_arn: exit 2, naming the manifest, job, recipient and the field."""
    bad = grant("initech", cloudfront="d1.cloudfront.net", distribution_arn=None)
    with pytest.raises(UsageError) as raised:
        statements(intent(manifest(grant("globex"), bad), BUCKET, now=NOW))
    message = str(raised.value)
    assert raised.value.exit_code == 2
    assert message.startswith("/srv/manifests/q3.yml: job q3, recipient initech:")
    assert "cloudfront.distribution_arn" in message


def test_partition_follows_the_region() -> None:
    """ARNs in China and GovCloud regions use their partitions; no region: aws."""
    assert partition_of("cn-north-1") == "aws-cn"
    assert partition_of("us-gov-west-1") == "aws-us-gov"
    assert partition_of("us-isob-east-1") == "aws-iso-b"
    assert partition_of("eu-west-1") == partition_of(None) == "aws"
    found = by_sid(grant("a", region="cn-northwest-1"))
    assert found["sharebatch-https-only"]["Resource"][0] == f"arn:aws-cn:s3:::{BUCKET}"


def test_prefix_characters_are_literal_in_the_arn() -> None:
    """A prefix holding ``${aws:username}`` is escaped (``${$}``), not a policy variable."""
    (found,) = ip_statements(grant("a", ("x/${aws:username}/",), allow_ips=("10.0.0.0/8",)))
    assert found["Resource"] == f"arn:aws:s3:::{BUCKET}/x/${{$}}{{aws:username}}/*"


def test_sids_are_stable_unique_and_ours() -> None:
    """Every Sid starts with sharebatch-, none repeats, and the same manifest gives the same."""
    grants = (
        grant("globex", ("a/", "b/"), allow_ips=("203.0.113.0/24",)),
        grant("initech", ("c/",), cloudfront="d1.cloudfront.net"),
    )
    sids = [s["Sid"] for s in statements(intent(manifest(*grants), BUCKET, now=NOW))]
    assert len(sids) == len(set(sids)) == 6
    assert all(s.startswith("sharebatch-") for s in sids)
    again = [s["Sid"] for s in statements(intent(manifest(*grants), BUCKET, now=NOW))]
    assert sids == again


def test_unknown_bucket_is_a_usage_error() -> None:
    """A bucket the manifest does not use: exit 2 listing those it does."""
    with pytest.raises(UsageError, match=r"no job uses bucket other .*acme-reports"):
        intent(manifest(grant("a")), "other", now=NOW)


def test_every_statement_passes_policy_problems() -> None:
    """A document with every kind of statement passes cfn-lint's IAM resource-policy rules;
    the same document with a misspelt condition operator does not (the linter is awake)."""
    slot = UploadSlot(prefix="inbox/initech/", max_size=1, expires_in=3600)
    grants = (
        grant("globex", ("a/",), allow_ips=("203.0.113.0/24", "2001:db8::/32")),
        grant("initech", ("c/",), cloudfront="d1.cloudfront.net", upload=slot, pages=True),
    )
    document = bucket_policy(manifest(*grants), None, now=NOW).document
    assert len(document["Statement"]) == 5
    assert policy_problems(document) == []
    broken = json.loads(json.dumps(document))
    broken["Statement"][0]["Condition"]["NumericGreaterThn"] = {"s3:signatureAge": 1}
    assert any("NumericGreaterThn" in problem for problem in policy_problems(broken))


def test_a_policy_over_s3s_size_limit_is_said() -> None:
    """S3 refuses bucket policies over 20 KB: a manifest whose IP denies pass it gets a note
    with the size (the document is still printed, for the operator to split or trim)."""
    grants = [
        grant(f"r{n}", (f"partners/recipient-{n:03}/",), allow_ips=("203.0.113.0/24",))
        for n in range(80)
    ]
    result = bucket_policy(manifest(*grants), None, now=NOW)
    size = len(json.dumps(result.document, separators=(",", ":")).encode())
    assert size > 20 * 1024
    assert any(f"the policy is {size} bytes" in note for note in result.notes)
    small = bucket_policy(manifest(*grants[:5]), None, now=NOW)
    assert small.notes == ()
