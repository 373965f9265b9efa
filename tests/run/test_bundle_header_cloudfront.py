"""The bundle header of CloudFront links: the contract's keys, written only when they say
something (an S3 header keeps its bytes), read back field by field."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from sharebatch.models import CloudFrontLinks, KeySource
from sharebatch.run.bundles import BundleHeader, LinkPolicy
from tests.support.paths import ROOT

GOLDEN = ROOT / "tests" / "e2e" / "golden" / "golden-run" / "q3-partners" / "globex"
SETTINGS = CloudFrontLinks(
    domain="d111111abcdef8.cloudfront.net",
    key_pair_id="K2JCJMDEHXQW5F",
    private_key=KeySource(file="/etc/sharebatch/cf.pem"),
    max_expires_in=90 * 86_400,
)


def golden() -> BundleHeader:
    data = json.loads((GOLDEN / "links.json").read_text(encoding="utf-8"))["header"]
    return BundleHeader.from_json(data)


def with_policy(**changes: Any) -> BundleHeader:
    header = golden()
    assert header.policy is not None
    return replace(header, policy=replace(header.policy, **changes))


def test_an_s3_header_has_none_of_the_new_keys() -> None:
    """link, cloudfront and allow_ips are absent for S3 links without networks."""
    data = golden().to_json()
    assert not {"link", "cloudfront", "allow_ips", "page_expires_at"} & set(data)


def test_a_cloudfront_header_says_how_its_links_were_signed_and_reads_back() -> None:
    """The contract's keys after the policy's, in order; from_json gives the same value."""
    header = with_policy(link="cloudfront", cloudfront=SETTINGS)
    data = header.to_json()
    keys = list(data)
    assert keys[keys.index("content_type") + 1 : keys.index("content_type") + 3] == [
        "link",
        "cloudfront",
    ]
    assert data["link"] == "cloudfront"
    assert data["cloudfront"] == {
        "domain": "d111111abcdef8.cloudfront.net",
        "key_pair_id": "K2JCJMDEHXQW5F",
        "hash": "sha256",
        "private_key": {"file": "/etc/sharebatch/cf.pem"},
        "not_before": None,
        "max_expires_in": 7_776_000,
        "policy": "canned",
    }
    assert BundleHeader.from_json(json.loads(json.dumps(data))) == header


def test_a_custom_policy_with_a_start_a_network_and_an_env_key_reads_back() -> None:
    """not_before and one network make the policy custom; an env source stays a name."""
    settings = replace(
        SETTINGS,
        private_key=KeySource(env="SHAREBATCH_CF_KEY"),
        hash="sha1",
        not_before=datetime(2026, 12, 1, tzinfo=UTC),
    )
    header = with_policy(link="cloudfront", cloudfront=settings, allow_ips=("127.0.0.1/32",))
    header = replace(header, page_expires_at="2026-12-07T12:00:00Z")
    data = header.to_json()
    assert data["cloudfront"]["policy"] == "custom"
    assert data["cloudfront"]["private_key"] == {"env": "SHAREBATCH_CF_KEY"}
    assert data["cloudfront"]["not_before"] == "2026-12-01T00:00:00Z"
    assert data["allow_ips"] == ["127.0.0.1/32"]
    assert list(data)[-1] == "page_expires_at"
    assert BundleHeader.from_json(json.loads(json.dumps(data))) == header


def test_s3_links_with_networks_say_them() -> None:
    """allow_ips is written for S3 links too (the bucket policy enforces it), and read back."""
    header = with_policy(allow_ips=("203.0.113.0/24", "198.51.100.7/32"))
    data = header.to_json()
    assert data["allow_ips"] == ["203.0.113.0/24", "198.51.100.7/32"] and "link" not in data
    assert BundleHeader.from_json(json.loads(json.dumps(data))) == header


def _cloudfront_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        json.dumps(with_policy(link="cloudfront", cloudfront=SETTINGS).to_json())
    )
    return data


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"link": "ftp"}, "link: 'ftp' is not s3 or cloudfront"),
        ({"cloudfront": None}, "cloudfront: missing for link cloudfront"),
        ({"link": "s3"}, "cloudfront: given for S3 links"),
        ({"allow_ips": ["10.0.0.0/8", "10.1.0.0/16"]}, "allow_ips: a CloudFront policy"),
        ({"allow_ips": "10.0.0.0/8"}, "allow_ips: expected a list"),
        ({"page_expires_at": "soon"}, "page_expires_at: not a moment"),
        ({"allow_ips": ["10.0.0.1/8"]}, r"allow_ips\[0\]: .* has host bits set"),
        ({"allow_ips": ["2001:db8::/32"]}, "allow_ips: a CloudFront policy takes an IPv4"),
        ({"allow_ips": ["everyone"]}, r"allow_ips\[0\]: .* is not a network in CIDR form"),
        ({"allow_ips": ["10.0.0.1"]}, r"allow_ips\[0\]: 10.0.0.1 is not as sharebatch writes"),
        ({"link": "Cloudfront"}, "link: 'Cloudfront' is not s3 or cloudfront"),
    ],
)
def test_a_header_not_as_sharebatch_writes_it_is_refused(
    change: dict[str, Any], problem: str
) -> None:
    """Each field is checked: ValueError names it (a reader then refuses the bundle)."""
    data = _cloudfront_json() | change
    with pytest.raises(ValueError, match=problem):
        BundleHeader.from_json(data)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"hash": "md5"}, "cloudfront.hash: 'md5' is not sha256 or sha1"),
        ({"private_key": {"file": "/k", "env": "K"}}, "cloudfront.private_key: expected"),
        ({"private_key": {"pem": "-----BEGIN"}}, "cloudfront.private_key: expected"),
        ({"policy": "custom"}, "cloudfront.policy: 'custom' does not match"),
        ({"max_expires_in": 0}, "cloudfront.max_expires_in"),
        ({"domain": ""}, "cloudfront.domain: missing"),
        ({"not_before": "tomorrow"}, "cloudfront.not_before: not a moment"),
        ({"domain": "evil.example/steal"}, r"cloudfront\.domain: domain 'evil.example/steal'"),
        ({"domain": "https://d1.example"}, r"cloudfront\.domain: .* without the scheme"),
        ({"domain": "D1.Example.COM"}, r"cloudfront\.domain: D1.Example.COM is not as"),
        ({"key_pair_id": "k2jcjmdehxqw5f"}, r"cloudfront\.key_pair_id: key_pair_id 'k2j"),
        ({"key_pair_id": "K2\nX"}, r"cloudfront\.key_pair_id: .* not a CloudFront public"),
        ({"hash": "md5"}, r"cloudfront\.hash: 'md5' is not sha256 or sha1"),
        ({"max_expires_in": 10 * 365 * 86_400}, r"cloudfront\.max_expires_in: expected 1 to"),
    ],
)
def test_a_cloudfront_block_not_as_sharebatch_writes_it_is_refused(
    change: dict[str, Any], problem: str
) -> None:
    """Each field of the cloudfront block is checked like the others."""
    data = _cloudfront_json()
    data["cloudfront"] = data["cloudfront"] | change
    with pytest.raises(ValueError, match=problem):
        BundleHeader.from_json(data)


def test_the_policy_record_is_a_plain_value() -> None:
    """LinkPolicy defaults keep every existing caller's header an S3 one."""
    policy = golden().policy
    assert isinstance(policy, LinkPolicy)
    assert (policy.link, policy.cloudfront, policy.allow_ips) == ("s3", None, ())
