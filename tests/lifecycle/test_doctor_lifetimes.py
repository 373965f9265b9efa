"""doctor's lifetime lines for link: cloudfront grants: the links are held to their own
max_expires_in and not to the credentials (they are signed with the distribution's key);
what such a grant still signs with the credentials, its recipient page and its upload slots,
is held to SigV4's limit and to the credentials' expiry like any presigned link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sharebatch.lifecycle.doctor import Check, _lifetimes
from sharebatch.models import Credentials, UploadSlot
from tests.support.grants import grant, manifest

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
DAY = 86400
DOMAIN = "d111111abcdef8.cloudfront.net"


def _session(hours: int) -> Credentials:
    return Credentials(
        access_key_id="ASIAEXAMPLE",
        secret_access_key="example-secret-key-0000",
        session_token="example-token",
        expiry=NOW + timedelta(hours=hours),
        method="assume-role",
    )


def _by_text(checks: list[Check]) -> dict[str, Check]:
    return {c.message.split(" live", 1)[0]: c for c in checks}


def test_a_cloudfront_grant_past_seven_days_is_held_to_its_max_expires_in() -> None:
    """30-day CloudFront links (max_expires_in 90d) beside 3-day s3 links in another job:
    OK, not "beyond the SigV4 limit" (review R1), and credentials that die in an hour do not
    touch them, while the s3 links outliving those credentials FAIL as before."""
    cf = grant("globex", seconds=30 * DAY, cloudfront=DOMAIN)
    s3 = grant("initech", job="weekly", seconds=3 * DAY)
    checks = _lifetimes(manifest(cf, s3), _session(1), NOW)
    assert [(c.status, c.name, c.subject) for c in checks] == [
        ("FAIL", "expiry", "weekly"),
        ("OK", "expiry", "q3"),
    ]
    cloudfront = checks[1].message
    assert cloudfront.startswith("CloudFront links live up to 30d, within their max_expires_in")
    assert "of 90d" in cloudfront and "credentials' expiry does not end them" in cloudfront


def test_a_cloudfront_link_past_its_max_expires_in_fails() -> None:
    """An expires_at past max_expires_in as of doctor's clock (a manifest loaded for a later
    moment) is a FAIL naming the cap."""
    at = NOW + timedelta(days=100)
    late = grant("globex", seconds=None, at=at, cloudfront=DOMAIN)
    (check,) = _lifetimes(manifest(late), None, NOW)
    assert (check.status, check.name) == ("FAIL", "expiry")
    assert check.message == "CloudFront links live up to 100d, beyond their max_expires_in of 90d"


def test_a_cloudfront_grants_page_and_slots_still_end_with_the_credentials() -> None:
    """The same grant with a recipient page and upload slots: the page is a SigV4 link the run
    caps at 7 days, the slots are presigned; credentials dying in a day make both fail
    (on_short_credentials: fail), the CloudFront links stay OK."""
    slot = UploadSlot(prefix="inbox/globex/", max_size=1 << 20, expires_in=2 * DAY)
    cf = grant("globex", seconds=30 * DAY, cloudfront=DOMAIN, pages=True, upload=slot)
    found = _by_text(_lifetimes(manifest(cf), _session(24), NOW))
    assert found["CloudFront links"].status == "OK"
    page = found["recipient pages"]
    assert (page.status, page.name) == ("FAIL", "expiry")
    assert page.message.startswith("recipient pages live up to 7d, within the SigV4 limit of 7d")
    assert "but the credentials expire at" in page.message
    slots = found["upload slots"]
    assert (slots.status, slots.name) == ("FAIL", "uploads")
    long_lived = _by_text(_lifetimes(manifest(cf), None, NOW))
    assert {c.status for c in long_lived.values()} == {"OK"}
