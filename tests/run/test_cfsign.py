"""The run's CloudFront route signer: what it asks of the URL signer, and the window it keeps.

The URL signer here is a recording double with ``cloudfront.sign.CloudFrontSigner.sign``'s
signature: these tests prove what the route signer decides (query, expiry, start, network,
link ids, the window's bounds); the real signer's bytes are proven in tests/cloudfront/ and
the whole chain, downloads included, in tests/e2e/test_cloudfront_run.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sharebatch.errors import SigningError, UsageError
from sharebatch.manifest.load import Grant, Recipient
from sharebatch.models import (
    LINK_ID_PARAM,
    CloudFrontLinks,
    Expiry,
    KeySource,
    ObjectRef,
)
from sharebatch.run.cfsign import CloudFrontKeys, CloudFrontRouteSigner
from sharebatch.run.link_ids import LINK_ID_PATTERN
from sharebatch.run.sign import Signer, content_disposition
from tests.support.cfkeys import rsa_pair

NOW = datetime(2026, 11, 30, 12, 0, 0, 700_000, tzinfo=UTC)
SECOND = NOW.replace(microsecond=0)
DAY = 86_400
SETTINGS = CloudFrontLinks(
    domain="d111111abcdef8.cloudfront.net",
    key_pair_id="K2JCJMDEHXQW5F",
    private_key=KeySource(file="/etc/sharebatch/cf.pem"),
    max_expires_in=90 * DAY,
)
THIRTY_DAYS = Expiry(seconds=30 * DAY)


@dataclass
class Call:
    key: str
    expires: datetime
    query: list[tuple[str, str]]
    not_before: datetime | None
    source_ip: str | None


@dataclass
class Recorder:
    """Stands in for ``CloudFrontSigner``: records each call, returns a URL naming it."""

    calls: list[Call] = field(default_factory=list)

    def sign(
        self,
        key: str,
        expires: datetime,
        *,
        query: Sequence[tuple[str, str]] = (),
        not_before: datetime | None = None,
        source_ip: str | None = None,
    ) -> str:
        self.calls.append(Call(key, expires, list(query), not_before, source_ip))
        return f"https://{SETTINGS.domain}/{key}?n={len(self.calls)}&Signature=x"


def obj(key: str) -> ObjectRef:
    return ObjectRef("acme", key, 10, "e", SECOND)


def signer(
    recorder: Recorder,
    expiry: Expiry = THIRTY_DAYS,
    settings: CloudFrontLinks = SETTINGS,
    **more: object,
) -> CloudFrontRouteSigner:
    return CloudFrontRouteSigner(
        recorder,
        job="q3",
        expiry=expiry,
        settings=settings,
        clock=lambda: NOW,
        **more,  # type: ignore[arg-type]
    )


def test_a_30_day_link_carries_the_s3_links_query_and_its_own_id() -> None:
    """Download name, content type and link id go into the query in the S3 links' order;
    the link ends 30 days after the second it was signed in, is of kind cloudfront."""
    recorder = Recorder()
    route = signer(
        recorder, download_name="q3-{basename}", content_type="application/pdf", link_ids=True
    )
    [link] = route.sign_get("globex", [obj("reports/q3/sum mary.pdf")])
    [call] = recorder.calls
    assert call.key == "reports/q3/sum mary.pdf"
    assert call.expires == SECOND + timedelta(days=30) == link.expires_at
    assert [name for name, _ in call.query] == [
        "response-content-disposition",
        "response-content-type",
        LINK_ID_PARAM,
    ]
    assert call.query[0][1] == content_disposition("q3-sum mary.pdf")
    assert call.query[1][1] == "application/pdf"
    assert call.query[2][1] == link.link_id and LINK_ID_PATTERN.fullmatch(link.link_id)
    assert (call.not_before, call.source_ip) == (None, None)  # a canned policy
    assert link.kind == "cloudfront" and link.signed_at == SECOND and link.method == "GET"
    assert link.url.endswith("n=1&Signature=x") and route.clamped_to is None


def test_the_download_name_is_the_s3_signers_own() -> None:
    """The same grant signs the same Content-Disposition whichever kind of link it issues."""
    route = signer(Recorder(), download_name="{stem}-q3{ext}")
    s3 = Signer(lambda *a: "", job="q3", expiry=Expiry(seconds=60), download_name="{stem}-q3{ext}")
    for key in ("a/b.pdf", "a/\u202egnp.exe.pdf", "a/caf\u00e9 n\u00b01.csv"):
        assert route.query(key)[0][1] == s3.params(key)["ResponseContentDisposition"]


def test_without_link_ids_the_query_holds_no_id() -> None:
    """link_ids: false leaves the id out of the query and of the link."""
    recorder = Recorder()
    [link] = signer(recorder, link_ids=False).sign_get("globex", [obj("a.pdf")])
    assert link.link_id is None
    assert [name for name, _ in recorder.calls[0].query] == ["response-content-disposition"]


def test_a_start_and_a_network_make_a_custom_policy_request() -> None:
    """not_before and the one allow_ips CIDR reach the URL signer with every link."""
    recorder = Recorder()
    start = SECOND + timedelta(days=1)
    route = signer(
        recorder, settings=replace(SETTINGS, not_before=start), allow_ips=("203.0.113.0/24",)
    )
    links = route.sign_get("globex", [obj("a.pdf"), obj("b.pdf")])
    assert [(c.not_before, c.source_ip) for c in recorder.calls] == [(start, "203.0.113.0/24")] * 2
    assert len({link.link_id for link in links}) == 2


def test_a_fixed_end_is_kept_to_the_second() -> None:
    """expires_at: every link ends at that second, whenever in the run it is signed."""
    recorder = Recorder()
    end = datetime(2026, 12, 20, 17, 0, 0, 900_000, tzinfo=UTC)
    [link] = signer(recorder, expiry=Expiry(at=end)).sign_get("globex", [obj("a.pdf")])
    assert link.expires_at == recorder.calls[0].expires == end.replace(microsecond=0)


@pytest.mark.parametrize(
    ("expiry", "problem"),
    [
        (Expiry(seconds=90 * DAY + 1), "outside 1..7776000s"),
        (Expiry(at=SECOND), "outside 1..7776000s"),
        (Expiry(at=SECOND - timedelta(hours=1)), "outside 1..7776000s"),
        (Expiry(at=SECOND + timedelta(days=91)), "outside 1..7776000s"),
    ],
)
def test_a_window_outside_max_expires_in_is_refused(expiry: Expiry, problem: str) -> None:
    """Past cloudfront.max_expires_in, or ended already: SigningError, nothing signed."""
    recorder = Recorder()
    with pytest.raises(SigningError, match=problem):
        signer(recorder, expiry=expiry).sign_get("globex", [obj("a.pdf")])
    assert recorder.calls == []


def test_the_cap_is_max_expires_in_not_seven_days() -> None:
    """90 days exactly is allowed (the 7-day SigV4 limit is not this kind's)."""
    [link] = signer(Recorder(), expiry=Expiry(seconds=90 * DAY)).sign_get("g", [obj("a.pdf")])
    assert link.expires_at - link.signed_at == timedelta(days=90)


def test_a_start_at_or_after_the_end_is_refused() -> None:
    """A link that could never be used is not issued."""
    recorder = Recorder()
    late = replace(SETTINGS, not_before=SECOND + timedelta(days=30))
    with pytest.raises(SigningError, match="not_before"):
        signer(recorder, settings=late).sign_get("globex", [obj("a.pdf")])
    assert recorder.calls == []


def test_more_than_one_network_is_refused() -> None:
    """A CloudFront policy takes one CIDR in AWS:SourceIp: two cannot be signed."""
    with pytest.raises(SigningError, match="one network"):
        signer(Recorder(), allow_ips=("10.0.0.0/8", "192.0.2.0/24"))


def test_sign_one_keeps_the_given_query_and_end() -> None:
    """Renewal's call: the old response parameters as given, a new id, the end it asks for,
    held to max_expires_in."""
    recorder = Recorder()
    route = signer(recorder)
    old = [("response-content-disposition", 'attachment; filename="x.pdf"')]
    end = SECOND + timedelta(days=60)
    link = route.sign_one("globex", obj("a.pdf"), old, expires_at=end)
    assert recorder.calls[0].query[0] == old[0] and recorder.calls[0].query[1][0] == LINK_ID_PARAM
    assert link.expires_at == end and old == [old[0]]  # the caller's list is left alone
    with pytest.raises(SigningError, match="max_expires_in"):
        route.sign_one("globex", obj("a.pdf"), old, expires_at=SECOND + timedelta(days=91))


def test_signers_say_their_kind_and_how_often_to_yield() -> None:
    """The pipeline asks each signer for its kind (the audit's) and its chunk."""
    assert (Signer.kind, CloudFrontRouteSigner.kind) == ("s3", "cloudfront")
    assert 0 < CloudFrontRouteSigner.chunk < Signer.chunk


@pytest.mark.parametrize(
    ("network", "problem"),
    [
        ("10.0.0.1/8", "not an IPv4 address or CIDR range"),
        ("2001:db8::/32", "IPv4 only"),
        ("10.0.0.1", r"is not written 10\.0\.0\.1/32"),
    ],
)
def test_a_network_the_manifest_refuses_is_refused_by_the_signer(
    network: str, problem: str
) -> None:
    """Host bits set, IPv6 or a form the manifest would have rewritten: SigningError before
    anything is signed, whoever built the grant."""
    recorder = Recorder()
    with pytest.raises(SigningError, match=problem):
        signer(recorder, allow_ips=(network,))
    assert recorder.calls == []


@pytest.mark.parametrize("network", ["10.0.0.1/8", "2001:db8::/32", "everyone"])
def test_grants_built_by_a_caller_are_held_to_the_manifests_networks(
    network: str, tmp_path: Path
) -> None:
    """A library caller's Grant with a bad network is refused when built (ValidationError)
    and, built past validation (model_copy), by CloudFrontKeys.load: UsageError naming the
    job and recipient."""
    key = rsa_pair(0).write(tmp_path)[0]
    settings = replace(SETTINGS, private_key=KeySource(file=str(key)))
    fields: dict[str, Any] = {
        "job": "q3",
        "recipient": Recipient(id="globex"),
        "bucket": "acme",
        "expiry": Expiry(seconds=DAY),
        "prefixes": ("q3/",),
        "link": "cloudfront",
        "cloudfront": settings,
    }
    with pytest.raises(ValidationError, match="allow_ips"):
        Grant(**fields, allow_ips=(network,))
    good = Grant(**fields, allow_ips=("10.0.0.0/8",))
    assert good.allow_ips == ("10.0.0.0/8",)
    CloudFrontKeys.load([good], now=NOW)
    bad = good.model_copy(update={"allow_ips": (network,)})
    with pytest.raises(UsageError, match=r"job q3, recipient globex: allow_ips"):
        CloudFrontKeys.load([bad], now=NOW)
