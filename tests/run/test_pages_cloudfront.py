"""Recipient pages listing CloudFront links: the page stays S3-presigned, so its own link is
capped at what SigV4 (7 days) and the credentials allow, ends first, and says so (log, page).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sharebatch import audit
from sharebatch.errors import CredentialsError, SigningError
from sharebatch.manifest.load import load_manifest
from sharebatch.models import (
    MAX_EXPIRES_IN,
    BucketTarget,
    CloudFrontLinks,
    Connection,
    Credentials,
    Expiry,
    KeySource,
    ShortCredentials,
)
from sharebatch.run.bundles import BundleHeader, LinkPolicy, SignedBy
from sharebatch.run.delivery_plan import StoredPage
from sharebatch.run.pages import page_lifetimes, publish_page
from sharebatch.run.plan import build_plan
from sharebatch.run.sign import Wanted, check_lifetimes, signed_window
from sharebatch.s3.gateway import S3Gateway
from sharebatch.times import iso, parse_iso
from tests.support.cfkeys import rsa_pair
from tests.support.pages import BUCKET, settings, with_notify
from tests.support.s3 import ACCESS_KEY, S3, SECRET_KEY, fetch, write_manifest

SETTINGS = CloudFrontLinks(
    domain="d111111abcdef8.cloudfront.net",
    key_pair_id="K2JCJMDEHXQW5F",
    private_key=KeySource(file="/etc/sharebatch/cf.pem"),
    max_expires_in=90 * 86_400,
)
TOKEN = "session-token-for-the-cloudfront-page-tests"


def cloudfront_row(key: str, days: int) -> dict[str, Any]:
    """A bundle row of a CloudFront link ending ``days`` from now."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "recipient": "globex",
        "bucket": BUCKET,
        "key": key,
        "size": 10,
        "etag": "e",
        "last_modified": iso(now),
        "method": "GET",
        "expires_at": iso(now + timedelta(days=days)),
        "url": f"https://{SETTINGS.domain}/{key}?Expires=1&Signature=x&Key-Pair-Id=K",
    }


def publish(
    s3: S3,
    rows: list[dict[str, Any]],
    *,
    lifetime: timedelta | None = None,
    policy: ShortCredentials = "clamp",
    cloudfront: CloudFrontLinks = SETTINGS,
) -> tuple[StoredPage, str, list[dict[str, Any]]]:
    """A CloudFront bundle's page published on moto; (page, URL, audit events). Credentials
    are long-term, or temporary ending after ``lifetime``; ``cloudfront`` the links' setting."""
    s3.bucket(BUCKET, {})
    expiry = None if lifetime is None else datetime.now(UTC) + lifetime
    credentials = Credentials(
        ACCESS_KEY, SECRET_KEY, TOKEN if expiry else None, expiry, "container-role"
    )
    target = BucketTarget(BUCKET, "eu-west-1", s3.endpoint, "path")
    paged = BundleHeader(
        run_id="20261130T120000Z-abcd",
        job="q3",
        recipient="globex",
        recipient_name="Globex",
        recipient_email=None,
        generated_at=iso(datetime.now(UTC)),
        signer_access_key_id=ACCESS_KEY,
        expires_at=min((r["expires_at"] for r in rows), default=None),
        links=len(rows),
        prefixes=("reports/q3/",),
        policy=LinkPolicy(
            expiry=Expiry(seconds=30 * 86_400),
            on_short_credentials=policy,
            credentials=SignedBy("container-role", "session", None),
            clamped_to=None,
            target=target,
            download_name="{basename}",
            content_type=None,
            link="cloudfront",
            cloudfront=cloudfront,
        ),
    )

    async def go() -> tuple[StoredPage, str]:
        async with S3Gateway(Connection(endpoint_url=s3.endpoint)) as gateway:
            presign = await gateway.signers.presigner(target, credentials)
            return await publish_page(
                gateway, presign, paged, rows, [], settings(), credentials=credentials
            )

    with audit.capture() as events:
        page, url = asyncio.run(go())
    return page, url, events


def test_a_page_of_30_day_links_gets_a_7_day_link_and_says_so(s3: S3) -> None:
    """SigV4's cap: the page link lives exactly 7 days, ``page_capped`` says why, the page
    tells the recipient its own end and each link's, and serves its audited bytes."""
    rows = [cloudfront_row("reports/q3/a.pdf", 30), cloudfront_row("reports/q3/b.pdf", 31)]
    page, url, events = publish(s3, rows)
    signed_at, ends = signed_window(url)
    assert ends - signed_at == timedelta(seconds=MAX_EXPIRES_IN) and iso(ends) == page.expires_at
    [capped] = [e for e in events if e["event"] == "page_capped"]
    assert capped["capped_by"] == "sigv4" and capped["level"] == "warning"
    assert (capped["page_expires_at"], capped["links_end"]) == (
        page.expires_at,
        rows[0]["expires_at"],
    )
    served = fetch(url)
    assert hashlib.sha256(served).hexdigest() == page.sha256
    text = served.decode()
    assert f'This page works until <time datetime="{page.expires_at}">' in text
    assert rows[0]["expires_at"] in text and rows[1]["expires_at"] in text
    assert 'id="starts"' not in text


def test_short_credentials_cap_the_page_link_sooner(s3: S3) -> None:
    """clamp with a 1-hour session: the page link ends with the credentials, said as such;
    the CloudFront links on it keep their 30 days (they are not the credentials')."""
    rows = [cloudfront_row("reports/q3/a.pdf", 30)]
    page, url, events = publish(s3, rows, lifetime=timedelta(hours=1))
    assert signed_window(url)[1] - datetime.now(UTC) <= timedelta(hours=1)
    [capped] = [e for e in events if e["event"] == "page_capped"]
    assert capped["capped_by"] == "credentials"
    assert parse_iso(page.expires_at) < parse_iso(rows[0]["expires_at"])


def test_a_page_without_links_still_gets_at_most_7_days(s3: S3) -> None:
    """No link on the page: its end comes from the 30-day policy, capped at SigV4's 7 days
    (not refused as an S3 link of 30 days would be)."""
    page, url, _ = publish(s3, [])
    signed_at, ends = signed_window(url)
    assert ends - signed_at <= timedelta(seconds=MAX_EXPIRES_IN)
    assert ends - signed_at >= timedelta(seconds=MAX_EXPIRES_IN - 2)
    assert parse_iso(page.expires_at) == ends


def test_the_credential_check_holds_page_links_not_cloudfront_links() -> None:
    """check_lifetimes: a 7-day page link past 1-hour credentials fails under ``fail``
    naming the page, is a ``page_outlives_credentials`` under clamp."""
    now = datetime.now(UTC)
    session = Credentials(ACCESS_KEY, SECRET_KEY, TOKEN, now + timedelta(hours=1), "sso")
    page: list[Wanted] = [("q3", "globex", Expiry(at=now + timedelta(days=7)), "fail")]
    with pytest.raises(CredentialsError, match="recipient page links would work until"):
        check_lifetimes(session, [], now, pages=page)
    clamp: list[Wanted] = [("q3", "globex", Expiry(at=now + timedelta(days=7)), "clamp")]
    [found] = check_lifetimes(session, [], now, pages=clamp)
    assert found.event == "page_outlives_credentials"


def test_credentials_that_outlast_the_page_do_not_clamp_it(s3: S3) -> None:
    """clamp with an 8-day session and 30-day links: the page asks for its own 7 days, not
    the links' 30, so the credentials shorten nothing and ``page_capped`` blames SigV4."""
    rows = [cloudfront_row("reports/q3/a.pdf", 30)]
    page, url, events = publish(s3, rows, lifetime=timedelta(days=8))
    signed_at, ends = signed_window(url)
    assert ends - signed_at == timedelta(seconds=MAX_EXPIRES_IN) and iso(ends) == page.expires_at
    [capped] = [e for e in events if e["event"] == "page_capped"]
    assert capped["capped_by"] == "sigv4"


def test_a_page_that_ends_before_its_links_start_is_refused(s3: S3) -> None:
    """Links starting in 8 days on a page that can live 7: SigningError naming the start
    (the run records it as ``page_failed``), and nothing is stored in the bucket."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=8)
    rows = [cloudfront_row("reports/q3/a.pdf", 30)]
    with pytest.raises(SigningError, match=r"cloudfront\.not_before " + iso(start)):
        publish(s3, rows, cloudfront=replace(SETTINGS, not_before=start))
    assert s3.client.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_the_page_says_when_links_that_start_later_start(s3: S3) -> None:
    """Links starting tomorrow: the page tells the recipient they work only from then (a
    page of links that start at once says nothing of it: see the 30-day test)."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    rows = [cloudfront_row("reports/q3/a.pdf", 30)]
    _, url, _ = publish(s3, rows, cloudfront=replace(SETTINGS, not_before=start))
    served = fetch(url).decode()
    assert (
        f'<p class="note" id="starts">The links on this page work only from '
        f'<time datetime="{iso(start)}">{iso(start)}</time> (UTC)' in served
    )


def test_an_upload_slot_ending_first_bounds_what_the_page_asks_of_credentials(
    tmp_path: Path,
) -> None:
    """30-day CloudFront links with a 2-hour upload slot: the page ends with the slot, so
    ``page_lifetimes`` asks 2 hours of the credentials (not 7 days), and a 1-day session
    under ``fail`` is enough."""
    key = rsa_pair(0).write(tmp_path)[0]
    now = datetime.now(UTC).replace(microsecond=0)
    body = f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  expires_in: 30d
  link: cloudfront
  cloudfront:
    domain: d111111abcdef8.cloudfront.net
    key_pair_id: {rsa_pair(0).key_pair_id}
    private_key: {{file: {key}}}
    max_expires_in: 90d
jobs:
  - name: q3
    prefixes: [reports/q3/]
    upload: {{prefix: "inbox/", max_size: 1KB, expires_in: 2h}}
    recipients:
      - id: globex
"""
    path = write_manifest(tmp_path / "q3.yml", with_notify(body, {"globex": settings()}))
    plan = build_plan(load_manifest(path, now=now))
    [(job, recipient, expiry, _)] = page_lifetimes(plan, now)
    assert (job, recipient, expiry.at) == ("q3", "globex", now + timedelta(hours=2))
    session = Credentials(ACCESS_KEY, SECRET_KEY, TOKEN, now + timedelta(days=1), "sso")
    assert check_lifetimes(session, [], now, pages=page_lifetimes(plan, now)) == []
